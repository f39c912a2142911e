import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import {
  anyNumber,
  authorise,
  configWith,
  createOutage,
  expectError,
  finishThroughLog,
  lastLogId,
  logRows,
  logSettled,
  matching,
  queueBackup,
  startApi,
  type ApiHarness,
  type ErrorBody,
  type JobViewBody,
  type Outage,
  queuedBackup,
} from './helpers.js';

// A second API shares the healthy one's queue prefix and database but reaches
// Redis or MySQL through a broken path; the healthy one checks what was left behind.
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

describe('while Redis is down', () => {
  let outage: Outage | undefined;
  let app: FastifyInstance | undefined;
  let completedJob: string;

  beforeAll(async () => {
    completedJob = await queueBackup(api.app, { source: folder });
    await finishThroughLog(api.app, completedJob, {
      status: 'completed',
      snapshot: '/backups/data/snap',
      files: 1,
      bytes: 2,
      durationMs: 3,
    });
    outage = await createOutage(api.env.redisUrl);
    await outage.restore();
    app = authorise(await buildApp({ config: configWith(api.env, { REDIS_URL: outage.url }) }), api.adminToken);
    await app.ready();
    await outage.cut();
  });

  afterAll(async () => {
    // Redis comes back first: an app whose Redis never answers cannot close (see the report).
    await outage?.restore();
    await app?.close();
    await outage?.cut();
  });

  function down(): FastifyInstance {
    if (!app) throw new Error('app not built');
    return app;
  }

  it('refuses a backup with 503 QUEUE_UNAVAILABLE, queues nothing and logs nothing', async () => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    await logSettled(api.app);
    const lastIdBefore = await lastLogId(api.db);

    const res = await down().inject({ method: 'POST', url: '/backup', payload: { source: folder } });

    const error = expectError(res, 503, 'QUEUE_UNAVAILABLE');
    expect(error.message).toContain('Redis');
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    // The `queued` row goes through the outbox in Redis: refused with the job, it never exists.
    // (A job whose row was recorded but which the queue refused: api/test/submit-outbox.test.ts.)
    await logSettled(api.app);
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([]);
  });

  it('does not hold on to an Idempotency-Key used during the outage', async () => {
    const headers = { 'idempotency-key': 'during-redis-outage' };
    const lastIdBefore = await lastLogId(api.db);

    const refused = await down().inject({ method: 'POST', url: '/backup', payload: { source: folder }, headers });

    expectError(refused, 503, 'QUEUE_UNAVAILABLE');
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([]);
    const retried = await api.app.inject({ method: 'POST', url: '/backup', payload: { source: folder }, headers });
    expect(retried.statusCode, retried.body).toBe(202);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
  });

  it('still refuses bad input with 400', async () => {
    const res = await down().inject({ method: 'POST', url: '/backup', payload: { source: '/etc' } });

    expectError(res, 400, 'SOURCE_OUTSIDE_ROOTS');
  });

  it('keeps serving finished jobs from the log', async () => {
    const one = await down().inject({ method: 'GET', url: `/jobs/${completedJob}` });
    const list = await down().inject({ method: 'GET', url: '/jobs' });

    expect(one.statusCode, one.body).toBe(200);
    expect(one.json<JobViewBody>()).toMatchObject({ id: completedJob, status: 'completed' });
    expect(list.statusCode, list.body).toBe(200);
  });

  it('keeps serving /metrics so the outage can be seen', async () => {
    const res = await down().inject({ method: 'GET', url: '/metrics' });

    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).toContain('coffer_http_request_duration_seconds');
  });
});

describe('while MySQL is down', () => {
  let app: FastifyInstance | undefined;

  beforeAll(async () => {
    app = authorise(await buildApp({ config: configWith(api.env, { MYSQL_PORT: '1' }) }), api.adminToken);
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
  });

  function down(): FastifyInstance {
    if (!app) throw new Error('app not built');
    return app;
  }

  it('refuses a backup with 503 LOG_UNAVAILABLE naming MySQL and queues nothing', async () => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastIdBefore = await lastLogId(api.db);

    const res = await down().inject({ method: 'POST', url: '/backup', payload: { source: folder } });

    const error = expectError(res, 503, 'LOG_UNAVAILABLE');
    expect(error.message).toContain('MySQL');
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([]);
  });

  it('releases an Idempotency-Key whose request could not be logged, so a retry queues the job', async () => {
    const headers = { 'idempotency-key': 'during-mysql-outage' };

    expectError(
      await down().inject({ method: 'POST', url: '/backup', payload: { source: folder }, headers }),
      503,
      'LOG_UNAVAILABLE',
    );
    const retried = await api.app.inject({ method: 'POST', url: '/backup', payload: { source: folder }, headers });

    expect(retried.statusCode, retried.body).toBe(202);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
    const { id } = retried.json<{ id: string }>();
    expect((await queuedBackup(api.app, id))?.source).toBe(folder);
  });

  it('still refuses bad input with 400 and its code', async () => {
    const res = await down().inject({ method: 'POST', url: '/backup', payload: { source: 'relative/path' } });

    expectError(res, 400, 'INVALID_SOURCE');
  });

  it('answers reads of the log with a stable API code, not a driver error code', async () => {
    const answers: Record<string, [number, string]> = {};
    for (const url of ['/logs', '/jobs', '/jobs/0b5e3c8e-0000-4000-8000-000000000000']) {
      const res = await down().inject({ method: 'GET', url });
      answers[url] = [res.statusCode, res.json<ErrorBody>().code];
    }

    const unavailable = [anyNumber(), matching(/^(LOG_UNAVAILABLE|INTERNAL_ERROR)$/)];
    expect(answers).toEqual({
      '/logs': unavailable,
      '/jobs': unavailable,
      '/jobs/0b5e3c8e-0000-4000-8000-000000000000': unavailable,
    });
    expect(Object.values(answers).every(([status]) => status >= 500)).toBe(true);
  });
});
