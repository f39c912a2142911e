export { MIGRATIONS_DIR, listMigrations, migrate, type MigrationTarget } from './migrate.js';
