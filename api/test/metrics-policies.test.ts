import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { UnrecoverableError, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME, createRedis, type JobKind } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import { configWith, createOutage, pruneSnapshot, recordSnapshot, startApi, type ApiHarness } from './helpers.js';

// The series alert rules are written against (compose/prometheus/alerts.yml).

let api: ApiHarness;

beforeAll(async () => {
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
});

async function scrape(app: FastifyInstance = api.app): Promise<string> {
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  expect(res.statusCode, res.body).toBe(200);
  return res.body;
}

/** The value of one series in a scrape, or undefined when the scrape leaves it out. */
function valueOf(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('snapshots per destination', () => {
  it('gives the newest backup of each destination, pruned ones included, and the snapshots it keeps', async () => {
    const older = '2026-11-20T10:00:00.000Z';
    const newest = '2026-11-28T23:30:00.250Z';
    await recordSnapshot(api.app, api.env.backups, {
      destination: 'daily',
      source: '/s',
      actor: null,
      createdAt: older,
    });
    const pruned = await recordSnapshot(api.app, api.env.backups, {
      destination: 'daily',
      source: '/s',
      actor: null,
      createdAt: newest,
    });
    await recordSnapshot(api.app, api.env.backups, {
      destination: 'daily',
      source: '/s',
      actor: null,
      createdAt: older,
    });
    await pruneSnapshot(api.app, pruned.id);
    const damaged = await recordSnapshot(api.app, api.env.backups, {
      destination: 'weekly',
      source: '/t',
      actor: null,
      createdAt: older,
    });
    await api.db.query("UPDATE snapshot SET verify = 'damaged', verified_at = NOW(3) WHERE id = ?", [damaged.id]);

    const body = await scrape();

    expect(body).toContain('# TYPE coffer_last_success_timestamp_seconds gauge');
    expect(valueOf(body, 'coffer_last_success_timestamp_seconds{destination="daily"}')).toBe(Date.parse(newest) / 1000);
    expect(valueOf(body, 'coffer_last_success_timestamp_seconds{destination="weekly"}')).toBe(Date.parse(older) / 1000);
    expect(valueOf(body, 'coffer_snapshots{destination="daily"}')).toBe(2);
    expect(valueOf(body, 'coffer_snapshots{destination="weekly"}')).toBe(1);
    expect(valueOf(body, 'coffer_snapshots_damaged{destination="daily"}')).toBe(0);
    expect(valueOf(body, 'coffer_snapshots_damaged{destination="weekly"}')).toBe(1);
  });

  it('still scrapes while MySQL is down, leaving only the snapshot series out', async () => {
    // Public metrics: a token check would need MySQL itself.
    const app = await buildApp({ config: configWith(api.env, { MYSQL_PORT: '1', METRICS_PUBLIC: 'true' }) });
    try {
      await app.ready();
      const body = await scrape(app);

      expect(body).toContain('coffer_queue_jobs{state="waiting"}');
      expect(body).toContain('# TYPE coffer_snapshots gauge');
      expect(body).not.toMatch(/^coffer_snapshots\{/m);
      expect(body).not.toMatch(/^coffer_last_success_timestamp_seconds\{/m);
    } finally {
      await app.close();
    }
  });
});

describe('jobs finished', () => {
  it('counts finished jobs by kind and status', async () => {
    const redis = createRedis(api.env.redisUrl, 'worker');
    const worker = new Worker(QUEUE_NAME, null, {
      connection: redis,
      prefix: api.env.config.queuePrefix,
      autorun: false,
    });
    try {
      // What a worker does at the end of each job.
      const endings: [JobKind, string][] = [
        ['backup', 'completed'],
        ['backup', 'completed'],
        ['backup', 'COPY_FAILED: disk on fire'],
        ['verify', 'VERIFY_FAILED: damaged'],
        ['verify', 'CANCELLED: cancelled by request'],
        ['restore', 'completed'],
      ];
      for (const [kind, ending] of endings) {
        const added = await api.app.backupQueue.add(kind, { source: '/s', destination: 'm' }, { lifo: true });
        const job = await worker.getNextJob('test-token');
        expect(job?.id).toBe(added.id);
        if (ending === 'completed') {
          await job?.moveToCompleted({ bytes: 1000, bytesLinked: 400 }, 'test-token', false);
        } else {
          await job?.moveToFailed(new UnrecoverableError(ending), 'test-token', false);
        }
      }

      const expected = {
        'coffer_jobs_finished_total{kind="backup",status="completed"}': 2,
        'coffer_jobs_finished_total{kind="backup",status="failed"}': 1,
        'coffer_jobs_finished_total{kind="verify",status="failed"}': 1,
        'coffer_jobs_finished_total{kind="verify",status="cancelled"}': 1,
        'coffer_jobs_finished_total{kind="restore",status="completed"}': 1,
        // Only backups copy into snapshots.
        coffer_copy_bytes_total: 2000,
      };
      await expect
        .poll(
          async () => {
            const body = await scrape();
            return Object.fromEntries(Object.keys(expected).map((series) => [series, valueOf(body, series)]));
          },
          { timeout: 5000, interval: 100 },
        )
        .toEqual(expected);
    } finally {
      await worker.close();
      redis.disconnect();
    }
  });
});

describe('log outbox backlog', () => {
  it('gives the rows waiting in the Redis list at scrape time', async () => {
    const { queuePrefix } = api.env.config;
    const { redisUrl } = api.env;
    const listKey = `${queuePrefix}:log-outbox`;
    const lockKey = `${queuePrefix}:log-outbox:lock`;
    const redis = createRedis(redisUrl, 'producer');
    // Without an offline queue, commands sent before the connection is up fail.
    if (redis.status !== 'ready') await once(redis, 'ready');
    try {
      expect(valueOf(await scrape(), 'coffer_log_outbox_rows')).toBe(0);
      // Hold the drain lock as a busy drainer would, so the API's own drainer leaves the rows alone.
      expect(await redis.set(lockKey, 'metrics-test', 'PX', 60_000, 'NX')).toBe('OK');
      await redis.rpush(listKey, ...Array.from({ length: 250 }, (_, i) => JSON.stringify({ test: i })));

      const body = await scrape();
      expect(body).toContain('# TYPE coffer_log_outbox_rows gauge');
      expect(valueOf(body, 'coffer_log_outbox_rows')).toBe(250);

      await redis.rpush(listKey, 'one more');
      expect(valueOf(await scrape(), 'coffer_log_outbox_rows')).toBe(251);
    } finally {
      await redis.del(listKey, lockKey);
      redis.disconnect();
    }
    expect(valueOf(await scrape(), 'coffer_log_outbox_rows')).toBe(0);
  });

  it('still scrapes while Redis is down, leaving the backlog out', async () => {
    const outage = await createOutage(api.env.redisUrl);
    await outage.restore();
    const app = await buildApp({ config: configWith(api.env, { REDIS_URL: outage.url, METRICS_PUBLIC: 'true' }) });
    try {
      await app.ready();
      expect(valueOf(await scrape(app), 'coffer_log_outbox_rows')).toBe(0);
      await outage.cut();

      const body = await scrape(app);
      expect(body).toContain('# TYPE coffer_log_outbox_rows gauge');
      expect(body).not.toMatch(/^coffer_log_outbox_rows /m);
      // The MySQL-backed series are still there.
      expect(body).toMatch(/^coffer_snapshots\{/m);
    } finally {
      // Redis comes back first: an app whose Redis never answers cannot close quickly.
      await outage.restore();
      await app.close();
      await outage.cut();
    }
  });
});
