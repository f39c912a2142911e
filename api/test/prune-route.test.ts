import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PruneJobData } from '@coffer/shared';
import type { Principal } from '../src/auth/roles.js';
import {
  collect,
  expectError,
  issueToken,
  lastLogId,
  matching,
  startApi,
  type ApiHarness,
  type Requester,
} from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let api: ApiHarness;
let asAdmin: Requester;
let asOps: Requester;
let asViewer: Requester;

const operator = (name: string): Principal => ({ id: null, name, role: 'operator', sourceRoots: null });

beforeAll(async () => {
  api = await startApi();
  const [ops, viewer] = await Promise.all([issueToken(api, 'ops', 'operator'), issueToken(api, 'watcher', 'viewer')]);
  asAdmin = (options) => api.request(api.adminToken, options);
  asOps = (options) => api.request(ops, options);
  asViewer = (options) => api.request(viewer, options);

  // Owners as backups make them; policies as an admin sets them.
  await api.app.destinations.authorise(operator('ops'), 'ops-data');
  await api.app.destinations.authorise(operator('ops'), 'trees/main');
  await api.app.destinations.authorise(operator('ops'), 'ops-unruled');
  await api.app.destinations.authorise(operator('bob'), 'bob-data');
  await api.app.destinations.authorise(operator('bob'), 'bob-unruled');
  for (const name of ['ops-data', 'trees/main', 'bob-data', 'nobodys']) {
    await api.app.retention.set(name, { keepDaily: 7 }, 'admin');
  }
});

afterAll(async () => {
  await api?.close();
});

function prune(send: Requester, payload: unknown, headers: Record<string, string> = {}) {
  return send({
    method: 'POST',
    url: '/prune',
    payload: JSON.stringify(payload),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

interface LoggedRow {
  action: string;
  status: string;
  jobId: string | null;
  parameter: string;
  destination: string | null;
  code: string | null;
  message: string | null;
  actor: string | null;
}

/** Log rows written after row `afterId`, oldest first. */
async function rowsAfter(afterId: number): Promise<LoggedRow[]> {
  const [rows] = await api.db.query<RowDataPacket[]>(
    'SELECT action, status, job_id AS jobId, parameter, destination, code, message, actor FROM log WHERE id > ? ORDER BY id',
    [afterId],
  );
  return rows as LoggedRow[];
}

async function ownerOf(name: string): Promise<string | null> {
  const [rows] = await api.db.query<RowDataPacket[]>('SELECT owner FROM destination WHERE name = ?', [name]);
  const row = rows[0];
  return row ? String(row.owner) : null;
}

async function queued(id: string): Promise<{ name: string; data: PruneJobData } | undefined> {
  const job = await api.app.backupQueue.getJob(id);
  return job ? { name: job.name, data: job.data } : undefined;
}

/** Checks a 202 (id, Location) and the queued job; returns the job's id. */
async function accepted(res: Awaited<ReturnType<Requester>>, data: PruneJobData): Promise<string> {
  expect(res.statusCode, res.body).toBe(202);
  const body = res.json<{ id: string; status: string }>();
  expect(body).toEqual({ id: matching(UUID), status: 'queued' });
  expect(res.headers.location).toBe(`/jobs/${body.id}`);
  expect(await queued(body.id)).toEqual({ name: 'prune', data });
  return body.id;
}

/** Sends a request that must be refused; checks it queued nothing and left one `rejected` prune row. */
async function expectRefused(
  send: () => Promise<Awaited<ReturnType<Requester>>>,
  expected: { status: number; code: string; parameter: string; actor: string },
) {
  const countsBefore = await api.app.backupQueue.getJobCounts();
  const lastId = await lastLogId(api.db);

  const res = await send();

  const error = expectError(res, expected.status, expected.code);
  expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
  expect(await rowsAfter(lastId)).toEqual([
    {
      action: 'prune',
      status: 'rejected',
      jobId: null,
      parameter: expected.parameter,
      destination: null,
      code: expected.code,
      message: error.message,
      actor: expected.actor,
    },
  ]);
  return error;
}

describe('POST /prune queues a prune job', () => {
  it('answers 202 with a Location; the job view is a queued prune of the destination', async () => {
    const res = await prune(asAdmin, { destination: 'ops-data' });

    const id = await accepted(res, { destination: 'ops-data', dryRun: false, actor: 'admin' });
    const view = await asAdmin({ method: 'GET', url: `/jobs/${id}` });
    expect(view.statusCode, view.body).toBe(200);
    expect(view.json()).toMatchObject({ id, kind: 'prune', status: 'queued', destination: 'ops-data', actor: 'admin' });
  });

  it('writes one queued row: action prune, parameter the destination', async () => {
    const lastId = await lastLogId(api.db);

    const id = await accepted(await prune(asAdmin, { destination: 'trees/main', dryRun: false }), {
      destination: 'trees/main',
      dryRun: false,
      actor: 'admin',
    });

    expect(await rowsAfter(lastId)).toEqual([
      {
        action: 'prune',
        status: 'queued',
        jobId: id,
        parameter: 'trees/main',
        destination: 'trees/main',
        code: null,
        message: null,
        actor: 'admin',
      },
    ]);
  });

  it('carries dryRun: true to the job', async () => {
    await accepted(await prune(asAdmin, { destination: 'ops-data', dryRun: true }), {
      destination: 'ops-data',
      dryRun: true,
      actor: 'admin',
    });
  });

  it('is listed by GET /jobs?kind=prune', async () => {
    const res = await prune(asAdmin, { destination: 'bob-data' });
    const id = await accepted(res, { destination: 'bob-data', dryRun: false, actor: 'admin' });

    const listed = await collect<{ id: string; kind: string }>(api.app, '/jobs?kind=prune&limit=100');

    expect(listed.map((job) => job.id)).toContain(id);
    expect(new Set(listed.map((job) => job.kind))).toEqual(new Set(['prune']));
  });

  it('lets an admin prune a destination nobody owns, without becoming its owner', async () => {
    await accepted(await prune(asAdmin, { destination: 'nobodys' }), {
      destination: 'nobodys',
      dryRun: false,
      actor: 'admin',
    });

    expect(await ownerOf('nobodys')).toBeNull();
  });

  it("lets an admin prune an operator's destination, which stays the operator's", async () => {
    await accepted(await prune(asAdmin, { destination: 'bob-data' }), {
      destination: 'bob-data',
      dryRun: false,
      actor: 'admin',
    });

    expect(await ownerOf('bob-data')).toBe('bob');
  });
});

describe('POST /prune by an operator', () => {
  it('of a destination it owns: 202, the job its own', async () => {
    const id = await accepted(await prune(asOps, { destination: 'ops-data' }), {
      destination: 'ops-data',
      dryRun: false,
      actor: 'ops',
    });

    const view = await asOps({ method: 'GET', url: `/jobs/${id}` });
    expect(view.statusCode, view.body).toBe(200);
    expect(view.json()).toMatchObject({ kind: 'prune', actor: 'ops' });
  });

  it("of another token's destination: 403 DESTINATION_NOT_OWNED, nothing queued, a rejected row", async () => {
    const error = await expectRefused(() => prune(asOps, { destination: 'bob-data' }), {
      status: 403,
      code: 'DESTINATION_NOT_OWNED',
      parameter: 'bob-data',
      actor: 'ops',
    });

    expect(error.message).toBe(
      'destination "bob-data" is not one of yours; an operator prunes only the destinations it owns',
    );
    expect(await ownerOf('bob-data')).toBe('bob');
  });

  it('of a destination nobody owns: 403 DESTINATION_NOT_OWNED, and it does not become the operator’s', async () => {
    const error = await expectRefused(() => prune(asOps, { destination: 'nobodys' }), {
      status: 403,
      code: 'DESTINATION_NOT_OWNED',
      parameter: 'nobodys',
      actor: 'ops',
    });

    expect(error.message).toContain('"nobodys"');
    expect(await ownerOf('nobodys')).toBeNull();
  });

  it("of another token's destination without a policy: 403, not 409 (an operator learns nothing of it)", async () => {
    await expectRefused(() => prune(asOps, { destination: 'bob-unruled' }), {
      status: 403,
      code: 'DESTINATION_NOT_OWNED',
      parameter: 'bob-unruled',
      actor: 'ops',
    });
  });
});

describe('POST /prune of a destination without a retention policy', () => {
  it.each([
    ['an admin', 'admin', () => asAdmin],
    ['its owner', 'ops', () => asOps],
  ])(
    'by %s: 409 RETENTION_NOT_SET saying how to set one; nothing queued, a rejected row',
    async (_case, actor, sender) => {
      const error = await expectRefused(() => prune(sender(), { destination: 'ops-unruled' }), {
        status: 409,
        code: 'RETENTION_NOT_SET',
        parameter: 'ops-unruled',
        actor,
      });

      expect(error.message).toBe(
        'destination "ops-unruled" has no retention policy to prune by; set one with PUT /destinations/ops-unruled/retention',
      );
    },
  );

  it('by an admin, of a destination nobody has heard of: 409 too', async () => {
    await expectRefused(() => prune(asAdmin, { destination: 'never-seen' }), {
      status: 409,
      code: 'RETENTION_NOT_SET',
      parameter: 'never-seen',
      actor: 'admin',
    });
    expect(await ownerOf('never-seen')).toBeNull();
  });
});

describe('POST /prune refuses a bad request: 400, nothing queued, one rejected row', () => {
  it.each([
    ['".."', '../etc', /"\.\."/],
    ['".." inside', 'ops-data/../bob-data', /"\.\."/],
    ['an absolute path', '/etc', /relative name/],
    ['an empty segment', 'trees//main', /empty segments/],
    ['a space', 'ops data', /only letters, digits/],
    ['a snapshot folder name', 'ops-data/20261127T191045.123Z-x', /inside a snapshot/],
  ])('a destination with %s: INVALID_DESTINATION', async (_case, destination, says) => {
    const error = await expectRefused(() => prune(asAdmin, { destination }), {
      status: 400,
      code: 'INVALID_DESTINATION',
      parameter: destination,
      actor: 'admin',
    });

    expect(error.message).toMatch(says);
  });

  it.each([
    ['no destination', {}, '', /must have required property 'destination'/],
    ['an empty destination', { destination: '' }, '', /body\/destination/],
    ['a destination over 1024 characters', { destination: 'd'.repeat(1025) }, 'd'.repeat(1025), /1024/],
    ['a destination that is not a string', { destination: 7 }, '', /body\/destination must be string/],
    ['a dryRun that is not a boolean', { destination: 'ops-data', dryRun: 'yes' }, 'ops-data', /body\/dryRun/],
    ['an unknown property', { destination: 'ops-data', force: true }, 'ops-data', /"force"/],
  ])('%s: VALIDATION_FAILED', async (_case, payload, parameter, says) => {
    const error = await expectRefused(() => prune(asAdmin, payload), {
      status: 400,
      code: 'VALIDATION_FAILED',
      parameter,
      actor: 'admin',
    });

    expect(error.message).toMatch(says);
  });
});

describe('POST /prune and roles', () => {
  it('a viewer: 403 FORBIDDEN, nothing queued, a rejected row naming the viewer', async () => {
    await expectRefused(() => prune(asViewer, { destination: 'ops-data' }), {
      status: 403,
      code: 'FORBIDDEN',
      // Refused before the body is read: the row cannot name what was asked for.
      parameter: '',
      actor: 'watcher',
    });
  });

  it('without a token: 401, and no rejected row (nobody is known to have tried)', async () => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastId = await lastLogId(api.db);

    const res = await prune((options) => api.request(null, options), { destination: 'ops-data' });

    expectError(res, 401, 'UNAUTHENTICATED');
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    expect(await rowsAfter(lastId)).toEqual([]);
  });
});

describe('POST /prune with an Idempotency-Key', () => {
  it('replays the same job for the same key and body, queuing it once; another body is 422', async () => {
    const headers = { 'idempotency-key': 'prune-once' };
    const lastId = await lastLogId(api.db);

    const first = await prune(asAdmin, { destination: 'ops-data' }, headers);
    const second = await prune(asAdmin, { destination: 'ops-data', dryRun: false }, headers);
    const changed = await prune(asAdmin, { destination: 'ops-data', dryRun: true }, headers);

    const id = await accepted(first, { destination: 'ops-data', dryRun: false, actor: 'admin' });
    expect(second.statusCode, second.body).toBe(202);
    expect(second.json()).toEqual({ id, status: 'queued' });
    expect(second.headers.location).toBe(`/jobs/${id}`);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(second.headers['idempotent-replayed']).toBe('true');
    expectError(changed, 422, 'IDEMPOTENCY_KEY_REUSED');
    const queuedRows = (await rowsAfter(lastId)).filter((row) => row.status === 'queued');
    expect(queuedRows.map((row) => row.jobId)).toEqual([id]);
  });

  it('leaves the key free when the request is refused, so the same key works once it can be served', async () => {
    const headers = { 'idempotency-key': 'prune-after-policy' };
    await api.app.destinations.authorise(operator('ops'), 'ops-later');

    const refused = await prune(asOps, { destination: 'ops-later' }, headers);
    await api.app.retention.set('ops-later', { keepLast: 1 }, 'admin');
    const served = await prune(asOps, { destination: 'ops-later' }, headers);

    expectError(refused, 409, 'RETENTION_NOT_SET');
    await accepted(served, { destination: 'ops-later', dryRun: false, actor: 'ops' });
    expect(served.headers['idempotent-replayed']).toBeUndefined();
  });
});
