import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { createConnection, type Connection, type PoolConnection } from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/helpers/environment.js';
import {
  expectError,
  finishThroughLog,
  lastLogId,
  logRows,
  logSettled,
  queueBackup,
  startApi,
  type ApiHarness,
  type JobViewBody,
  withoutSettling,
} from './helpers.js';

// MySQL is up but slow: a table lock held elsewhere, or every pool connection busy. With
// small limits configured, each request answers (or fails with 503) instead of waiting.
let api: ApiHarness;
let folder: string;
let locker: Connection | undefined;

beforeAll(async () => {
  api = await startApi({ MYSQL_QUERY_TIMEOUT_MS: '500', MYSQL_ACQUIRE_TIMEOUT_MS: '300' });
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
});

afterEach(async () => {
  await locker?.end();
  locker = undefined;
});

afterAll(async () => {
  await api?.close();
});

/** The response, or a failure if none came within `ms`: the request must not wait forever. */
async function answered<T = LightMyRequestResponse>(request: Promise<T>, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([request, hang]);
  } finally {
    clearTimeout(timer);
  }
}

describe('while another session holds the log table locked', () => {
  it('accepts a backup at once (its `queued` row waits in the outbox), and the row lands once the lock is gone', async () => {
    const lastIdBefore = await lastLogId(api.db);
    locker = await createConnection({ ...api.env.config.mysql });
    await locker.query('LOCK TABLES log WRITE');

    // Not waiting for the row to reach MySQL, as the harness otherwise does: it cannot, yet.
    const res = await withoutSettling(api.app, () =>
      answered(api.app.inject({ method: 'POST', url: '/backup', payload: { source: folder } }), 2000),
    );

    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect(await api.app.backupQueue.getJobState(id)).toBe('waiting');
    await locker.query('UNLOCK TABLES');
    await logSettled(api.app);
    expect((await logRows(api.db, 'id > ?', [lastIdBefore])).map((row) => [row.job_id, row.status])).toEqual([
      [id, 'queued'],
    ]);
  });

  it('answers job reads that need the log with 503, not a wait', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, id, { status: 'failed', code: 'COPY_FAILED', message: 'disk' });
    locker = await createConnection({ ...api.env.config.mysql });
    await locker.query('LOCK TABLES log WRITE');

    const one = await answered(api.app.inject({ method: 'GET', url: `/jobs/${id}` }));
    const filtered = await answered(api.app.inject({ method: 'GET', url: '/jobs?status=failed' }));

    expectError(one, 503, 'LOG_UNAVAILABLE');
    expectError(filtered, 503, 'LOG_UNAVAILABLE');
  });
});

describe('while slow statements hold every pool connection', () => {
  it('answers an unrelated job read (at worst 503) and the slow statements end', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, id, { status: 'failed', code: 'COPY_FAILED', message: 'disk' });
    // More than the pool holds (10): the last ones wait for a connection too.
    const slow = Promise.allSettled(Array.from({ length: 12 }, () => api.app.mysql.query('SELECT SLEEP(3600)')));

    const res = await answered(api.app.inject({ method: 'GET', url: `/jobs/${id}` }));

    expect([200, 503]).toContain(res.statusCode);
    if (res.statusCode === 200) expect(res.json<JobViewBody>()).toMatchObject({ id, status: 'failed' });
    else expectError(res, 503, 'LOG_UNAVAILABLE');
    // The server ends them (or the pool gives up on them): none is left holding a connection, and
    // readiness comes back once the pool has new ones (on a loaded machine, not always at the
    // first probe: a new connection may take longer than MYSQL_ACQUIRE_TIMEOUT_MS' 300 ms).
    await answered(slow);
    const ready = await waitFor(
      async () => {
        const res = await api.app.inject({ method: 'GET', url: '/ready' });
        return res.statusCode === 200 ? res : undefined;
      },
      10_000,
      '/ready to answer 200 again',
    );
    expect(ready.statusCode).toBe(200);
  });

  it('answers 503 at the acquire deadline while every connection stays taken, and recovers', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, id, { status: 'completed', snapshot: '/b/x', files: 1, bytes: 1, durationMs: 1 });
    const held: PoolConnection[] = [];
    try {
      for (let i = 0; i < 10; i += 1) held.push(await api.app.mysql.getConnection());

      const res = await answered(api.app.inject({ method: 'GET', url: `/jobs/${id}` }));

      expectError(res, 503, 'LOG_UNAVAILABLE');
    } finally {
      for (const connection of held) connection.release();
    }
    const after = await api.app.inject({ method: 'GET', url: `/jobs/${id}` });
    expect(after.statusCode, after.body).toBe(200);
  });
});
