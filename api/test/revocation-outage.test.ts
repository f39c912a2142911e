import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { createRevocationList } from '../src/auth/revocation-list.js';
import { hashToken } from '../src/auth/token-secret.js';
import { runTokenCommand } from '../src/cli/token-command.js';
import {
  configWith,
  createOutage,
  expectError,
  issueToken,
  queueBackup,
  startApi,
  type ApiHarness,
  type Outage,
} from './helpers.js';

// Replica B is configured with its own API_ADMIN_TOKEN and reaches MySQL through a relay the test
// cuts; replica A (the harness's app) and the command line share B's database and Redis.
let api: ApiHarness;
let redis: Redis;
let jobId: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  api = await startApi();
  redis = new Redis(api.env.redisUrl);
  await mkdir(join(api.env.sources, 'data'));
  jobId = await queueBackup(api.app, { source: join(api.env.sources, 'data') });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  redis?.disconnect();
  await api?.close();
});

interface Replica {
  app: FastifyInstance;
  /** Cuts the replica off MySQL; Redis stays. */
  loseMysql(): Promise<void>;
}

/** Replica B, started while MySQL answers (as every API starts: migrations need it). */
async function replicaB(adminToken: string, overrides: Record<string, string> = {}): Promise<Replica> {
  const { host, port } = api.env.config.mysql;
  const outage: Outage = await createOutage(`mysql://${host}:${port}`);
  await outage.restore();
  const app = await buildApp({
    config: configWith(api.env, { MYSQL_PORT: String(outage.port), API_ADMIN_TOKEN: adminToken, ...overrides }),
  });
  cleanups.push(async () => {
    await app.close();
    await outage.cut();
  });
  await app.ready();
  return { app, loseMysql: () => outage.cut() };
}

/** A job view Redis can answer: what the configured admin token is kept for during an outage. */
function readJob(app: FastifyInstance, token: string) {
  return app.inject({ method: 'GET', url: `/jobs/${jobId}`, headers: { authorization: `Bearer ${token}` } });
}

async function tokenId(name: string): Promise<number> {
  return (await api.app.tokenStore.byName(name))?.id ?? 0;
}

/** The token command line as `pnpm --dir api token` runs it, with its own Redis connection. */
async function runCli(redisUrl: string, ...argv: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const cli = new Redis(redisUrl, { lazyConnect: true, retryStrategy: () => null });
  cli.on('error', () => undefined);
  try {
    const code = await runTokenCommand(argv, {
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

describe('the configured admin token while MySQL is unreachable', () => {
  it('keeps working while it is not revoked: job views Redis holds still answer', async () => {
    const secret = await issueToken(api, 'b-admin-kept', 'admin');
    const b = await replicaB(secret);
    await b.loseMysql();

    const res = await readJob(b.app, secret);

    expect(res.statusCode, res.body).toBe(200);
  });

  it('stops working once the command line revoked it, though this replica never saw MySQL say so', async () => {
    const secret = await issueToken(api, 'b-admin-cli', 'admin');
    const b = await replicaB(secret);
    expect((await readJob(b.app, secret)).statusCode).toBe(200);

    expect((await runCli(api.env.redisUrl, 'revoke', 'b-admin-cli')).code).toBe(0);
    await b.loseMysql();

    expectError(await readJob(b.app, secret), 401, 'UNAUTHENTICATED');
  });

  it('stops working once another replica revoked it (DELETE /tokens/:id on replica A)', async () => {
    const secret = await issueToken(api, 'b-admin-route', 'admin');
    const b = await replicaB(secret);
    expect((await readJob(b.app, secret)).statusCode).toBe(200);

    const revoked = await api.app.inject({ method: 'DELETE', url: `/tokens/${await tokenId('b-admin-route')}` });
    expect(revoked.statusCode, revoked.body).toBe(200);
    await b.loseMysql();

    expectError(await readJob(b.app, secret), 401, 'UNAUTHENTICATED');
  });

  it('fails closed with 503 when Redis cannot tell: the revocation list was lost (a flushed Redis)', async () => {
    const secret = await issueToken(api, 'b-admin-flushed', 'admin');
    const b = await replicaB(secret);
    await redis.del(`${api.env.config.queuePrefix}:auth:revoked-tokens`);
    await b.loseMysql();

    expectError(await readJob(b.app, secret), 503, 'LOG_UNAVAILABLE');
  });

  it('is refused after a rotation: the replaced value joins the list', async () => {
    const secret = await issueToken(api, 'b-admin-old', 'admin');
    const b = await replicaB(secret);
    // As if the "admin" slot had held this value: the rotation records what it replaces.
    await api.app.revocations.add(hashToken(secret));
    await b.loseMysql();

    expectError(await readJob(b.app, secret), 401, 'UNAUTHENTICATED');
  });
});

describe('revoking while Redis does not answer', () => {
  it('answers 503 from a replica without Redis, refuses the token wherever MySQL answers, and completes when repeated', async () => {
    const victim = await issueToken(api, 'revoked-without-redis', 'operator');
    const redisOutage = await createOutage(api.env.redisUrl);
    await redisOutage.restore();
    const a = await buildApp({ config: configWith(api.env, { REDIS_URL: redisOutage.url }) });
    cleanups.push(async () => {
      await redisOutage.restore();
      await a.close();
      await redisOutage.cut();
    });
    await a.ready();
    await redisOutage.cut();
    const id = await tokenId('revoked-without-redis');
    const auth = { authorization: `Bearer ${api.adminToken}` };
    const hash = hashToken(victim);

    expectError(await a.inject({ method: 'DELETE', url: `/tokens/${id}`, headers: auth }), 503, 'QUEUE_UNAVAILABLE');

    expect((await api.request(victim, { method: 'GET', url: '/jobs' })).statusCode).toBe(401);
    expect(await redis.sismember(`${api.env.config.queuePrefix}:auth:revoked-tokens`, hash)).toBe(0);
    const again = await api.app.inject({ method: 'DELETE', url: `/tokens/${id}` });
    expect(again.statusCode, again.body).toBe(200);
    expect(await api.app.revocations.status(hash)).toBe('revoked');
  });

  it('makes the command line say the revocation is not complete and exit 1', async () => {
    await issueToken(api, 'cli-without-redis', 'operator');

    const { code, err } = await runCli('redis://127.0.0.1:1', 'revoke', 'cli-without-redis');

    expect(code).toBe(1);
    expect(err).toMatch(/revoked in MySQL, but Redis did not record it.*run the command again/);
    expect((await api.app.tokenStore.byName('cli-without-redis'))?.revokedAt).toBeInstanceOf(Date);
  });

  it('is repaired by the next copy from MySQL: a starting replica fills the list with every revocation', async () => {
    const key = `${api.env.config.queuePrefix}:auth:revoked-tokens`;
    await redis.del(key);
    const secret = await issueToken(api, 'revoked-before-flush', 'viewer');
    await api.app.tokenStore.revoke(await tokenId('revoked-before-flush'));

    await replicaB(api.adminToken);

    expect(await api.app.revocations.status(hashToken(secret))).toBe('revoked');
    expect(await api.app.revocations.status(hashToken(api.adminToken))).toBe('not-revoked');
  });
});
