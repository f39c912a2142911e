import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTED_PATHS } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import { ensureAdminToken } from '../src/auth/token-admin.js';
import { generateToken } from '../src/auth/token-secret.js';
import { runTokenCommand } from '../src/cli/token-command.js';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';

// A whole session with the admin token, logged at the most verbose level, then a search for
// the token everywhere it could have leaked: the log output, every table, every Redis key.
const adminToken = generateToken();
let env: TestEnvironment;
let app: FastifyInstance;
let db: Connection;
const logLines: string[] = [];

beforeAll(async () => {
  env = await createTestEnvironment({ API_ADMIN_TOKEN: adminToken, LOG_LEVEL: 'trace' });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  // As createLogger builds it for server.ts, with a buffer in place of stdout.
  const logger = pino(
    { name: 'coffer-api', level: 'trace', redact: { paths: REDACTED_PATHS, censor: '[redacted]' } },
    sink,
  );
  app = await buildApp({ config: env.config, logger });
  await app.ready();
  await ensureAdminToken(app.tokenStore, env.config, app.revocations);
  db = await createConnection({ ...env.config.mysql });
  await mkdir(join(env.sources, 'data'));

  const auth = { authorization: `Bearer ${adminToken}` };
  const session = [
    { method: 'POST', url: '/backup', payload: { source: join(env.sources, 'data') }, headers: auth },
    { method: 'POST', url: '/backup', payload: { source: '/etc' }, headers: auth },
    { method: 'POST', url: '/backup', payload: 'not json', headers: { ...auth, 'content-type': 'application/json' } },
    { method: 'GET', url: '/jobs', headers: auth },
    { method: 'GET', url: '/logs?limit=5', headers: auth },
    { method: 'GET', url: '/metrics', headers: auth },
    { method: 'GET', url: '/tokens', headers: auth },
    { method: 'POST', url: '/tokens', payload: { name: 'ci', role: 'operator' }, headers: auth },
    { method: 'GET', url: '/no-such-route', headers: auth },
    { method: 'GET', url: '/jobs', headers: { authorization: `Basic ${adminToken}` } },
    { method: 'GET', url: '/jobs', headers: { authorization: `Bearer ${adminToken}x` } },
  ] as const;
  for (const request of session) await app.inject(request);
  const [job] = (await app.inject({ method: 'GET', url: '/jobs', headers: auth })).json<{ items: { id: string }[] }>()
    .items;
  await app.inject({ method: 'DELETE', url: `/jobs/${job?.id ?? ''}`, headers: auth });
  await runTokenCommand(['list'], {
    tokens: app.tokenStore,
    revocations: app.revocations,
    config: env.config,
    out: () => undefined,
    err: () => undefined,
  });
});

afterAll(async () => {
  await app?.close();
  await db?.end();
  await env?.cleanup();
});

/** The token, and its random part alone (in case something stripped the prefix). */
function leaks(text: string): boolean {
  return text.includes(adminToken) || text.includes(adminToken.slice('cfr_'.length));
}

describe('the admin token', () => {
  it('never appears in the logs, even at trace level', () => {
    expect(logLines.length).toBeGreaterThan(20);
    expect(logLines.join('')).toContain('incoming request');
    expect(logLines.filter(leaks)).toEqual([]);
  });

  it('never appears in the database: every column of every table', async () => {
    const [tables] = await db.query<RowDataPacket[]>(
      'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ?',
      [env.config.mysql.database],
    );
    expect(tables.map((table) => table.name as string)).toEqual(expect.arrayContaining(['log', 'api_token']));
    for (const { name } of tables) {
      const [rows] = await db.query<RowDataPacket[]>(`SELECT * FROM \`${String(name)}\``);
      expect(leaks(JSON.stringify(rows)), `table ${String(name)}`).toBe(false);
    }
    const [log] = await db.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM log');
    expect(Number(log[0]?.n)).toBeGreaterThanOrEqual(4);
  });

  it('never appears in Redis: every key of the deployment, and its value', async () => {
    const redis = new Redis(env.redisUrl);
    try {
      const keys = await redis.keys(`${env.config.queuePrefix}:*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        const type = await redis.type(key);
        const value =
          type === 'string'
            ? await redis.get(key)
            : type === 'hash'
              ? await redis.hgetall(key)
              : type === 'list'
                ? await redis.lrange(key, 0, -1)
                : type === 'zset'
                  ? await redis.zrange(key, 0, -1)
                  : type === 'set'
                    ? await redis.smembers(key)
                    : type === 'stream'
                      ? await redis.xrange(key, '-', '+')
                      : null;
        expect(leaks(key + JSON.stringify(value)), key).toBe(false);
      }
    } finally {
      redis.disconnect();
    }
  });
});
