import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  QUEUE_NAME,
  createLogOutbox,
  createRedis,
  jobLogRow,
  type JobItem,
  type LogEntry,
  type LogOutbox,
} from '@coffer/shared';
import { buildApp } from '../src/app.js';
import { createJobSubmitter } from '../src/jobs/submit-job.js';
import {
  authorise,
  configWith,
  createOutage,
  expectError,
  lastLogId,
  logRows,
  logSettled,
  queueBackup,
  startApi,
  type ApiHarness,
  type JobViewBody,
  type Outage,
  withoutSettling,
} from './helpers.js';

// A job's `queued` row goes through the log outbox in Redis, as the workers' rows do: POST /backup
// needs no MySQL once the destination's owner is known, and "queued before active" follows from
// the list's order (the row is pushed before the job is added; a worker pushes `active` after).
let api: ApiHarness;
let folder: string;

beforeAll(async () => {
  api = await startApi();
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
});

afterAll(async () => {
  await api?.close();
});

/** Every call the app makes to its MySQL pool while `work` runs. */
async function mysqlCallsDuring(app: FastifyInstance, work: () => Promise<void>): Promise<string[]> {
  const calls: string[] = [];
  const refuse = (method: string) => (first?: unknown) => {
    calls.push(`${method} ${typeof first === 'string' ? first : ''}`);
    return Promise.reject(new Error('no MySQL on the submission path'));
  };
  const spies = [
    vi.spyOn(app.mysql, 'query').mockImplementation(refuse('query')),
    vi.spyOn(app.mysql, 'execute').mockImplementation(refuse('execute')),
    vi.spyOn(app.mysql, 'getConnection').mockImplementation(refuse('getConnection')),
  ];
  try {
    await work();
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  return calls;
}

describe('POST /backup into a destination the API knows', () => {
  it('queues the job without a single MySQL call; its queued row lands through the outbox', async () => {
    await queueBackup(api.app, { source: folder, destination: 'known' });
    // The API drains the outbox too: stopped here, so only the submission itself is watched.
    await api.app.logOutbox.stop();
    let id = '';
    try {
      const calls = await mysqlCallsDuring(api.app, () =>
        withoutSettling(api.app, async () => {
          const res = await api.app.inject({
            method: 'POST',
            url: '/backup',
            payload: { source: folder, destination: 'known' },
            headers: { 'idempotency-key': 'no-mysql' },
          });
          expect(res.statusCode, res.body).toBe(202);
          id = res.json<{ id: string }>().id;
          // A replay needs no MySQL either.
          const again = await api.app.inject({
            method: 'POST',
            url: '/backup',
            payload: { source: folder, destination: 'known' },
            headers: { 'idempotency-key': 'no-mysql' },
          });
          expect(again.statusCode, again.body).toBe(202);
          expect(again.json<{ id: string }>().id).toBe(id);
          // The view comes from Redis meanwhile.
          const view = await api.app.inject({ method: 'GET', url: `/jobs/${id}` });
          expect(view.json<JobViewBody>()).toMatchObject({ id, status: 'queued', destination: 'known' });
        }),
      );
      expect(calls).toEqual([]);
      const waiting = (await api.app.redis.lrange(`${api.env.config.queuePrefix}:log-outbox`, 0, -1)).map(
        (raw) => JSON.parse(raw) as LogEntry,
      );
      expect(waiting.filter((row) => row.jobId === id).map((row) => row.status)).toEqual(['queued']);
    } finally {
      api.app.logOutbox.start();
    }
    await logSettled(api.app);
    expect((await logRows(api.db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued']);
  });

  it('still needs MySQL for a destination it has never seen: 503 LOG_UNAVAILABLE, nothing queued', async () => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    await api.app.logOutbox.stop();
    try {
      const calls = await mysqlCallsDuring(api.app, async () => {
        const res = await api.app.inject({
          method: 'POST',
          url: '/backup',
          payload: { source: folder, destination: 'never-seen' },
        });
        expectError(res, 503, 'LOG_UNAVAILABLE');
      });
      expect(calls.length).toBeGreaterThan(0);
    } finally {
      api.app.logOutbox.start();
    }
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
  });
});

describe('while MySQL is down', () => {
  let outage: Outage | undefined;
  let app: FastifyInstance | undefined;

  beforeAll(async () => {
    outage = await createOutage(`mysql://${api.env.config.mysql.host}:${api.env.config.mysql.port}`);
    await outage.restore();
    app = authorise(
      await buildApp({ config: configWith(api.env, { MYSQL_PORT: String(outage.port) }) }),
      api.adminToken,
    );
    await app.ready();
  });

  afterAll(async () => {
    await outage?.restore();
    await app?.close();
    await outage?.cut();
  });

  it('accepts backups into known destinations; their queued rows wait in Redis and land, in order, when it returns', async () => {
    if (!app || !outage) throw new Error('app not built');
    const down = app;
    await queueBackup(down, { source: folder, destination: 'outage' });
    await logSettled(api.app);
    const lastIdBefore = await lastLogId(api.db);
    // Only the app behind the cut drains (both share the outbox): the healthy one would move the rows.
    await api.app.logOutbox.stop();
    try {
      await outage.cut();
      const ids: string[] = [];
      for (let i = 0; i < 5; i += 1) {
        // The harness would wait for the row to reach MySQL: it cannot, yet.
        const res = await withoutSettling(down, () =>
          down.inject({ method: 'POST', url: '/backup', payload: { source: folder, destination: 'outage' } }),
        );
        expect(res.statusCode, res.body).toBe(202);
        ids.push(res.json<{ id: string }>().id);
      }
      for (const id of ids) expect(await app.backupQueue.getJobState(id)).toBe('waiting');
      expect(await app.logOutbox.backlog()).toBeGreaterThanOrEqual(ids.length);
      // A new destination needs its owner recorded: refused while MySQL is away.
      expectError(
        await app.inject({ method: 'POST', url: '/backup', payload: { source: folder, destination: 'new-one' } }),
        503,
        'LOG_UNAVAILABLE',
      );
      expect(await lastLogId(api.db)).toBe(lastIdBefore);

      await outage.restore();
      await logSettled(app, 20_000);
      const rows = await logRows(api.db, 'id > ?', [lastIdBefore]);
      expect(rows.map((row) => [row.job_id, row.status])).toEqual(ids.map((id) => [id, 'queued']));
    } finally {
      api.app.logOutbox.start();
    }
  });
});

describe('the order of a job’s rows', () => {
  it('puts every job’s queued row before its active and completed rows, for many jobs at once', async () => {
    // A worker as the real one writes: `active` once it holds the job, `completed` at the end,
    // both through its own outbox on the same list.
    const connection = createRedis(api.env.redisUrl, 'worker');
    const producer = createRedis(api.env.redisUrl, 'producer');
    const outbox: LogOutbox = createLogOutbox({
      redis: producer,
      prefix: api.env.config.queuePrefix,
      logStore: api.app.logStore,
      logger: api.app.log,
    });
    outbox.start();
    const worker = new Worker(
      QUEUE_NAME,
      async (job) => {
        const item = { name: job.name, data: job.data as unknown } as JobItem;
        const row = jobLogRow(item, job.id ?? '', 1, 'test-worker');
        await outbox.record([{ ...row, status: 'active' }]);
        await outbox.record([{ ...row, status: 'completed', snapshot: '/b/s', files: 0, bytes: 0, durationMs: 1 }]);
        return { path: '/b/s', files: 0, bytes: 0, durationMs: 1 };
      },
      { connection, prefix: api.env.config.queuePrefix, concurrency: 20 },
    );
    try {
      const answers = await Promise.all(
        Array.from({ length: 120 }, (_, i) =>
          api.app.inject({
            method: 'POST',
            url: '/backup',
            payload: { source: folder, destination: `order-${i % 3}` },
          }),
        ),
      );
      const ids = answers.map((res) => {
        expect(res.statusCode, res.body).toBe(202);
        return res.json<{ id: string }>().id;
      });
      const deadline = Date.now() + 60_000;
      let rows = await logRows(api.db, "status = 'completed'");
      while (ids.some((id) => !rows.some((row) => row.job_id === id))) {
        if (Date.now() > deadline) throw new Error('jobs not completed within 60 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
        rows = await logRows(api.db, "status = 'completed'");
      }
      const all = await logRows(api.db, `job_id IN (${ids.map(() => '?').join(', ')})`, ids);
      const violations = ids.filter((id) => {
        const statuses = all.filter((row) => row.job_id === id).map((row) => row.status);
        return statuses.join(',') !== 'queued,active,completed';
      });
      expect(violations).toEqual([]);
    } finally {
      await worker.close();
      await outbox.stop();
      connection.disconnect();
      producer.disconnect();
    }
  });
});

describe('a job the queue refuses after its queued row is recorded', () => {
  it('closes its history with a failed QUEUE_UNAVAILABLE row after it, through the outbox, and answers 503', async () => {
    const submit = createJobSubmitter({
      config: api.env.config,
      redis: api.app.redis,
      outbox: api.app.logOutbox,
      logStore: api.app.logStore,
      queue: { add: () => Promise.reject(new Error('queue said no')) },
      log: api.app.log,
    });
    await logSettled(api.app);
    const lastIdBefore = await lastLogId(api.db);
    const data = { source: folder, destination: 'refused', incremental: true, actor: 'admin' };

    await expect(submit({ item: { name: 'backup', data }, actor: 'admin' })).rejects.toMatchObject({
      code: 'QUEUE_UNAVAILABLE',
      statusCode: 503,
    });

    await logSettled(api.app);
    const rows = await logRows(api.db, 'id > ?', [lastIdBefore]);
    expect(rows.map((row) => [row.status, row.code])).toEqual([
      ['queued', null],
      ['failed', 'QUEUE_UNAVAILABLE'],
    ]);
    const view = await api.app.inject({ method: 'GET', url: `/jobs/${rows[0]?.job_id ?? ''}` });
    expect(view.json<JobViewBody>()).toMatchObject({
      status: 'failed',
      error: { code: 'QUEUE_UNAVAILABLE', message: expect.stringMatching(/not queued: queue said no/) as string },
    });
  });
});

describe('a queued row whose push fails', () => {
  const data = { source: '/nowhere', destination: 'push-failed', incremental: true, actor: 'admin' };
  function submitter(error: Error) {
    return createJobSubmitter({
      config: api.env.config,
      redis: api.app.redis,
      outbox: { record: () => Promise.reject(error) },
      logStore: api.app.logStore,
      queue: { add: () => Promise.reject(new Error('must not be called')) },
      log: api.app.log,
    });
  }

  it('leaves nothing in the log when the command never left (Redis was already away)', async () => {
    const lastIdBefore = await lastLogId(api.db);
    const submit = submitter(new Error("Stream isn't writeable and enableOfflineQueue options is false"));

    await expect(submit({ item: { name: 'backup', data }, actor: 'admin' })).rejects.toMatchObject({
      code: 'QUEUE_UNAVAILABLE',
    });

    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([]);
  });

  it('closes the history in MySQL when the push may have run (the connection dropped with it in flight)', async () => {
    const lastIdBefore = await lastLogId(api.db);
    const submit = submitter(new Error('Connection is closed.'));

    await expect(submit({ item: { name: 'backup', data }, actor: 'admin' })).rejects.toMatchObject({
      code: 'QUEUE_UNAVAILABLE',
    });

    const rows = await logRows(api.db, 'id > ?', [lastIdBefore]);
    expect(rows.map((row) => [row.status, row.code, row.message])).toEqual([
      ['failed', 'QUEUE_UNAVAILABLE', 'not queued: Connection is closed.'],
    ]);
  });
});
