import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKUP_JOB_NAME, JOB_STATUSES, QUEUE_NAME, createRedis, type LogStatus } from '@coffer/shared';
import {
  allPages,
  collect,
  anyNumber,
  expectError,
  finishThroughLog,
  ISO_DATE,
  logRows,
  matching,
  queueBackup,
  startApi,
  type ApiHarness,
  type JobViewBody,
  type LogRowBody,
  type PageBody,
} from './helpers.js';

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

async function getJob(id: string) {
  return api.app.inject({ method: 'GET', url: `/jobs/${id}` });
}

async function deleteJob(id: string) {
  return api.app.inject({ method: 'DELETE', url: `/jobs/${id}` });
}

const completed = {
  status: 'completed',
  snapshot: '/backups/data/20240601T000000Z-x',
  files: 3,
  bytes: 1234,
  durationMs: 56,
} as const;

describe('GET /jobs/:id', () => {
  it('shows a queued job with the contract view: no attempts, no progress, not started', async () => {
    const before = Date.now();
    const id = await queueBackup(api.app, { source: folder, destination: 'nightly/db-1' });

    const res = await getJob(id);

    expect(res.statusCode, res.body).toBe(200);
    const view = res.json<JobViewBody>();
    expect(view).toEqual({
      id,
      kind: 'backup',
      status: 'queued',
      source: folder,
      destination: 'nightly/db-1',
      schedule: null,
      attempts: 0,
      progress: {
        files: 0,
        filesTotal: 0,
        bytes: 0,
        bytesTotal: 0,
        bytesPerSecond: 0,
        etaSeconds: null,
        current: null,
      },
      createdAt: matching(ISO_DATE),
      startedAt: null,
      finishedAt: null,
      actor: 'admin',
    });
    const created = Date.parse(view.createdAt);
    expect(created).toBeGreaterThanOrEqual(before - 1000);
    expect(created).toBeLessThanOrEqual(Date.now() + 1000);
  });

  it('answers 404 JOB_NOT_FOUND for an id nobody queued', async () => {
    const error = expectError(await getJob('0b5e3c8e-0000-4000-8000-000000000000'), 404, 'JOB_NOT_FOUND');
    expect(error.message).toContain('0b5e3c8e-0000-4000-8000-000000000000');
  });

  it.each([
    ['an encoded ".." id', 'a%2e%2e'],
    ['an id with a dot', 'abc.def'],
    ['an id over 64 characters', 'a'.repeat(70)],
  ])('answers 400 for %s', async (_case, id) => {
    expectError(await getJob(id), 400, 'VALIDATION_FAILED');
  });

  it('rebuilds a completed job from the log once Redis has dropped it', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, id, completed);
    expect(await api.app.backupQueue.getJob(id)).toBeUndefined();

    const res = await getJob(id);

    expect(res.statusCode, res.body).toBe(200);
    const view = res.json<JobViewBody>();
    expect(view).toEqual({
      id,
      kind: 'backup',
      status: 'completed',
      source: folder,
      destination: 'data',
      schedule: null,
      attempts: 1,
      progress: { files: 3, filesTotal: 3, bytes: 1234, bytesTotal: 1234 },
      result: { path: completed.snapshot, files: 3, bytes: 1234, durationMs: 56 },
      createdAt: matching(ISO_DATE),
      startedAt: matching(ISO_DATE),
      finishedAt: matching(ISO_DATE),
      actor: 'admin',
    });
    expect(view.startedAt && view.finishedAt && view.startedAt <= view.finishedAt).toBe(true);
    expect(view.createdAt <= (view.startedAt ?? '')).toBe(true);
  });

  it('passes on the raw bytes of a warning path that is not UTF-8', async () => {
    const connection = createRedis(api.env.redisUrl, 'worker');
    const worker = new Worker(QUEUE_NAME, null, { connection, prefix: api.env.config.queuePrefix, autorun: false });
    try {
      // LIFO: the job the worker takes next, whatever earlier tests left waiting.
      const added = await api.app.backupQueue.add(
        BACKUP_JOB_NAME,
        { source: folder, destination: 'raw' },
        { lifo: true },
      );
      const job = await worker.getNextJob('test-token');
      expect(job?.id).toBe(added.id);
      const item = {
        path: 'caf\uFFFD',
        pathBase64: Buffer.from('caf\xe9', 'latin1').toString('base64'),
        code: 'ENOENT',
      };
      const result = { path: '/b/raw/x', files: 1, bytes: 1, durationMs: 1, dirs: 0, links: 0, skipped: 0 };
      await job?.moveToCompleted({ ...result, warnings: { count: 1, items: [item] } }, 'test-token', false);
      await api.app.logStore.append({
        action: 'backup',
        parameter: folder,
        status: 'completed',
        jobId: added.id ?? '',
        attempt: 1,
        worker: 'test-worker',
      });

      const res = await getJob(added.id ?? '');

      expect(res.statusCode, res.body).toBe(200);
      expect(res.json<{ result: { warnings: unknown } }>().result.warnings).toEqual({ count: 1, items: [item] });
    } finally {
      await worker.close();
      connection.disconnect();
    }
  });

  it('reads its writes: a job Redis calls completed stays active until the log has its completed row', async () => {
    const connection = createRedis(api.env.redisUrl, 'worker');
    const worker = new Worker(QUEUE_NAME, null, { connection, prefix: api.env.config.queuePrefix, autorun: false });
    try {
      // As the API queues a job (LIFO: the one the worker takes next, whatever earlier tests left).
      const id = randomUUID();
      const entry = { action: 'backup', parameter: folder, jobId: id, attempt: 1, worker: 'test-worker' } as const;
      await api.app.logStore.append({ ...entry, status: 'queued', actor: 'admin' });
      await api.app.backupQueue.add(
        BACKUP_JOB_NAME,
        { source: folder, destination: 'read-your-writes', actor: 'admin' },
        { jobId: id, lifo: true },
      );
      // A worker takes it and finishes it in Redis; its rows are still on their way to MySQL.
      const job = await worker.getNextJob('test-token');
      expect(job?.id).toBe(id);
      const result = { path: '/b/ryw/x', files: 1, bytes: 5, durationMs: 1, dirs: 0, links: 0, skipped: 0 };
      await job?.moveToCompleted(result, 'test-token', false);

      const before = (await getJob(id)).json<JobViewBody>();
      const logged = await collect<LogRowBody>(api.app, `/logs?jobId=${id}`);

      expect(before).toMatchObject({ status: 'active', finishedAt: null });
      expect(before.result).toBeUndefined();
      expect(logged.map((row) => row.status)).toEqual(['queued']);

      await api.app.logStore.append([
        { ...entry, status: 'active' },
        { ...entry, status: 'completed', snapshot: result.path, files: 1, bytes: 5, durationMs: 1 },
      ]);
      const after = (await getJob(id)).json<JobViewBody>();
      const listed = (await collect<JobViewBody>(api.app, '/jobs?limit=100')).find((view) => view.id === id);

      expect(after).toMatchObject({ status: 'completed', result: { path: result.path } });
      expect(listed).toMatchObject({ status: 'completed' });
      expect((await collect<LogRowBody>(api.app, `/logs?jobId=${id}`)).map((row) => row.status)).toContain('completed');
    } finally {
      await worker.close();
      connection.disconnect();
    }
  });

  it('rebuilds a failed job from the log with its error code and message', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, id, {
      status: 'failed',
      code: 'SOURCE_NOT_FOUND',
      message: `source ${folder} does not exist`,
    });

    const res = await getJob(id);

    expect(res.statusCode, res.body).toBe(200);
    const view = res.json<JobViewBody>();
    expect(view).toMatchObject({
      id,
      status: 'failed',
      attempts: 1,
      error: { code: 'SOURCE_NOT_FOUND', message: `source ${folder} does not exist` },
      startedAt: matching(ISO_DATE),
      finishedAt: matching(ISO_DATE),
    });
    expect(view.result).toBeUndefined();
  });
});

describe('GET /jobs', () => {
  it('lists jobs newest first and pages through every job exactly once', async () => {
    const created: string[] = [];
    for (let i = 0; i < 5; i += 1)
      created.push(await queueBackup(api.app, { source: folder, destination: `page-${i}` }));
    const everyJob = (await logRows(api.db, "status = 'queued'")).map((row) => row.job_id).reverse();

    const pages = await allPages<JobViewBody>(api.app, '/jobs?limit=2');

    const listed = pages.flatMap((page) => page.items.map((item) => item.id));
    expect(listed).toEqual(everyJob);
    expect(listed.slice(0, 5)).toEqual([...created].reverse());
    expect(pages.every((page) => page.items.length <= 2)).toBe(true);
    expect(pages.at(-1)?.nextCursor).toBeNull();
    expect(pages.slice(0, -1).every((page) => page.items.length === 2 && page.nextCursor !== null)).toBe(true);
  });

  it('answers a full job view for each item', async () => {
    const id = await queueBackup(api.app, { source: folder, destination: 'viewed' });

    const res = await api.app.inject({ method: 'GET', url: '/jobs?limit=1' });

    expect(res.statusCode, res.body).toBe(200);
    const page = res.json<PageBody<JobViewBody>>();
    expect(page.items).toEqual([(await getJob(id)).json()]);
    expect(page.nextCursor).toEqual(anyNumber());
  });

  it('filters by status', async () => {
    const done = await queueBackup(api.app, { source: folder, destination: 'done' });
    const waiting = await queueBackup(api.app, { source: folder, destination: 'waiting' });
    await finishThroughLog(api.app, done, completed);

    const completedJobs = await collect<JobViewBody>(api.app, '/jobs?status=completed&limit=50');
    const queuedJobs = await collect<JobViewBody>(api.app, '/jobs?status=queued&limit=50');

    expect(completedJobs.map((item) => item.id)).toContain(done);
    expect(completedJobs.map((item) => item.id)).not.toContain(waiting);
    expect(completedJobs.every((item) => item.status === 'completed')).toBe(true);
    expect(queuedJobs.map((item) => item.id)).toContain(waiting);
    expect(queuedJobs.map((item) => item.id)).not.toContain(done);
    expect(queuedJobs.every((item) => item.status === 'queued')).toBe(true);
  });

  it('filters by the status each job view shows, in the listing order, with its cursors', async () => {
    const histories: LogStatus[][] = [
      ['queued'],
      ['queued', 'active'],
      ['queued', 'active', 'retrying'],
      ['queued', 'active', 'completed'],
      ['queued', 'active', 'failed'],
      ['queued', 'cancelled'],
      ['queued', 'active', 'retrying', 'active', 'completed'],
      // A stray row of a dead attempt, after the terminal one: the view says completed.
      ['queued', 'active', 'completed', 'active'],
      ['queued', 'active', 'retrying', 'active'],
    ];
    // Jobs Redis no longer holds, so every view comes from the log.
    const ids: string[] = [];
    for (const history of histories) {
      const id = randomUUID();
      ids.push(id);
      let attempt = 0;
      for (const status of history) {
        if (status === 'active') attempt += 1;
        const entry = {
          action: 'backup',
          parameter: folder,
          status,
          jobId: id,
          worker: 'test',
          actor: 'admin',
        } as const;
        await api.app.logStore.append({ ...entry, attempt: Math.max(1, attempt) });
      }
    }
    const queuedRowIds = new Map((await logRows(api.db, "status = 'queued'")).map((row) => [row.job_id, row.id]));
    const listing = await collect<JobViewBody>(api.app, '/jobs?limit=4');

    for (const status of JOB_STATUSES) {
      const pages = await allPages<JobViewBody>(api.app, `/jobs?status=${status}&limit=2`);

      const filtered = pages.flatMap((page) => page.items);
      expect(filtered.every((item) => item.status === status)).toBe(true);
      expect(filtered.map((item) => item.id)).toEqual(
        listing.filter((item) => item.status === status).map((item) => item.id),
      );
      for (const page of pages.slice(0, -1))
        expect(page.nextCursor).toBe(queuedRowIds.get(page.items.at(-1)?.id ?? null));
    }
    const mine = (status: string) => listing.filter((item) => ids.includes(item.id) && item.status === status).length;
    expect(JOB_STATUSES.map((status) => [status, mine(status)])).toEqual([
      ['queued', 1],
      ['active', 2],
      ['retrying', 1],
      ['completed', 3],
      ['failed', 1],
      ['cancelled', 1],
    ]);
  });

  it.each([
    ['an unknown status', 'status=done'],
    ['the log-only status rejected', 'status=rejected'],
    ['limit 0', 'limit=0'],
    ['limit 5000', 'limit=5000'],
    ['a non-numeric limit', 'limit=ten'],
    ['a non-numeric cursor', 'cursor=abc'],
    ['an unknown parameter', 'sort=asc'],
  ])('answers 400 for %s', async (_case, query) => {
    expectError(await api.app.inject({ method: 'GET', url: `/jobs?${query}` }), 400, 'VALIDATION_FAILED');
  });
});

describe('DELETE /jobs/:id', () => {
  it('cancels a queued job: 200 cancelled, gone from Redis, one cancelled log row', async () => {
    const id = await queueBackup(api.app, { source: folder });

    const res = await deleteJob(id);

    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<JobViewBody>()).toMatchObject({
      id,
      status: 'cancelled',
      source: folder,
      finishedAt: matching(ISO_DATE),
    });
    expect(await api.app.backupQueue.getJob(id)).toBeUndefined();
    expect((await logRows(api.db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued', 'cancelled']);

    const after = await getJob(id);
    expect(after.statusCode, after.body).toBe(200);
    expect(after.json<JobViewBody>()).toMatchObject({
      id,
      status: 'cancelled',
      error: { code: 'CANCELLED' },
      finishedAt: matching(ISO_DATE),
    });
  });

  it('answers 409 JOB_FINISHED when cancelling twice, without a second log row', async () => {
    const id = await queueBackup(api.app, { source: folder });
    expect((await deleteJob(id)).statusCode).toBe(200);

    const error = expectError(await deleteJob(id), 409, 'JOB_FINISHED');

    expect(error.message).toContain('cancelled');
    expect((await logRows(api.db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued', 'cancelled']);
  });

  it('answers 409 JOB_FINISHED for a job that completed', async () => {
    const id = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, id, completed);

    const error = expectError(await deleteJob(id), 409, 'JOB_FINISHED');

    expect(error.message).toContain('completed');
    expect((await getJob(id)).json<JobViewBody>().status).toBe('completed');
  });

  it('answers 404 JOB_NOT_FOUND for an unknown job', async () => {
    expectError(await deleteJob('0b5e3c8e-0000-4000-8000-000000000001'), 404, 'JOB_NOT_FOUND');
  });

  it('answers 400 for a malformed id', async () => {
    expectError(await deleteJob('a%2e%2e'), 400, 'VALIDATION_FAILED');
  });
});
