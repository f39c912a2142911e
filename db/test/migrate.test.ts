import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { listMigrations, migrate, type MigrationTarget } from '@coffer/db';
import { silentLogger } from '../../test/helpers/environment.js';

const target: MigrationTarget = {
  host: '127.0.0.1',
  port: 3306,
  user: 'root',
  password: '',
  database: `coffer_migrate_${randomBytes(4).toString('hex')}`,
};

async function query<T extends RowDataPacket>(sql: string, params: (string | number)[] = []): Promise<T[]> {
  const connection = await createConnection(target);
  try {
    const [rows] = await connection.query<T[]>(sql, params);
    return rows;
  } finally {
    await connection.end();
  }
}

afterAll(async () => {
  const { database, ...server } = target;
  const connection = await createConnection(server);
  await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
  await connection.end();
});

describe('database migrations', () => {
  it('are numbered files applied in order', async () => {
    const migrations = await listMigrations();
    expect(migrations.map((m) => m.version)).toEqual([...migrations.map((m) => m.version)].sort());
    expect(migrations[0]?.version).toBe('001_log');
  });

  it('create the database when missing; concurrent start-ups apply each file exactly once', async () => {
    const runs = await Promise.all(Array.from({ length: 6 }, () => migrate(target, silentLogger)));
    const versions = (await listMigrations()).map((m) => m.version);
    expect(runs.flat().sort()).toEqual([...versions].sort());
    const recorded = await query<RowDataPacket>('SELECT version FROM schema_migrations ORDER BY version');
    expect(recorded.map((row) => row.version as string)).toEqual(versions);
  });

  it('do nothing the second time', async () => {
    expect(await migrate(target, silentLogger)).toEqual([]);
  });

  it('give the log table the contract columns, seed-compatible first', async () => {
    const columns = await query<RowDataPacket>(
      'SELECT column_name AS name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position',
      [target.database, 'log'],
    );
    const names = columns.map((column) => column.name as string);
    expect(names.slice(0, 5)).toEqual(['id', 'date', 'action', 'parameter', 'status']);
    expect(names).toEqual(
      expect.arrayContaining(['job_id', 'attempt', 'worker', 'message', 'files', 'bytes', 'duration_ms']),
    );
  });

  it('index the dashboard filters: job, date, status', async () => {
    const indexes = await query<RowDataPacket>(
      "SELECT DISTINCT column_name AS name FROM information_schema.statistics WHERE table_schema = ? AND table_name = 'log' AND seq_in_index = 1",
      [target.database],
    );
    expect(indexes.map((index) => index.name as string)).toEqual(expect.arrayContaining(['job_id', 'date', 'status']));
  });

  it('record themselves, so the db image init (which runs the files directly) agrees with the runner', async () => {
    for (const migration of await listMigrations()) {
      const sql = await readFile(migration.file, 'utf8');
      expect(sql).toContain(`INSERT INTO schema_migrations (version) VALUES ('${migration.version}')`);
    }
  });
});
