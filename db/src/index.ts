export { MIGRATIONS_DIR, listMigrations, migrate, type MigrateOptions, type MigrationTarget } from './migrate.js';
