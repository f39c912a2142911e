import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { InjectOptions } from 'fastify';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../src/auth/token-secret.js';
import {
  collect,
  expectError,
  issueToken,
  lastLogId,
  logRows,
  startApi,
  type ApiHarness,
  type JobViewBody,
  type LogRowBody,
} from './helpers.js';

// Every route against every kind of caller. "operator" owns the jobs the job routes are
// asked about; "other" is a second operator who does not.
const CALLERS = ['none', 'bad', 'viewer', 'operator', 'other', 'admin'] as const;
type Caller = (typeof CALLERS)[number];

let api: ApiHarness;
let folder: string;
const tokens: Record<Exclude<Caller, 'none'>, string> = { bad: '', viewer: '', operator: '', other: '', admin: '' };

beforeAll(async () => {
  api = await startApi();
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
  tokens.bad = generateToken();
  tokens.viewer = await issueToken(api, 'viewer-1', 'viewer');
  tokens.operator = await issueToken(api, 'operator-1', 'operator');
  tokens.other = await issueToken(api, 'operator-2', 'operator');
  tokens.admin = api.adminToken;
});

afterAll(async () => {
  await api?.close();
});

function send(caller: Caller, options: InjectOptions) {
  return api.request(caller === 'none' ? null : tokens[caller], options);
}

/** A backup request of `caller`'s, into a destination of its own (destinations are owned). */
function backupOf(caller: Caller) {
  return { source: folder, destination: `by-${caller}` };
}

/** A job submitted by `caller`, for the routes that read or cancel one. */
async function jobOf(caller: Caller = 'operator'): Promise<string> {
  const res = await send(caller, { method: 'POST', url: '/backup', payload: backupOf(caller) });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<{ id: string }>().id;
}

async function throwawayTokenId(): Promise<string> {
  const name = `throwaway-${Math.random().toString(36).slice(2, 10)}`;
  await issueToken(api, name, 'viewer');
  const record = await api.app.tokenStore.byName(name);
  return String(record?.id);
}

type Expected = Record<Caller, number>;
const open: Expected = { none: 200, bad: 200, viewer: 200, operator: 200, other: 200, admin: 200 };
const anyToken: Expected = { none: 401, bad: 401, viewer: 200, operator: 200, other: 200, admin: 200 };
const adminOnly = (ok: number): Expected => ({
  none: 401,
  bad: 401,
  viewer: 403,
  operator: 403,
  other: 403,
  admin: ok,
});

const routes: [string, (caller: Caller) => Promise<InjectOptions>, Expected][] = [
  ['GET /health', async () => ({ method: 'GET', url: '/health' }), open],
  ['GET /ready', async () => ({ method: 'GET', url: '/ready' }), open],
  ['GET /metrics', async () => ({ method: 'GET', url: '/metrics' }), anyToken],
  ['GET /docs/json', async () => ({ method: 'GET', url: '/docs/json' }), open],
  ['GET /docs/', async () => ({ method: 'GET', url: '/docs/' }), open],
  [
    'POST /backup',
    async (caller) => ({ method: 'POST', url: '/backup', payload: backupOf(caller) }),
    { none: 401, bad: 401, viewer: 403, operator: 202, other: 202, admin: 202 },
  ],
  ['GET /jobs', async () => ({ method: 'GET', url: '/jobs' }), anyToken],
  [
    "GET /jobs/:id (operator's job)",
    async () => ({ method: 'GET', url: `/jobs/${await jobOf()}` }),
    { none: 401, bad: 401, viewer: 200, operator: 200, other: 404, admin: 200 },
  ],
  [
    "DELETE /jobs/:id (operator's queued job)",
    async () => ({ method: 'DELETE', url: `/jobs/${await jobOf()}` }),
    { none: 401, bad: 401, viewer: 403, operator: 200, other: 404, admin: 200 },
  ],
  ['GET /logs', async () => ({ method: 'GET', url: '/logs' }), anyToken],
  ['GET /tokens', async () => ({ method: 'GET', url: '/tokens' }), adminOnly(200)],
  [
    'POST /tokens',
    async () => ({
      method: 'POST',
      url: '/tokens',
      payload: { name: `made-${Math.random().toString(36).slice(2, 10)}`, role: 'viewer' },
    }),
    adminOnly(201),
  ],
  [
    'DELETE /tokens/:id',
    async () => ({ method: 'DELETE', url: `/tokens/${await throwawayTokenId()}` }),
    adminOnly(200),
  ],
  [
    'GET /no-such-route',
    async () => ({ method: 'GET', url: '/no-such-route' }),
    { none: 401, bad: 401, viewer: 404, operator: 404, other: 404, admin: 404 },
  ],
];

const matrix = routes.flatMap(([route, build, expected]) =>
  CALLERS.map((caller) => [route, caller, expected[caller], build] as const),
);

describe('the role matrix: every route × {no token, bad token, viewer, operator, other operator, admin}', () => {
  it.each(matrix)('%s as %s answers %i', async (_route, caller, status, build) => {
    const res = await send(caller, await build(caller));

    expect(res.statusCode, res.body).toBe(status);
    if (status === 401) {
      expect(res.json<{ code: string }>().code).toBe('UNAUTHENTICATED');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="coffer"/);
    }
    if (status === 403) expect(res.json<{ code: string }>().code).toBe('FORBIDDEN');
  });
});

describe('authentication', () => {
  it.each([
    ['no Authorization header', undefined],
    ['another scheme', `Basic ${Buffer.from('admin:admin').toString('base64')}`],
    ['"Bearer" without a token', 'Bearer'],
    ['"Bearer" and a space', 'Bearer '],
    ['two tokens', 'Bearer cfr_a cfr_b'],
    ['a token with characters outside b64token', 'Bearer cfr_"; DROP TABLE api_token; --'],
    ['a token of 10 kB', `Bearer cfr_${'a'.repeat(10_000)}`],
    ['a token that is a SQL wildcard', 'Bearer %'],
    ["the token's hash instead of the token", 'HASH'],
  ])('refuses %s with 401 UNAUTHENTICATED', async (_case, header) => {
    let authorization = header;
    if (header === 'HASH') {
      authorization = `Bearer ${(await api.app.tokenStore.byName('admin'))?.tokenHash ?? ''}`;
    }
    const res = await api.request(null, {
      method: 'GET',
      url: '/jobs',
      headers: authorization === undefined ? {} : { authorization },
    });

    expectError(res, 401, 'UNAUTHENTICATED');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it('accepts the scheme in any case, as RFC 7235 says', async () => {
    const res = await api.request(null, {
      method: 'GET',
      url: '/jobs',
      headers: { authorization: `bearer ${tokens.viewer}` },
    });

    expect(res.statusCode, res.body).toBe(200);
  });

  it('refuses a revoked token at once, though it worked a moment before', async () => {
    const token = await issueToken(api, 'short-lived', 'operator');
    expect((await api.request(token, { method: 'GET', url: '/jobs' })).statusCode).toBe(200);
    const id = (await api.app.tokenStore.byName('short-lived'))?.id;

    const revoked = await api.app.inject({ method: 'DELETE', url: `/tokens/${id}` });
    expect(revoked.statusCode, revoked.body).toBe(200);

    const res = await api.request(token, { method: 'GET', url: '/jobs' });
    expectError(res, 401, 'UNAUTHENTICATED');
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  it('records when a token was last used', async () => {
    const token = await issueToken(api, 'used-once', 'viewer');
    expect((await api.app.tokenStore.byName('used-once'))?.lastUsedAt).toBeNull();

    await api.request(token, { method: 'GET', url: '/logs' });

    await expect.poll(async () => (await api.app.tokenStore.byName('used-once'))?.lastUsedAt).toBeInstanceOf(Date);
  });
});

describe('operators see and cancel only their own jobs', () => {
  it('lists only its own jobs to an operator, and every job to a viewer and an admin', async () => {
    const mine = await jobOf('operator');
    const theirs = await jobOf('other');
    const byAdmin = await jobOf('admin');

    const listedTo = async (caller: Caller) => {
      const items = await collect<JobViewBody>((options) => send(caller, options), '/jobs?limit=100');
      return items.map((item) => item.id);
    };

    const operator = await listedTo('operator');
    expect(operator).toContain(mine);
    expect(operator).not.toContain(theirs);
    expect(operator).not.toContain(byAdmin);
    const other = await listedTo('other');
    expect(other).toContain(theirs);
    expect(other).not.toContain(mine);
    for (const caller of ['viewer', 'admin'] as const) {
      expect(await listedTo(caller)).toEqual(expect.arrayContaining([mine, theirs, byAdmin]));
    }
  });

  it("shows the submitting token as the job view's actor", async () => {
    const id = await jobOf('operator');

    const res = await send('viewer', { method: 'GET', url: `/jobs/${id}` });

    expect(res.json<JobViewBody & { actor: string }>().actor).toBe('operator-1');
  });

  it("answers another operator's job as unknown, for reading and for cancelling, and leaves it alone", async () => {
    const id = await jobOf('operator');

    expectError(await send('other', { method: 'GET', url: `/jobs/${id}` }), 404, 'JOB_NOT_FOUND');
    expectError(await send('other', { method: 'DELETE', url: `/jobs/${id}` }), 404, 'JOB_NOT_FOUND');

    expect(await (await api.app.backupQueue.getJob(id))?.getState()).toBe('waiting');
    expect((await logRows(api.db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued']);
  });

  it('shows an operator only the log rows of its own jobs and requests', async () => {
    const mine = await jobOf('operator');
    const theirs = await jobOf('other');

    const rows = await collect<LogRowBody & { actor: string | null }>(
      (options) => send('operator', options),
      '/logs?limit=1000',
    );

    expect(rows.map((row) => row.jobId)).toContain(mine);
    expect(rows.map((row) => row.jobId)).not.toContain(theirs);
    expect(rows.every((row) => row.actor === 'operator-1')).toBe(true);
    const filtered = await send('operator', { method: 'GET', url: `/logs?jobId=${theirs}` });
    expect(filtered.json<{ items: unknown[] }>().items).toEqual([]);
  });

  it('keeps Idempotency-Keys apart per token: the same key from two operators makes two jobs', async () => {
    const headers = { 'idempotency-key': 'nightly' };

    const first = await send('operator', { method: 'POST', url: '/backup', payload: backupOf('operator'), headers });
    const second = await send('other', { method: 'POST', url: '/backup', payload: backupOf('other'), headers });
    const replay = await send('operator', { method: 'POST', url: '/backup', payload: backupOf('operator'), headers });

    expect(first.statusCode).toBe(202);
    expect(second.statusCode).toBe(202);
    expect(second.json<{ id: string }>().id).not.toBe(first.json<{ id: string }>().id);
    expect(replay.json<{ id: string }>().id).toBe(first.json<{ id: string }>().id);
    expect(second.headers['idempotent-replayed']).toBeUndefined();
  });
});

describe('the log names who acted', () => {
  it('records the submitting token on the queued row and in the job payload', async () => {
    const id = await jobOf('operator');

    const [rows] = await api.db.query<RowDataPacket[]>('SELECT status, actor FROM log WHERE job_id = ?', [id]);
    expect(rows).toEqual([{ status: 'queued', actor: 'operator-1' }]);
    expect((await api.app.backupQueue.getJob(id))?.data.actor).toBe('operator-1');
  });

  it("records the job's submitter on a cancellation by an admin, and the admin in the message", async () => {
    const id = await jobOf('operator');
    expect((await send('admin', { method: 'DELETE', url: `/jobs/${id}` })).statusCode).toBe(200);

    const [rows] = await api.db.query<RowDataPacket[]>(
      'SELECT status, actor, message FROM log WHERE job_id = ? ORDER BY id',
      [id],
    );
    expect(rows).toEqual([
      { status: 'queued', actor: 'operator-1', message: null },
      { status: 'cancelled', actor: 'operator-1', message: expect.stringContaining('"admin"') as string },
    ]);
  });

  it.each([
    ['an operator whose source is outside the roots', 'operator', { source: '/etc' }, 400, 'operator-1'],
    ['a viewer, who may not submit', 'viewer', { source: '/srv/x' }, 403, 'viewer-1'],
  ] as const)('records who tried on the rejected row of %s', async (_case, caller, payload, status, actor) => {
    const before = await lastLogId(api.db);

    const res = await send(caller, { method: 'POST', url: '/backup', payload });

    expect(res.statusCode).toBe(status);
    const [rows] = await api.db.query<RowDataPacket[]>('SELECT status, actor, job_id FROM log WHERE id > ?', [before]);
    expect(rows).toEqual([{ status: 'rejected', actor, job_id: null }]);
  });

  it('writes no row for a request without a valid token: nobody is known to have tried', async () => {
    const before = await lastLogId(api.db);

    for (const caller of ['none', 'bad'] as const) {
      expect((await send(caller, { method: 'POST', url: '/backup', payload: { source: folder } })).statusCode).toBe(
        401,
      );
    }

    expect(await logRows(api.db, 'id > ?', [before])).toEqual([]);
  });
});
