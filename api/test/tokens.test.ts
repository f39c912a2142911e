import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMysqlPool } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import { runTokenCommand } from '../src/cli/token-command.js';
import { createRevocationList, type RevocationList } from '../src/auth/revocation-list.js';
import { AdminTokenProblem, ensureAdminToken } from '../src/auth/token-admin.js';
import { createTokenRepository, type TokenRepository } from '../src/auth/token-repository.js';
import { generateToken } from '../src/auth/token-secret.js';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';
import { ISO_DATE, configWith, expectError, issueToken, matching, startApi, type ApiHarness } from './helpers.js';

const TOKEN = /^cfr_[A-Za-z0-9_-]{43}$/;
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

let api: ApiHarness;

beforeAll(async () => {
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
});

interface TokenBody {
  id: number;
  name: string;
  role: string;
  sourceRoots: string[] | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  token?: string;
}

async function create(payload: object) {
  return api.app.inject({ method: 'POST', url: '/tokens', payload });
}

describe('POST /tokens', () => {
  it('creates a token and shows its secret once: 201, no-store, a high-entropy cfr_ value', async () => {
    const res = await create({ name: 'ci', role: 'operator' });

    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json<TokenBody>();
    expect(body).toEqual({
      id: expect.any(Number) as number,
      name: 'ci',
      role: 'operator',
      sourceRoots: null,
      createdAt: matching(ISO_DATE),
      lastUsedAt: null,
      revokedAt: null,
      token: matching(TOKEN),
    });
    expect((await api.request(body.token ?? '', { method: 'GET', url: '/jobs' })).statusCode).toBe(200);
  });

  it('stores only the SHA-256 of the secret, never the secret', async () => {
    const { token = '', id } = (await create({ name: 'hashed', role: 'viewer' })).json<TokenBody>();

    const [rows] = await api.db.query<RowDataPacket[]>('SELECT * FROM api_token WHERE id = ?', [id]);
    expect(rows[0]?.token_hash).toBe(sha256(token));
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(JSON.stringify(rows)).not.toContain(token.slice(4));
  });

  it('gives every token a different secret', async () => {
    const secrets = new Set<string>();
    for (let i = 0; i < 20; i += 1)
      secrets.add((await create({ name: `many-${i}`, role: 'viewer' })).json<TokenBody>().token ?? '');
    expect(secrets.size).toBe(20);
  });

  it('limits a token to folders inside SOURCE_ROOTS, normalised', async () => {
    const res = await create({
      name: 'team-a',
      role: 'operator',
      sourceRoots: [`${api.env.sources}/team-a/`, `${api.env.sources}//team-b`],
    });

    expect(res.statusCode, res.body).toBe(201);
    expect(res.json<TokenBody>().sourceRoots).toEqual([
      join(api.env.sources, 'team-a'),
      join(api.env.sources, 'team-b'),
    ]);
  });

  it.each([
    ['a taken name', { name: 'ci', role: 'viewer' }, 409, 'TOKEN_NAME_TAKEN'],
    ['the reserved name "admin"', { name: 'admin', role: 'admin' }, 400, 'INVALID_TOKEN_REQUEST'],
    ['a name with a space', { name: 'my token', role: 'viewer' }, 400, 'INVALID_TOKEN_REQUEST'],
    ['a name starting with a dot', { name: '.hidden', role: 'viewer' }, 400, 'INVALID_TOKEN_REQUEST'],
    ['a name of 65 characters', { name: 'n'.repeat(65), role: 'viewer' }, 400, 'VALIDATION_FAILED'],
    ['an unknown role', { name: 'root-ish', role: 'root' }, 400, 'VALIDATION_FAILED'],
    ['a missing role', { name: 'no-role' }, 400, 'VALIDATION_FAILED'],
    ['an extra property', { name: 'extra', role: 'viewer', expires: '2099' }, 400, 'VALIDATION_FAILED'],
    ['an empty sourceRoots', { name: 'r0', role: 'operator', sourceRoots: [] }, 400, 'VALIDATION_FAILED'],
    [
      'a root outside SOURCE_ROOTS',
      { name: 'r1', role: 'operator', sourceRoots: ['/etc'] },
      400,
      'INVALID_TOKEN_REQUEST',
    ],
    ['a relative root', { name: 'r2', role: 'operator', sourceRoots: ['team-a'] }, 400, 'INVALID_TOKEN_REQUEST'],
    [
      'a root escaping with ".."',
      { name: 'r3', role: 'operator', sourceRoots: ['SOURCES/../..'] },
      400,
      'INVALID_TOKEN_REQUEST',
    ],
    [
      'a root with a NUL byte',
      { name: 'r4', role: 'operator', sourceRoots: ['SOURCES/a\u0000'] },
      400,
      'INVALID_TOKEN_REQUEST',
    ],
    ['a non-string root', { name: 'r5', role: 'operator', sourceRoots: [5] }, 400, 'VALIDATION_FAILED'],
  ])('refuses %s', async (_case, payload, status, code) => {
    const body = JSON.parse(JSON.stringify(payload).replaceAll('SOURCES', api.env.sources)) as object;
    const before = (await api.app.tokenStore.list()).length;

    expectError(await create(body), status, code);

    expect((await api.app.tokenStore.list()).length).toBe(before);
  });
});

describe('GET /tokens', () => {
  it('lists every token, the configured admin one included, without secrets or hashes', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/tokens' });

    expect(res.statusCode, res.body).toBe(200);
    const items = res.json<{ items: TokenBody[] }>().items;
    expect(items.map((item) => item.name)).toEqual(expect.arrayContaining(['admin', 'ci']));
    expect(items.find((item) => item.name === 'admin')).toMatchObject({ role: 'admin', sourceRoots: null });
    for (const item of items)
      expect(Object.keys(item).sort()).toEqual([
        'createdAt',
        'id',
        'lastUsedAt',
        'name',
        'revokedAt',
        'role',
        'sourceRoots',
      ]);
    expect(res.body).not.toContain(api.adminToken);
    expect(res.body).not.toContain(sha256(api.adminToken));
  });
});

describe('DELETE /tokens/:id', () => {
  it('revokes a token: 200 with revokedAt, the token stops working, the name stays taken', async () => {
    const token = await issueToken(api, 'to-revoke', 'operator');
    const id = (await api.app.tokenStore.byName('to-revoke'))?.id;

    const res = await api.app.inject({ method: 'DELETE', url: `/tokens/${id}` });

    expect(res.statusCode, res.body).toBe(200);
    const revokedAt = res.json<TokenBody>().revokedAt;
    expect(revokedAt).toMatch(ISO_DATE);
    expectError(await api.request(token, { method: 'GET', url: '/jobs' }), 401, 'UNAUTHENTICATED');
    expectError(await create({ name: 'to-revoke', role: 'operator' }), 409, 'TOKEN_NAME_TAKEN');
    const again = await api.app.inject({ method: 'DELETE', url: `/tokens/${id}` });
    expect(again.statusCode).toBe(200);
    expect(again.json<TokenBody>().revokedAt).toBe(revokedAt);
  });

  it.each([
    ['an unknown id', '999999', 404, 'TOKEN_NOT_FOUND'],
    ['a name instead of an id', 'ci', 400, 'VALIDATION_FAILED'],
    ['an encoded ".."', '1%2e%2e', 400, 'VALIDATION_FAILED'],
    ['a negative id', '-1', 400, 'VALIDATION_FAILED'],
  ])('answers %s (%s) with %i', async (_case, id, status, code) => {
    expectError(await api.app.inject({ method: 'DELETE', url: `/tokens/${id}` }), status, code);
  });
});

describe('the admin token at start-up (ensureAdminToken)', () => {
  let env: TestEnvironment;
  let pool: Pool;
  let tokens: TokenRepository;
  let redis: Redis;
  let revocations: RevocationList;

  beforeAll(async () => {
    env = await createTestEnvironment();
    pool = createMysqlPool(env.config.mysql, { connectionLimit: 2 });
    tokens = createTokenRepository(pool);
    redis = new Redis(env.redisUrl);
    revocations = createRevocationList(redis, env.config.queuePrefix);
  });

  afterAll(async () => {
    redis?.disconnect();
    await pool?.end();
    await env?.cleanup();
  });

  it('refuses to start without API_ADMIN_TOKEN while no admin token exists, saying how to make one', async () => {
    const start = ensureAdminToken(tokens, { apiAdminToken: undefined }, revocations);

    await expect(start).rejects.toBeInstanceOf(AdminTokenProblem);
    await expect(start).rejects.toThrow(/API_ADMIN_TOKEN.*token create/);
  });

  it('records API_ADMIN_TOKEN as the admin token named "admin", once', async () => {
    const secret = generateToken();

    expect(await ensureAdminToken(tokens, { apiAdminToken: secret }, revocations)).toEqual({
      name: 'admin',
      outcome: 'created',
    });
    expect(await ensureAdminToken(tokens, { apiAdminToken: secret }, revocations)).toEqual({
      name: 'admin',
      outcome: 'present',
    });
    expect(await tokens.byName('admin')).toMatchObject({ role: 'admin', tokenHash: sha256(secret), revokedAt: null });
  });

  it('rotates the "admin" token when API_ADMIN_TOKEN changes: the old value stops working, even without MySQL', async () => {
    const previous = (await tokens.byName('admin'))?.tokenHash ?? '';
    const secret = generateToken();

    expect(await ensureAdminToken(tokens, { apiAdminToken: secret }, revocations)).toEqual({
      name: 'admin',
      outcome: 'rotated',
    });

    expect((await tokens.byName('admin'))?.tokenHash).toBe(sha256(secret));
    expect((await tokens.list()).filter((token) => token.role === 'admin')).toHaveLength(1);
    // A replica still configured with the old value cannot use it during a MySQL outage.
    await revocations.fill([]);
    expect(await revocations.status(previous)).toBe('revoked');
    expect(await revocations.status(sha256(secret))).toBe('not-revoked');
  });

  it('does not rotate while Redis cannot record the old value as revoked: the start fails, nothing changes', async () => {
    const before = await tokens.byName('admin');
    const unreachable = new Redis('redis://127.0.0.1:1', { lazyConnect: true, retryStrategy: () => null });
    unreachable.on('error', () => undefined);
    try {
      const start = ensureAdminToken(
        tokens,
        { apiAdminToken: generateToken() },
        createRevocationList(unreachable, env.config.queuePrefix),
      );

      await expect(start).rejects.toThrow(/Redis does not answer/);
      expect(await tokens.byName('admin')).toEqual(before);
    } finally {
      unreachable.disconnect();
    }
  });

  it('starts without API_ADMIN_TOKEN once an admin token exists', async () => {
    expect(await ensureAdminToken(tokens, { apiAdminToken: undefined }, revocations)).toMatchObject({
      outcome: 'not-configured',
    });
  });

  it('refuses to start with an API_ADMIN_TOKEN that was revoked, so a leaked one cannot come back by a restart', async () => {
    const secret = generateToken();
    await ensureAdminToken(tokens, { apiAdminToken: secret }, revocations);
    await tokens.revoke((await tokens.byName('admin'))?.id ?? 0);

    await expect(ensureAdminToken(tokens, { apiAdminToken: secret }, revocations)).rejects.toThrow(/revoked/);
  });

  it("refuses to start with an API_ADMIN_TOKEN that is another token's secret", async () => {
    const secret = generateToken();
    await tokens.insert({ name: 'ops', tokenHash: sha256(secret), role: 'operator', sourceRoots: null });

    await expect(ensureAdminToken(tokens, { apiAdminToken: secret }, revocations)).rejects.toThrow(
      /operator token "ops"/,
    );
  });
});

describe('while MySQL is unreachable', () => {
  let down: FastifyInstance;

  beforeAll(async () => {
    down = await buildApp({ config: configWith(api.env, { MYSQL_PORT: '1' }) });
    await down.ready();
  });

  afterAll(async () => {
    await down?.close();
  });

  it('still knows the configured admin token (it needs no lookup), so requests that do not need MySQL work', async () => {
    const res = await down.inject({
      method: 'POST',
      url: '/backup',
      payload: { source: 'relative' },
      headers: { authorization: `Bearer ${api.adminToken}` },
    });

    expectError(res, 400, 'INVALID_SOURCE');
  });

  it('answers other tokens 503 LOG_UNAVAILABLE: it cannot tell whether they are valid', async () => {
    const token = await issueToken(api, 'while-down', 'admin');

    const res = await down.inject({ method: 'GET', url: '/jobs', headers: { authorization: `Bearer ${token}` } });

    expectError(res, 503, 'LOG_UNAVAILABLE');
  });

  it('still refuses a request without a token with 401', async () => {
    expectError(await down.inject({ method: 'GET', url: '/jobs' }), 401, 'UNAUTHENTICATED');
  });
});

describe('the token command line', () => {
  async function run(...argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runTokenCommand(argv, {
      tokens: api.app.tokenStore,
      revocations: api.app.revocations,
      config: api.env.config,
      out: (line) => out.push(line),
      err: (line) => err.push(line),
    });
    return { code, out, err };
  }

  it('creates a token, printing only its secret on stdout', async () => {
    const { code, out, err } = await run('create', '--name', 'cli-made', '--role', 'operator');

    expect(code).toBe(0);
    expect(out).toEqual([matching(TOKEN)]);
    expect(err.join('\n')).toContain('shown only now');
    expect((await api.request(out[0] ?? '', { method: 'GET', url: '/jobs' })).statusCode).toBe(200);
  });

  it('creates a token limited to some roots', async () => {
    const root = join(api.env.sources, 'cli-root');
    const { code } = await run('create', '--name', 'cli-rooted', '--role', 'operator', '--source-root', root);

    expect(code).toBe(0);
    expect((await api.app.tokenStore.byName('cli-rooted'))?.sourceRoots).toEqual([root]);
  });

  it('lists tokens without secrets, as a table or as JSON', async () => {
    const table = await run('list');
    const json = await run('list', '--json');

    expect(table.code).toBe(0);
    expect(table.out[0]).toMatch(/^id\s+name\s+role\s+sourceRoots\s+created\s+lastUsed\s+revoked$/);
    expect(table.out.join('\n')).toMatch(/cli-made\s+operator/);
    const views = JSON.parse(json.out.join('\n')) as TokenBody[];
    expect(views.map((view) => view.name)).toContain('cli-made');
    expect(json.out.join('\n')).not.toMatch(/cfr_|token_?hash/i);
  });

  it('revokes by name or by id', async () => {
    const byName = await run('revoke', 'cli-made');
    const id = String((await api.app.tokenStore.byName('cli-rooted'))?.id);
    const byId = await run('revoke', id);

    expect([byName.code, byId.code]).toEqual([0, 0]);
    expect((await api.app.tokenStore.byName('cli-made'))?.revokedAt).toBeInstanceOf(Date);
    expect((await api.app.tokenStore.byName('cli-rooted'))?.revokedAt).toBeInstanceOf(Date);
  });

  it.each([
    [['create', '--name', 'x'], 2],
    [['create', '--name', 'x', '--role', 'root'], 1],
    [['create', '--name', 'admin', '--role', 'admin'], 1],
    [['create', '--nme', 'x', '--role', 'viewer'], 2],
    [['revoke'], 2],
    [['revoke', 'nobody'], 1],
    [['rotate'], 2],
    [[], 2],
  ])('%j exits with %i and says why on stderr', async (argv, code) => {
    const result = await run(...argv);

    expect(result.code).toBe(code);
    expect(result.out).toEqual([]);
    expect(result.err.join('\n').length).toBeGreaterThan(0);
  });
});
