import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { UnrecoverableError, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKUP_JOB_NAME, QUEUE_NAME, createRedis, noteCancelled } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import { configWith, createOutage, queueBackup, startApi, type ApiHarness } from './helpers.js';

let api: ApiHarness;

beforeAll(async () => {
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
});

async function withApp<T>(overrides: Record<string, string>, use: (app: FastifyInstance) => Promise<T>): Promise<T> {
  const app = await buildApp({ config: configWith(api.env, overrides) });
  try {
    return await use(app);
  } finally {
    await app.close();
  }
}

describe('GET /health', () => {
  it('answers 200 while the process runs', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/health' });

    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('answers 200 even when MySQL does not', async () => {
    await withApp({ MYSQL_PORT: '1' }, async (app) => {
      expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    });
  });
});

describe('GET /ready', () => {
  it('answers 200 when Redis and MySQL answer', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/ready' });

    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ redis: 'up', mysql: 'up' });
  });

  it('answers 503 naming MySQL when MySQL does not answer', async () => {
    const res = await withApp({ MYSQL_PORT: '1' }, (app) => app.inject({ method: 'GET', url: '/ready' }));

    expect(res.statusCode, res.body).toBe(503);
    const body = res.json<{ message: string; code: string; redis: string; mysql: string; statusCode: number }>();
    expect(body).toMatchObject({ statusCode: 503, code: 'NOT_READY', redis: 'up', mysql: 'down' });
    expect(body.message).toContain('MySQL');
    expect(body.message).not.toContain('Redis');
  });

  it('answers 503 naming Redis when Redis does not answer', async () => {
    // Redis is reached through a relay that stays closed until the check is done, then
    // opens so the app can close (an app that never reached Redis cannot: see the report).
    const outage = await createOutage(api.env.redisUrl);
    const res = await withApp({ REDIS_URL: outage.url }, async (app) => {
      const answer = await app.inject({ method: 'GET', url: '/ready' });
      await outage.restore();
      return answer;
    }).finally(() => outage.cut());

    expect(res.statusCode, res.body).toBe(503);
    const body = res.json<{ message: string; code: string; redis: string; mysql: string; statusCode: number }>();
    expect(body).toMatchObject({ statusCode: 503, code: 'NOT_READY', redis: 'down', mysql: 'up' });
    expect(body.message).toContain('Redis');
    expect(body.message).not.toContain('MySQL');
  });
});

describe('GET /metrics', () => {
  it('counts cancelled jobs apart from failed ones, though BullMQ keeps both in its failed set', async () => {
    const folder = join(api.env.sources, 'data');
    await mkdir(folder, { recursive: true });
    const redis = createRedis(api.env.redisUrl, 'worker');
    const worker = new Worker(QUEUE_NAME, null, {
      connection: redis,
      prefix: api.env.config.queuePrefix,
      autorun: false,
    });
    try {
      // What the worker does: fail the job with the reason's code, and note a cancel.
      const endings = ['CANCELLED: cancelled by request', 'COPY_FAILED: disk on fire', 'CANCELLED: again'];
      for (const reason of endings) {
        const added = await api.app.backupQueue.add(
          BACKUP_JOB_NAME,
          { source: folder, destination: 'm' },
          { lifo: true },
        );
        const job = await worker.getNextJob('test-token');
        expect(job?.id).toBe(added.id);
        await job?.moveToFailed(new UnrecoverableError(reason), 'test-token', false);
        if (reason.startsWith('CANCELLED')) await noteCancelled(redis, api.env.config.queuePrefix, added.id ?? '', 60);
      }

      const res = await api.app.inject({ method: 'GET', url: '/metrics' });

      expect(res.body).toMatch(/coffer_queue_jobs\{state="failed"\} 1\b/);
      expect(res.body).toMatch(/coffer_queue_jobs\{state="cancelled"\} 2\b/);
    } finally {
      await worker.close();
      redis.disconnect();
    }
  });

  it('serves Prometheus text with request latency, queue depth and finished jobs', async () => {
    const folder = join(api.env.sources, 'data');
    await mkdir(folder, { recursive: true });
    await queueBackup(api.app, { source: folder });
    await api.app.inject({ method: 'GET', url: '/health' });

    const res = await api.app.inject({ method: 'GET', url: '/metrics' });

    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('coffer_http_request_duration_seconds');
    expect(res.body).toMatch(
      /coffer_http_request_duration_seconds_count\{[^}]*route="\/backup"[^}]*status_code="202"[^}]*\} 1\b/,
    );
    expect(res.body).toMatch(/coffer_queue_jobs\{state="waiting"\} 1\b/);
    expect(res.body).toContain('# TYPE coffer_jobs_finished_total counter');
  });
});

describe('GET /docs', () => {
  it('describes every endpoint in OpenAPI at /docs/json', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/docs/json' });

    expect(res.statusCode).toBe(200);
    const doc = res.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/backup', '/jobs/{id}', '/jobs', '/logs', '/health', '/ready', '/metrics']),
    );
    expect(Object.keys(doc.paths['/backup'] ?? {})).toContain('post');
    expect(Object.keys(doc.paths['/jobs/{id}'] ?? {})).toEqual(expect.arrayContaining(['get', 'delete']));
  });

  it('serves the UI as HTML at /docs/', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/docs/' });

    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/<html/i);
  });
});
