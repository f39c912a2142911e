import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createConnection, type Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/helpers/environment.js';
import {
  createOutage,
  expectError,
  logRows,
  queueBackup,
  startApi,
  type ApiHarness,
  type JobViewBody,
  type Outage,
  type PageBody,
  withoutSettling,
} from './helpers.js';

// The API reaches MySQL through a relay the test cuts; it is the only process of its
// queue prefix, so the only one that can move outbox rows to MySQL. The test reads the
// log over a direct connection.
let outage: Outage;
let api: ApiHarness;
let db: Connection;
let folder: string;

beforeAll(async () => {
  const mysql = { host: process.env.MYSQL_HOST ?? '127.0.0.1', port: process.env.MYSQL_PORT ?? '3306' };
  outage = await createOutage(`mysql://${mysql.host}:${mysql.port}`);
  await outage.restore();
  api = await startApi({ MYSQL_PORT: String(outage.port) });
  db = await createConnection({ ...api.env.config.mysql, port: Number(mysql.port) });
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
});

afterAll(async () => {
  await outage?.restore();
  await db?.end();
  await api?.close();
  await outage?.cut();
});

describe('cancelling a queued job while MySQL is down', () => {
  it('cancels it at once; its cancelled row waits in Redis and reaches the log, once, when MySQL is back', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await outage.cut();

    const res = await withoutSettling(api.app, () => api.app.inject({ method: 'DELETE', url: `/jobs/${id}` }));

    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<JobViewBody>()).toMatchObject({ id, status: 'cancelled', error: { code: 'CANCELLED' } });
    expect(await api.app.backupQueue.getJob(id)).toBeUndefined();
    expect((await logRows(db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued']);

    await outage.restore();

    const rows = await waitFor(
      async () => {
        const history = await logRows(db, 'job_id = ?', [id]);
        return history.length > 1 ? history : undefined;
      },
      15_000,
      'the cancelled row to reach the log',
    );
    expect(rows.map((row) => [row.status, row.code])).toEqual([
      ['queued', null],
      ['cancelled', 'CANCELLED'],
    ]);
    const view = await api.app.inject({ method: 'GET', url: `/jobs/${id}` });
    expect(view.json<JobViewBody>()).toMatchObject({ id, status: 'cancelled', error: { code: 'CANCELLED' } });
    const cancelled = await api.app.inject({ method: 'GET', url: '/jobs?status=cancelled&limit=100' });
    expect(cancelled.json<PageBody<JobViewBody>>().items.map((item) => item.id)).toContain(id);
    expect((await logRows(db, 'job_id = ?', [id])).length).toBe(2);
  });

  it('keeps a job that cannot be cancelled now queued, and cancellable later, when the row has nowhere to go', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await outage.cut();
    // The outbox refuses the row too (as a full or read-only Redis would): its key is not a list.
    const outboxKey = `${api.env.config.queuePrefix}:log-outbox`;
    expect(await api.app.redis.set(outboxKey, 'not a list', 'NX')).toBe('OK');
    try {
      const res = await withoutSettling(api.app, () => api.app.inject({ method: 'DELETE', url: `/jobs/${id}` }));

      // The row goes through the outbox in Redis, which refuses it: the job stays as it was.
      expectError(res, 503, 'QUEUE_UNAVAILABLE');
      expect(await api.app.backupQueue.getJobState(id)).toBe('waiting');
    } finally {
      await api.app.redis.del(outboxKey);
      await outage.restore();
    }

    const later = await api.app.inject({ method: 'DELETE', url: `/jobs/${id}` });

    expect(later.statusCode, later.body).toBe(200);
    expect((await logRows(db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued', 'cancelled']);
  });
});
