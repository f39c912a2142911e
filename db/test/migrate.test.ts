import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { MIGRATIONS_DIR, listMigrations, migrate, type MigrationTarget } from '@coffer/db';
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

const before005: MigrationTarget = { ...target, database: `${target.database}_b` };

afterAll(async () => {
  const { database, ...server } = target;
  const connection = await createConnection(server);
  await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
  await connection.query(`DROP DATABASE IF EXISTS \`${before005.database}\``);
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

describe('migration 005 (job_status)', () => {
  it("fills each job's current status from the log written before it", async () => {
    // A database as it stood before 005: only the earlier files applied.
    expect(await migrate(before005, silentLogger, MIGRATIONS_DIR, { before: '005' })).toEqual([
      '001_log',
      '002_api_token',
      '003_log_actor',
      '004_log_one_terminal',
    ]);
    const rows: [string | null, string, number | null, string | null][] = [
      ['a', 'queued', 1, 'ops'],
      ['b', 'queued', 1, 'ops'],
      ['a', 'active', 1, 'ops'],
      ['c', 'queued', 1, 'admin'],
      ['b', 'active', 1, 'ops'],
      ['a', 'completed', 1, 'ops'],
      [null, 'rejected', null, 'ops'],
      ['c', 'active', 1, 'admin'],
      ['b', 'retrying', 1, 'ops'],
      ['c', 'completed', 1, 'admin'],
      ['b', 'active', 2, 'ops'],
      // A stray row of a dead attempt after the terminal one: the job stays completed.
      ['c', 'active', 2, 'admin'],
      // A job whose queued row is missing is not listed, but has its status.
      ['e', 'active', 1, null],
    ];
    const connection = await createConnection(before005);
    try {
      for (const [jobId, status, attempt, actor] of rows) {
        await connection.query(
          "INSERT INTO log (action, parameter, status, job_id, attempt, actor) VALUES ('backup', '/srv/x', ?, ?, ?, ?)",
          [status, jobId, attempt, actor],
        );
      }
    } finally {
      await connection.end();
    }

    expect(await migrate(before005, silentLogger)).toContain('005_job_status');

    const connection2 = await createConnection(before005);
    try {
      const [statuses] = await connection2.query<RowDataPacket[]>(
        `SELECT s.job_id, s.status, s.actor, q.status AS queued_row
         FROM job_status s LEFT JOIN log q ON q.id = s.queued_id ORDER BY s.job_id`,
      );
      expect(statuses).toEqual([
        { job_id: 'a', status: 'completed', actor: 'ops', queued_row: 'queued' },
        { job_id: 'b', status: 'active', actor: 'ops', queued_row: 'queued' },
        { job_id: 'c', status: 'completed', actor: 'admin', queued_row: 'queued' },
        { job_id: 'e', status: 'active', actor: null, queued_row: null },
      ]);
    } finally {
      await connection2.end();
    }
  });
});
