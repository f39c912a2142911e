import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';

/** The ordered `NNN_name.sql` files; shipped with this package. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

const LOCK_NAME = 'coffer.migrations';
const LOCK_TIMEOUT_SECONDS = 120;
const MIGRATION_FILE = /^(\d{3,})_[a-z0-9_]+\.sql$/;

export interface MigrationTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export async function listMigrations(dir = MIGRATIONS_DIR): Promise<{ version: string; file: string }[]> {
  const names = (await readdir(dir)).filter((name) => MIGRATION_FILE.test(name)).sort();
  return names.map((name) => ({ version: name.replace(/\.sql$/, ''), file: join(dir, name) }));
}

async function createDatabaseIfAllowed(target: MigrationTarget, logger: Logger): Promise<void> {
  const { database, ...server } = target;
  const connection = await createConnection({ ...server, connectTimeout: 5000 });
  try {
    await connection.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } catch (err) {
    // A user without CREATE rights works with a database made for it by an admin.
    logger.warn({ err, database }, 'cannot create the database; assuming it exists');
  } finally {
    await connection.end();
  }
}

async function withNamedLock<T>(connection: Connection, work: () => Promise<T>): Promise<T> {
  const [rows] = await connection.query<RowDataPacket[]>('SELECT GET_LOCK(?, ?) AS got', [
    LOCK_NAME,
    LOCK_TIMEOUT_SECONDS,
  ]);
  if (rows[0]?.got !== 1) {
    throw new Error(`could not take the migration lock "${LOCK_NAME}" within ${LOCK_TIMEOUT_SECONDS} s`);
  }
  try {
    return await work();
  } finally {
    await connection.query('SELECT RELEASE_LOCK(?)', [LOCK_NAME]);
  }
}

export interface MigrateOptions {
  /** Applies only the versions that sort before this one (a database as an older release left it). Default: all. */
  before?: string;
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`, in order.
 * Concurrent start-ups serialise on a MySQL named lock, so each file runs once.
 * Returns the versions it applied.
 */
export async function migrate(
  target: MigrationTarget,
  logger: Logger,
  dir = MIGRATIONS_DIR,
  options: MigrateOptions = {},
): Promise<string[]> {
  // The database name is interpolated into DDL above; refuse anything but a plain identifier.
  if (!/^[A-Za-z0-9_]{1,64}$/.test(target.database)) {
    throw new Error(`invalid database name "${target.database}"`);
  }
  await createDatabaseIfAllowed(target, logger);
  const connection = await createConnection({ ...target, multipleStatements: true, connectTimeout: 5000 });
  try {
    return await withNamedLock(connection, async () => {
      await connection.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version VARCHAR(255) NOT NULL PRIMARY KEY,
           applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
         ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
      );
      const [rows] = await connection.query<RowDataPacket[]>('SELECT version FROM schema_migrations');
      const applied = new Set(rows.map((row) => String(row.version)));
      const done: string[] = [];
      for (const migration of await listMigrations(dir)) {
        if (applied.has(migration.version)) continue;
        if (options.before !== undefined && migration.version >= options.before) break;
        await connection.query(await readFile(migration.file, 'utf8'));
        await connection.query(
          'INSERT INTO schema_migrations (version) VALUES (?) ON DUPLICATE KEY UPDATE version = version',
          [migration.version],
        );
        logger.info({ version: migration.version }, 'migration applied');
        done.push(migration.version);
      }
      return done;
    });
  } finally {
    await connection.end();
  }
}
