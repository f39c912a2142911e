import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../src/app.js';
import { createRevocationList } from '../src/auth/revocation-list.js';
import type { Principal } from '../src/auth/roles.js';
import { createTokenCache } from '../src/auth/token-cache.js';
import { runTokenCommand } from '../src/cli/token-command.js';
import { configWith, createOutage, expectError, issueToken, startApi, type ApiHarness } from './helpers.js';

// Replica A is the harness's app; replica B is another API process on the same MySQL database,
// Redis and queue prefix. Both cache the tokens MySQL vouched for.
let api: ApiHarness;
let b: FastifyInstance;
const cleanups: (() => Promise<void>)[] = [];

/** Another replica; its rate limit is off, so bursts measure authentication alone. */
async function replica(overrides: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildApp({ config: configWith(api.env, { RATE_LIMIT_PER_MINUTE: '0', ...overrides }) });
  cleanups.push(() => app.close());
  await app.ready();
  return app;
}

beforeAll(async () => {
  api = await startApi();
  b = await replica();
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await api?.close();
});

const whoami = (app: FastifyInstance, token: string) =>
  app.inject({ method: 'GET', url: '/whoami', headers: { authorization: `Bearer ${token}` } });

async function tokenId(name: string): Promise<number> {
  return (await api.app.tokenStore.byName(name))?.id ?? 0;
}

/** The command line's `revoke`, on a Redis connection of its own as `pnpm --dir api token` has. */
async function revokeByCommandLine(name: string): Promise<{ code: number; err: string }> {
  const cli = new Redis(api.env.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
  const err: string[] = [];
  try {
    const code = await runTokenCommand(['revoke', name], {
      tokens: api.app.tokenStore,
      revocations: createRevocationList(cli, api.env.config.queuePrefix),
      config: api.env.config,
      out: () => undefined,
      err: (line) => err.push(line),
    });
    return { code, err: err.join('\n') };
  } finally {
    cli.disconnect();
  }
}

describe('the token cache', () => {
  it('is live on both replicas once they are ready', () => {
    expect(api.app.tokenCache.live).toBe(true);
    expect(b.tokenCache.live).toBe(true);
  });

  it('answers 1,000 requests with one token after a single MySQL lookup', async () => {
    const token = await issueToken(api, 'cached-burst', 'viewer');
    const lookups = vi.spyOn(b.tokenStore, 'byHash');

    const statuses = new Set<number>();
    for (let i = 0; i < 1000; i += 1) statuses.add((await whoami(b, token)).statusCode);

    expect([...statuses]).toEqual([200]);
    expect(lookups).toHaveBeenCalledTimes(1);
  });

  it('looks an unknown token up every time, so a token works the moment it is created', async () => {
    const lookups = vi.spyOn(b.tokenStore, 'byHash');
    const unknown = 'cfr_not-a-token-anybody-holds';
    expectError(await whoami(b, unknown), 401, 'UNAUTHENTICATED');
    expectError(await whoami(b, unknown), 401, 'UNAUTHENTICATED');
    expect(lookups).toHaveBeenCalledTimes(2);

    const token = await issueToken(api, 'created-after-refusal', 'viewer');
    expect((await whoami(b, token)).statusCode).toBe(200);
  });

  it('keeps a cached token working while MySQL is unreachable; an uncached one still gets 503', async () => {
    const { host, port } = api.env.config.mysql;
    const mysql = await createOutage(`mysql://${host}:${port}`);
    await mysql.restore();
    const d = await replica({ MYSQL_PORT: String(mysql.port) });
    cleanups.push(() => mysql.cut());
    const cached = await issueToken(api, 'cached-before-outage', 'viewer');
    const uncached = await issueToken(api, 'uncached-before-outage', 'viewer');
    expect((await whoami(d, cached)).statusCode).toBe(200);

    await mysql.cut();

    expect((await whoami(d, cached)).statusCode).toBe(200);
    expectError(await whoami(d, uncached), 503, 'LOG_UNAVAILABLE');
  });
});

describe('a revocation', () => {
  it('made by DELETE /tokens/:id on replica A is refused by replica B at once, though B had it cached', async () => {
    const token = await issueToken(api, 'revoked-on-a', 'operator');
    expect((await whoami(b, token)).statusCode).toBe(200);
    const lookups = vi.spyOn(b.tokenStore, 'byHash');
    expect((await whoami(b, token)).statusCode).toBe(200);
    expect(lookups).not.toHaveBeenCalled();

    const revoked = await api.app.inject({ method: 'DELETE', url: `/tokens/${await tokenId('revoked-on-a')}` });
    expect(revoked.statusCode, revoked.body).toBe(200);

    expectError(await whoami(b, token), 401, 'UNAUTHENTICATED');
    expectError(await whoami(api.app, token), 401, 'UNAUTHENTICATED');
  });

  it('made by the command line is refused by every replica at once', async () => {
    const token = await issueToken(api, 'revoked-by-cli', 'viewer');
    expect((await whoami(b, token)).statusCode).toBe(200);
    expect((await whoami(api.app, token)).statusCode).toBe(200);

    const { code, err } = await revokeByCommandLine('revoked-by-cli');
    expect(code, err).toBe(0);

    expectError(await whoami(b, token), 401, 'UNAUTHENTICATED');
    expectError(await whoami(api.app, token), 401, 'UNAUTHENTICATED');
  });

  it('waits until every listening replica confirmed it', async () => {
    const token = await issueToken(api, 'counted-confirmations', 'viewer');
    expect((await whoami(b, token)).statusCode).toBe(200);
    // Revoked in MySQL behind the API's back: only the announcement can reach B's cache.
    const record = await api.app.tokenStore.revoke(await tokenId('counted-confirmations'));

    const push = await api.app.revocations.add(record?.tokenHash ?? '');

    // The harness's app, B, and the other replicas still open.
    expect(push.listeners).toBeGreaterThanOrEqual(2);
    expect(push.confirmed).toBe(push.listeners);
    expectError(await whoami(b, token), 401, 'UNAUTHENTICATED');
  });

  it('is not missed by a replica that lost Redis: its cache stops serving and MySQL answers', async () => {
    const outage = await createOutage(api.env.redisUrl);
    await outage.restore();
    const c = await replica({ REDIS_URL: outage.url });
    cleanups.push(async () => {
      await outage.restore();
      await c.close();
      await outage.cut();
    });
    const token = await issueToken(api, 'revoked-while-cut-off', 'viewer');
    expect((await whoami(c, token)).statusCode).toBe(200);
    expect(c.tokenCache.live).toBe(true);

    await outage.cut();
    await vi.waitFor(() => expect(c.tokenCache.live).toBe(false));
    const lookups = vi.spyOn(c.tokenStore, 'byHash');
    // C cannot hear this one, and is not waited for.
    const revoked = await api.app.inject({
      method: 'DELETE',
      url: `/tokens/${await tokenId('revoked-while-cut-off')}`,
    });
    expect(revoked.statusCode, revoked.body).toBe(200);

    expectError(await whoami(c, token), 401, 'UNAUTHENTICATED');
    expect(lookups).toHaveBeenCalledTimes(1);

    // Subscribed again once Redis is back: caching again, the revoked token still refused.
    await outage.restore();
    await vi.waitFor(() => expect(c.tokenCache.live).toBe(true), { timeout: 10_000 });
    const fresh = await issueToken(api, 'cached-after-reconnection', 'viewer');
    expect((await whoami(c, fresh)).statusCode).toBe(200);
    expect((await whoami(c, fresh)).statusCode).toBe(200);
    expectError(await whoami(c, token), 401, 'UNAUTHENTICATED');
    expect(lookups).toHaveBeenCalledTimes(3);
  });

  it('whose confirmation does not come makes the revoking side return after the bound, saying how many are missing', async () => {
    // A listener that never confirms: subscribed, but never acknowledging.
    const deaf = new Redis(api.env.redisUrl);
    cleanups.push(async () => deaf.disconnect());
    await deaf.subscribe(`${api.env.config.queuePrefix}:auth:revoked`);
    const unconfirmed = vi.fn();
    const revocations = createRevocationList(api.app.redis, api.env.config.queuePrefix, {
      ackTimeoutMs: 300,
      onUnconfirmed: unconfirmed,
    });
    const token = await issueToken(api, 'deaf-listener', 'viewer');
    expect((await whoami(b, token)).statusCode).toBe(200);
    const record = await api.app.tokenStore.revoke(await tokenId('deaf-listener'));
    const started = Date.now();

    const push = await revocations.add(record?.tokenHash ?? '');

    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(push.listeners - push.confirmed).toBe(1);
    expect(unconfirmed).toHaveBeenCalledWith(push, record?.tokenHash);
    // The replicas that did confirm refuse it already.
    expectError(await whoami(b, token), 401, 'UNAUTHENTICATED');
    await deaf.unsubscribe();
  });
});

describe('createTokenCache', () => {
  const principal: Principal = { id: 1, name: 'p', role: 'viewer', sourceRoots: null };
  const hash = 'a'.repeat(64);

  it('serves nothing until live, and forgets everything when it stops being live', () => {
    const cache = createTokenCache();
    cache.put(hash, principal, cache.generation);
    expect(cache.get(hash)).toBeUndefined();

    cache.setLive(true);
    cache.put(hash, principal, cache.generation);
    expect(cache.get(hash)).toEqual(principal);

    cache.setLive(false);
    cache.setLive(true);
    expect(cache.get(hash)).toBeUndefined();
  });

  it('keeps out the answer of a lookup that began before a revocation or a lost subscription', () => {
    const cache = createTokenCache();
    cache.setLive(true);
    const before = cache.generation;
    cache.revoke('b'.repeat(64));
    cache.put(hash, principal, before);
    expect(cache.get(hash)).toBeUndefined();

    const again = cache.generation;
    cache.setLive(false);
    cache.setLive(true);
    cache.put(hash, principal, again);
    expect(cache.get(hash)).toBeUndefined();
  });

  it('never caches a revoked hash again, even from a fresh lookup', () => {
    const cache = createTokenCache();
    cache.setLive(true);
    cache.revoke(hash);
    cache.put(hash, principal, cache.generation);
    expect(cache.get(hash)).toBeUndefined();
  });

  it('expires entries after its TTL and holds at most maxEntries, dropping the oldest', () => {
    let now = 0;
    const cache = createTokenCache({ ttlMs: 1000, maxEntries: 2, now: () => now });
    cache.setLive(true);
    for (const h of ['1', '2', '3']) cache.put(h.repeat(64), { ...principal, name: h }, cache.generation);
    expect(cache.size).toBe(2);
    expect(cache.get('1'.repeat(64))).toBeUndefined();
    expect(cache.get('3'.repeat(64))?.name).toBe('3');

    now = 1000;
    expect(cache.get('3'.repeat(64))).toBeUndefined();
  });
});
