import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { InjectOptions } from 'fastify';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RestoreJobData, SnapshotFacts, VerifyJobData } from '@coffer/shared';
import {
  collect,
  expectError,
  issueToken,
  lastLogId,
  matching,
  pruneSnapshot,
  recordSnapshot as recordSnapshotAs,
  startApi,
  type ApiHarness,
  type Requester,
} from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let api: ApiHarness;
/**
 * A folder of this file's own: SOURCE_ROOTS is `<base>/srv`, RESTORE_ROOTS `<base>/srv` and `<base>/restores`,
 * and BACKUP_ROOT `<base>/restores/store`: inside a restore root, so only its own check keeps restores out of it.
 */
let base: string;
let srv: string;
let restores: string;
let backupRoot: string;
let asAdmin: Requester;
let asOps: Requester;
let asViewer: Requester;
/** An operator limited to `<base>/srv/team-a`. */
let asTeamA: Requester;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'coffer-restore-routes-'));
  srv = join(base, 'srv');
  restores = join(base, 'restores');
  backupRoot = join(restores, 'store');
  api = await startApi({ SOURCE_ROOTS: srv, RESTORE_ROOTS: `${srv}:${restores}`, BACKUP_ROOT: backupRoot });
  const [ops, viewer, teamA] = await Promise.all([
    issueToken(api, 'ops', 'operator'),
    issueToken(api, 'watcher', 'viewer'),
    issueToken(api, 'team-a', 'operator', [join(srv, 'team-a')]),
  ]);
  asAdmin = (options) => api.request(api.adminToken, options);
  asOps = (options) => api.request(ops, options);
  asViewer = (options) => api.request(viewer, options);
  asTeamA = (options) => api.request(teamA, options);
});

afterAll(async () => {
  await api?.close();
  if (base) await rm(base, { recursive: true, force: true });
});

/** Records a completed backup's snapshot the way its worker does: in the transaction of its completed row. */
function recordSnapshot(actor: string | null = 'admin'): Promise<SnapshotFacts> {
  const id = randomUUID();
  const destination = `data-${id.slice(0, 8)}`;
  return recordSnapshotAs(api.app, backupRoot, {
    id,
    destination,
    source: join(srv, 'data'),
    actor,
    files: 3,
    bytes: 30,
    filesLinked: 0,
    bytesLinked: 0,
    manifestSha256: 'c'.repeat(64),
  });
}

/** What a restore or verify job must carry of its snapshot, so that its worker needs no catalog lookup. */
const readsSnapshot = (snapshot: SnapshotFacts) => ({
  snapshot: snapshot.id,
  snapshotPath: snapshot.path,
  source: snapshot.source,
  destination: snapshot.destination,
  manifestSha256: snapshot.manifestSha256,
});

type Kind = 'restore' | 'verify';

function post(send: Requester, kind: Kind, payload: object, headers: Record<string, string> = {}) {
  return send({ method: 'POST', url: `/${kind}`, payload, headers } satisfies InjectOptions);
}

/** Checks a request's 202 answer (the job id, its Location) and returns the job's view as GET /jobs/:id shows it. */
async function acceptedJob(res: Awaited<ReturnType<Requester>>, send: Requester = asAdmin) {
  expect(res.statusCode, res.body).toBe(202);
  const body = res.json<{ id: string; status: string }>();
  expect(body).toEqual({ id: matching(UUID), status: 'queued' });
  expect(res.headers.location).toBe(`/jobs/${body.id}`);
  const view = await send({ method: 'GET', url: `/jobs/${body.id}` });
  expect(view.statusCode, view.body).toBe(200);
  return view.json<Record<string, unknown> & { id: string }>();
}

interface LoggedRow {
  action: string;
  status: string;
  jobId: string | null;
  parameter: string;
  code: string | null;
  message: string | null;
  actor: string | null;
  snapshotId: string | null;
}

/** Log rows written after row `afterId`, oldest first, with the columns these routes set. */
async function rowsAfter(afterId: number, where = '1 = 1', params: string[] = []): Promise<LoggedRow[]> {
  const [rows] = await api.db.query<RowDataPacket[]>(
    'SELECT action, status, job_id AS jobId, parameter, code, message, actor, snapshot_id AS snapshotId' +
      ` FROM log WHERE id > ? AND ${where} ORDER BY id`,
    [afterId, ...params],
  );
  return rows as LoggedRow[];
}

async function queuedData<T>(id: string): Promise<{ name: string; data: T } | undefined> {
  const job = await api.app.backupQueue.getJob(id);
  return job ? { name: job.name, data: job.data as T } : undefined;
}

/** Sends a request that must be refused; checks it queued nothing and left one `rejected` row. */
async function expectRefused(
  send: () => Promise<Awaited<ReturnType<Requester>>>,
  expected: { status: number; code: string; action: Kind; parameter: string; actor: string },
) {
  const countsBefore = await api.app.backupQueue.getJobCounts();
  const lastId = await lastLogId(api.db);

  const res = await send();

  const error = expectError(res, expected.status, expected.code);
  expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
  expect(await rowsAfter(lastId)).toEqual([
    {
      action: expected.action,
      status: 'rejected',
      jobId: null,
      parameter: expected.parameter,
      code: expected.code,
      message: error.message,
      actor: expected.actor,
      snapshotId: null,
    },
  ]);
  return error;
}

describe('POST /restore queues a restore', () => {
  it('answers 202 with a Location whose job view names the snapshot, target, destination and source', async () => {
    const snapshot = await recordSnapshot();
    const target = join(restores, 'first');

    const view = await acceptedJob(await post(asAdmin, 'restore', { snapshot: snapshot.id, target }));

    expect(view).toMatchObject({
      kind: 'restore',
      status: 'queued',
      snapshot: snapshot.id,
      target,
      destination: snapshot.destination,
      source: snapshot.source,
      actor: 'admin',
    });
  });

  it("puts the snapshot's folder and manifest digest and the target's roots in the queued job", async () => {
    const snapshot = await recordSnapshot();
    const target = join(restores, 'with-paths');

    const res = await post(asAdmin, 'restore', {
      snapshot: snapshot.id,
      target: `${target}/`,
      paths: ['docs/b.txt', 'docs/a.txt', 'docs/b.txt'],
      overwrite: true,
    });

    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect(await queuedData<RestoreJobData>(id)).toEqual({
      name: 'restore',
      data: {
        ...readsSnapshot(snapshot),
        target,
        paths: ['docs/a.txt', 'docs/b.txt'],
        overwrite: true,
        targetRoots: [srv, restores],
        actor: 'admin',
      },
    });
    // One queued row, naming the target and the snapshot it reads.
    expect(await rowsAfter(0, 'job_id = ?', [id])).toEqual([
      expect.objectContaining({ action: 'restore', status: 'queued', parameter: target, snapshotId: snapshot.id }),
    ]);
  });

  it('is listed by GET /jobs?kind=restore, which lists no backup', async () => {
    const snapshot = await recordSnapshot();
    const res = await post(asAdmin, 'restore', { snapshot: snapshot.id, target: join(restores, 'listed') });
    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();

    const restoresListed = await collect<{ id: string; kind: string }>(api.app, '/jobs?kind=restore&limit=100');
    const backupsListed = await collect<{ id: string; kind: string }>(api.app, '/jobs?kind=backup&limit=100');

    expect(restoresListed.map((job) => job.id)).toContain(id);
    expect(restoresListed.map((job) => job.kind)).toEqual(restoresListed.map(() => 'restore'));
    expect(restoresListed.map((job) => job.id)).not.toContain(snapshot.id);
    expect(backupsListed.map((job) => job.id)).toContain(snapshot.id);
    expect(backupsListed.map((job) => job.id)).not.toContain(id);
  });
});

describe('POST /verify queues a verify', () => {
  it('answers 202 with a Location whose job view names the snapshot, destination and source', async () => {
    const snapshot = await recordSnapshot();

    const view = await acceptedJob(await post(asAdmin, 'verify', { snapshot: snapshot.id }));

    expect(view).toMatchObject({
      kind: 'verify',
      status: 'queued',
      snapshot: snapshot.id,
      destination: snapshot.destination,
      source: snapshot.source,
    });
    expect(view).not.toHaveProperty('target');
  });

  it("puts the snapshot's folder and manifest digest in the queued job", async () => {
    const snapshot = await recordSnapshot();

    const res = await post(asAdmin, 'verify', { snapshot: snapshot.id });

    const { id } = res.json<{ id: string }>();
    expect(await queuedData<VerifyJobData>(id)).toEqual({
      name: 'verify',
      data: {
        ...readsSnapshot(snapshot),
        actor: 'admin',
      },
    });
    const listed = await collect<{ id: string }>(api.app, '/jobs?kind=verify&limit=100');
    expect(listed.map((job) => job.id)).toContain(id);
  });
});

describe.each(['restore', 'verify'] as const)('POST /%s with an Idempotency-Key', (kind) => {
  const body = (snapshot: string) => (kind === 'restore' ? { snapshot, target: join(restores, 'once') } : { snapshot });

  it('replays the same job for the same key and body, queuing it once; another body is 422', async () => {
    const [snapshot, other] = [await recordSnapshot(), await recordSnapshot()];
    const headers = { 'idempotency-key': `${kind}-${snapshot.id}` };
    const lastId = await lastLogId(api.db);

    const first = await post(asAdmin, kind, body(snapshot.id), headers);
    const second = await post(asAdmin, kind, body(snapshot.id), headers);
    const changed = await post(asAdmin, kind, body(other.id), headers);

    const { id } = await acceptedJob(first);
    expect(second.statusCode, second.body).toBe(202);
    expect(second.json()).toEqual({ id, status: 'queued' });
    expect(second.headers.location).toBe(`/jobs/${id}`);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(second.headers['idempotent-replayed']).toBe('true');
    expectError(changed, 422, 'IDEMPOTENCY_KEY_REUSED');
    expect((await rowsAfter(lastId, "status = 'queued'")).map((row) => row.jobId)).toEqual([id]);
    expect((await api.app.backupQueue.getJob(id))?.name).toBe(kind);
  });
});

describe('POST /restore refuses a bad target or paths: 400, nothing queued, one rejected row', () => {
  let snapshotId: string;

  beforeAll(async () => {
    snapshotId = (await recordSnapshot()).id;
  });

  const cases: [string, () => string, string, RegExp][] = [
    ['a relative target', () => 'restores/here', 'INVALID_TARGET', /absolute/],
    ['a target with ".."', () => `${restores}/../restores/x`, 'INVALID_TARGET', /\.\./],
    ['a target with a NUL byte', () => `${restores}/a\u0000b`, 'INVALID_TARGET', /NUL/],
    ['a target inside BACKUP_ROOT', () => join(backupRoot, 'restored'), 'INVALID_TARGET', /BACKUP_ROOT/],
    ['BACKUP_ROOT itself', () => backupRoot, 'INVALID_TARGET', /BACKUP_ROOT/],
    ['the folder that holds BACKUP_ROOT', () => dirname(backupRoot), 'INVALID_TARGET', /BACKUP_ROOT/],
    ['BACKUP_ROOT with a trailing slash', () => `${backupRoot}/`, 'INVALID_TARGET', /BACKUP_ROOT/],
    ['a target outside RESTORE_ROOTS', () => '/etc/coffer-restore', 'TARGET_OUTSIDE_ROOTS', /RESTORE_ROOTS/],
    [
      'a sibling of a root sharing its name as a prefix',
      () => `${restores}-evil/x`,
      'TARGET_OUTSIDE_ROOTS',
      /RESTORE_ROOTS/,
    ],
  ];

  it.each(cases)('%s', async (_case, targetOf, code, says) => {
    const target = targetOf();

    const error = await expectRefused(() => post(asAdmin, 'restore', { snapshot: snapshotId, target }), {
      status: 400,
      code,
      action: 'restore',
      parameter: target,
      actor: 'admin',
    });

    expect(error.message).toMatch(says);
  });

  it('accepts a sibling of BACKUP_ROOT whose name starts the same', async () => {
    const res = await post(asAdmin, 'restore', { snapshot: snapshotId, target: `${backupRoot}-other` });

    expect(res.statusCode, res.body).toBe(202);
  });

  it.each([
    ['an absolute path', '/etc/passwd'],
    ['a ".." segment', 'docs/../../etc'],
    ['an empty segment', 'docs//a.txt'],
    ['a trailing slash', 'docs/'],
    ['a "." segment', './docs'],
  ])('paths with %s: INVALID_RESTORE_PATH', async (_case, path) => {
    const target = join(restores, 'paths');

    const error = await expectRefused(
      () => post(asAdmin, 'restore', { snapshot: snapshotId, target, paths: ['docs/a.txt', path] }),
      { status: 400, code: 'INVALID_RESTORE_PATH', action: 'restore', parameter: target, actor: 'admin' },
    );

    expect(error.message).toContain('paths');
  });

  it.each([
    ['an unknown property', { priority: 1 }],
    ['an empty paths list', { paths: [] }],
    ['a non-boolean overwrite', { overwrite: 'yes' }],
  ])('%s: VALIDATION_FAILED', async (_case, extra) => {
    const target = join(restores, 'validated');

    await expectRefused(() => post(asAdmin, 'restore', { snapshot: snapshotId, target, ...extra }), {
      status: 400,
      code: 'VALIDATION_FAILED',
      action: 'restore',
      parameter: target,
      actor: 'admin',
    });
  });
});

describe('POST /verify refuses a bad body', () => {
  it('with an unknown property: 400, nothing queued, one rejected verify row', async () => {
    const snapshot = await recordSnapshot();

    await expectRefused(() => post(asAdmin, 'verify', { snapshot: snapshot.id, deep: true }), {
      status: 400,
      code: 'VALIDATION_FAILED',
      action: 'verify',
      parameter: snapshot.id,
      actor: 'admin',
    });
  });
});

describe.each(['restore', 'verify'] as const)('POST /%s of a snapshot that cannot be read', (kind) => {
  const body = (snapshot: string) =>
    kind === 'restore' ? { snapshot, target: join(restores, 'unknown') } : { snapshot };
  const parameter = (snapshot: string) => (kind === 'restore' ? join(restores, 'unknown') : snapshot);

  // Each makes a snapshot id that the token named cannot read.
  it.each([
    ['an unknown snapshot', 'admin', async () => randomUUID()],
    [
      'a snapshot a prune deleted',
      'admin',
      async () => {
        const { id } = await recordSnapshot();
        await pruneSnapshot(api.app, id);
        return id;
      },
    ],
    ["another token's snapshot, for an operator", 'ops', async () => (await recordSnapshot('admin')).id],
  ] as const)('%s: 404 SNAPSHOT_NOT_FOUND, as if it did not exist', async (_case, actor, snapshotOf) => {
    const id = await snapshotOf();
    const send = actor === 'ops' ? asOps : asAdmin;

    const error = await expectRefused(() => post(send, kind, body(id)), {
      status: 404,
      code: 'SNAPSHOT_NOT_FOUND',
      action: kind,
      parameter: parameter(id),
      actor,
    });

    expect(error.message).toContain(id);
  });

  it("its own snapshot, for an operator: 202, the job the operator's", async () => {
    const own = await recordSnapshot('ops');

    const view = await acceptedJob(await post(asOps, kind, body(own.id)), asOps);

    expect(view).toMatchObject({ kind, snapshot: own.id, actor: 'ops' });
  });

  it('any snapshot, for a viewer: 403', async () => {
    const snapshot = await recordSnapshot('watcher');

    await expectRefused(() => post(asViewer, kind, body(snapshot.id)), {
      status: 403,
      code: 'FORBIDDEN',
      action: kind,
      // Refused before its body is read: the row cannot name what it asked for.
      parameter: '',
      actor: 'watcher',
    });
  });

  it('without a token: 401, and no rejected row (nobody is known to have tried)', async () => {
    const snapshot = await recordSnapshot();
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastId = await lastLogId(api.db);

    const res = await api.request(null, { method: 'POST', url: `/${kind}`, payload: body(snapshot.id) });

    expect(res.statusCode, res.body).toBe(401);
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    expect(await rowsAfter(lastId)).toEqual([]);
  });
});

describe('POST /restore by a token narrowed to some source roots', () => {
  it('restores inside its own roots', async () => {
    const snapshot = await recordSnapshot('team-a');
    const target = join(srv, 'team-a', 'restored');

    const { id } = await acceptedJob(await post(asTeamA, 'restore', { snapshot: snapshot.id, target }), asTeamA);

    expect((await queuedData<RestoreJobData>(id))?.data).toMatchObject({ target, targetRoots: [join(srv, 'team-a')] });
  });

  it.each([
    ['another team’s folder under SOURCE_ROOTS', () => join(srv, 'team-b', 'restored')],
    ['a RESTORE_ROOT outside its roots', () => join(restores, 'team-a')],
  ])('cannot restore into %s: 400 TARGET_OUTSIDE_ROOTS', async (_case, targetOf) => {
    const snapshot = await recordSnapshot('team-a');
    const target = targetOf();

    const error = await expectRefused(() => post(asTeamA, 'restore', { snapshot: snapshot.id, target }), {
      status: 400,
      code: 'TARGET_OUTSIDE_ROOTS',
      action: 'restore',
      parameter: target,
      actor: 'team-a',
    });

    expect(error.message).toContain('team-a');
  });
});
