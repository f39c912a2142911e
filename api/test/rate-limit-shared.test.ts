import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { localAllowance } from '../src/auth/rate-limit-store.js';
import { configWith, expectError, issueToken, startApi, type ApiHarness } from './helpers.js';

let api: ApiHarness;
const apps: FastifyInstance[] = [];

beforeAll(async () => {
  api = await startApi({ RATE_LIMIT_PER_MINUTE: '0' });
});

afterAll(async () => {
  for (const app of apps.splice(0)) await app.close();
  await api?.close();
});

/** An API replica on the harness's database, Redis and queue prefix, with this limit. */
async function replica(perMinute: number): Promise<FastifyInstance> {
  const app = await buildApp({ config: configWith(api.env, { RATE_LIMIT_PER_MINUTE: String(perMinute) }) });
  apps.push(app);
  await app.ready();
  return app;
}

const whoami = (app: FastifyInstance, token: string) =>
  app.inject({ method: 'GET', url: '/whoami', headers: { authorization: `Bearer ${token}` } });

/** `count` requests, `concurrency` at a time; their statuses. */
async function burst(app: FastifyInstance, token: string, count: number, concurrency = 20): Promise<number[]> {
  const statuses: number[] = [];
  for (let sent = 0; sent < count; sent += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, count - sent) }, () => whoami(app, token));
    statuses.push(...(await Promise.all(batch)).map((res: LightMyRequestResponse) => res.statusCode));
  }
  return statuses;
}

/** Waits until the current fixed minute has at least `ms` left, so a test's requests share one window. */
async function roomInWindow(ms: number): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < ms) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

describe('the rate limit shared through Redis without a round trip per request', () => {
  it('is exact on one replica: the limit is admitted, the next request gets 429 with Retry-After', async () => {
    const app = await replica(200);
    const token = await issueToken(api, 'exact-one', 'viewer');
    await roomInWindow(8_000);

    const statuses = await burst(app, token, 200);
    const over = await whoami(app, token);

    expect(statuses.filter((status) => status === 200)).toHaveLength(200);
    expectError(over, 429, 'RATE_LIMITED');
    const retryAfter = Number(over.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(Number(over.headers['x-ratelimit-limit'])).toBe(200);
  });

  it('holds across two replicas within the stated error: limit + (replicas − 1) × 2% of it', async () => {
    const limit = 1000;
    const [one, two] = [await replica(limit), await replica(limit)];
    const token = await issueToken(api, 'shared-two', 'viewer');
    await roomInWindow(15_000);

    const [first, second] = await Promise.all([burst(one, token, 800, 10), burst(two, token, 800, 10)]);

    const admitted = [...first, ...second].filter((status) => status === 200).length;
    expect(admitted).toBeGreaterThanOrEqual(limit);
    expect(admitted).toBeLessThanOrEqual(limit + localAllowance(limit));
    expect([...first, ...second].every((status) => status === 200 || status === 429)).toBe(true);
  });

  it('sends Redis a small fraction of the requests it counts, over HTTP', async () => {
    const app = await replica(1_000_000);
    // Over real connections, so the process's timers (the sync) run as they do in production.
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    const get = async () =>
      (await fetch(`${address}/whoami`, { headers: { authorization: `Bearer ${token}` } })).status;
    const token = await issueToken(api, 'counted-cheaply', 'viewer');
    const namespace = `${api.env.config.queuePrefix}:rate-limit:`;
    const monitor = await new Redis(api.env.redisUrl).monitor();
    let commands = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((arg) => arg.startsWith(namespace))) commands += 1;
    });
    try {
      await roomInWindow(10_000);
      const started = Date.now();
      const statuses: number[] = [];
      for (let sent = 0; sent < 1000; sent += 20)
        statuses.push(...(await Promise.all(Array.from({ length: 20 }, get))));
      // The last counts reach Redis with the next sync.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const elapsed = Date.now() - started;

      expect(statuses.every((status) => status === 200)).toBe(true);
      // One INCRBY and one PEXPIRE per sync (every 250 ms), not one script per request.
      expect(commands).toBeGreaterThan(0);
      expect(commands).toBeLessThanOrEqual(2 * Math.ceil(elapsed / 250) + 2);
      expect(commands).toBeLessThan(1000 / 10);
      const shared = await api.app.redis.get(`${namespace}token:counted-cheaply:${Math.floor(started / 60_000)}`);
      expect(Number(shared)).toBe(1000);
      console.info(`rate limit: ${commands} Redis commands for 1000 requests in ${elapsed} ms`);
    } finally {
      monitor.disconnect();
    }
  });
});
