import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMIT_BYTES } from '../src/app.js';
import {
  containing,
  expectError,
  lastLogId,
  logRows,
  matching,
  startApi,
  type ApiHarness,
  type StoredLogRow,
} from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let api: ApiHarness;
let sources: string;
let folder: string;

beforeAll(async () => {
  api = await startApi();
  sources = api.env.sources;
  folder = join(sources, 'data');
  await mkdir(join(folder, 'sub'), { recursive: true });
  await writeFile(join(folder, 'sub', 'a.txt'), 'hello');
  await writeFile(join(sources, 'notes.txt'), 'a file source');
  await mkdir(join(sources, 'my photos (2024)'));
});

afterAll(async () => {
  await api?.close();
});

async function post(payload: unknown, headers: Record<string, string> = {}) {
  return api.app.inject({ method: 'POST', url: '/backup', payload: payload as object, headers });
}

describe('POST /backup accepts a backup request', () => {
  it('queues a folder source: 202, the job id, a Location, the job in Redis and one queued log row', async () => {
    const res = await post({ source: folder });

    expect(res.statusCode, res.body).toBe(202);
    const body = res.json<{ id: string; status: string }>();
    expect(body).toEqual({ id: matching(UUID), status: 'queued' });
    expect(res.headers.location).toBe(`/jobs/${body.id}`);

    const job = await api.app.backupQueue.getJob(body.id);
    expect(job?.data).toEqual({ source: folder, destination: 'data', incremental: true, actor: 'admin' });
    expect(await job?.getState()).toBe('waiting');

    const rows = await logRows(api.db, 'job_id = ?', [body.id]);
    expect(rows).toEqual([
      containing<StoredLogRow>({
        status: 'queued',
        job_id: body.id,
        parameter: folder,
        destination: 'data',
        attempt: 1,
      }),
    ]);
  });

  it('keeps an explicit nested destination', async () => {
    const res = await post({ source: folder, destination: 'nightly/db-1' });

    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect((await api.app.backupQueue.getJob(id))?.data).toEqual({
      source: folder,
      destination: 'nightly/db-1',
      actor: 'admin',
      incremental: true,
    });
    const rows = await logRows(api.db, 'job_id = ?', [id]);
    expect(rows.map((row) => [row.status, row.destination])).toEqual([['queued', 'nightly/db-1']]);
  });

  it.each([
    ['a trailing slash', '/data/'],
    ['duplicate slashes', '//data'],
    ['duplicate trailing slashes', '/data//'],
    ['a "." segment', '/./data'],
  ])('normalises a source with %s before queuing and logging it', async (_case, suffix) => {
    const res = await post({ source: `${sources}${suffix}` });

    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect((await api.app.backupQueue.getJob(id))?.data).toEqual({
      source: folder,
      destination: 'data',
      actor: 'admin',
      incremental: true,
    });
    const rows = await logRows(api.db, 'job_id = ?', [id]);
    expect(rows.map((row) => row.parameter)).toEqual([folder]);
  });

  it('queues a file source with its file name as the default destination', async () => {
    const file = join(sources, 'notes.txt');
    const res = await post({ source: file });

    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect((await api.app.backupQueue.getJob(id))?.data).toEqual({
      source: file,
      destination: 'notes.txt',
      actor: 'admin',
      incremental: true,
    });
  });

  it('derives a safe default destination from a base name with spaces and brackets', async () => {
    const source = join(sources, 'my photos (2024)');
    const res = await post({ source });

    expect(res.statusCode, res.body).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect((await api.app.backupQueue.getJob(id))?.data).toEqual({
      source,
      destination: 'my_photos__2024_',
      actor: 'admin',
      incremental: true,
    });
  });
});

interface BadInput {
  payload: (sources: string) => unknown;
  contentType?: string;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** What the message must say, so a person can fix the request. */
  says: RegExp;
  /** The body never got parsed, so the log cannot know the source. */
  unparsed?: true;
}

const json = 'application/json';

const badInputs: [string, BadInput][] = [
  [
    'invalid JSON',
    { payload: () => '{"source": "/x",', contentType: json, status: 400, code: 'INVALID_JSON', says: /JSON/ },
  ],
  [
    'an empty body with a JSON content type',
    { payload: () => '', contentType: json, status: 400, code: 'INVALID_JSON', says: /empty/i },
  ],
  [
    'a JSON array instead of an object',
    { payload: (s) => JSON.stringify([s]), contentType: json, status: 400, code: 'VALIDATION_FAILED', says: /object/ },
  ],
  ['a missing source', { payload: () => ({}), status: 400, code: 'VALIDATION_FAILED', says: /source/ }],
  [
    'a numeric source',
    { payload: () => ({ source: 5 }), status: 400, code: 'VALIDATION_FAILED', says: /source.*string/ },
  ],
  [
    'an array source',
    { payload: (s) => ({ source: [`${s}/data`] }), status: 400, code: 'VALIDATION_FAILED', says: /source.*string/ },
  ],
  [
    'an object source',
    {
      payload: (s) => ({ source: { path: `${s}/data` } }),
      status: 400,
      code: 'VALIDATION_FAILED',
      says: /source.*string/,
    },
  ],
  [
    'a null source',
    { payload: () => ({ source: null }), status: 400, code: 'VALIDATION_FAILED', says: /source.*string/ },
  ],
  ['an empty source', { payload: () => ({ source: '' }), status: 400, code: 'VALIDATION_FAILED', says: /source/ }],
  [
    'a source longer than PATH_MAX',
    {
      payload: (s) => ({ source: `${s}/${'x'.repeat(4096)}` }),
      status: 400,
      code: 'VALIDATION_FAILED',
      says: /source/,
    },
  ],
  [
    'a relative source',
    { payload: () => ({ source: 'sources/data' }), status: 400, code: 'INVALID_SOURCE', says: /source.*absolute/ },
  ],
  [
    'a source with a NUL byte',
    { payload: (s) => ({ source: `${s}/da\u0000ta` }), status: 400, code: 'INVALID_SOURCE', says: /source.*NUL/ },
  ],
  [
    'a source outside SOURCE_ROOTS',
    { payload: () => ({ source: '/etc' }), status: 400, code: 'SOURCE_OUTSIDE_ROOTS', says: /source.*SOURCE_ROOTS/ },
  ],
  [
    'a sibling folder sharing the root as a name prefix',
    {
      payload: (s) => ({ source: `${s}-evil/data` }),
      status: 400,
      code: 'SOURCE_OUTSIDE_ROOTS',
      says: /source.*SOURCE_ROOTS/,
    },
  ],
  [
    'a ".." escape from the root',
    { payload: (s) => ({ source: `${s}/../etc` }), status: 400, code: 'INVALID_SOURCE', says: /source.*\.\./ },
  ],
  [
    'an absolute destination',
    {
      payload: (s) => ({ source: `${s}/data`, destination: '/etc/cron.d' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*relative/,
    },
  ],
  [
    'a destination with ".."',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'nightly/../../etc' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*\.\./,
    },
  ],
  [
    'a destination that is ".."',
    {
      payload: (s) => ({ source: `${s}/data`, destination: '..' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*\.\./,
    },
  ],
  [
    'a destination with a space',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'night ly' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*letters/,
    },
  ],
  [
    'a destination with "*"',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'nightly*' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*letters/,
    },
  ],
  [
    'a destination with unicode',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'café' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*letters/,
    },
  ],
  [
    'an empty destination',
    {
      payload: (s) => ({ source: `${s}/data`, destination: '' }),
      status: 400,
      code: 'VALIDATION_FAILED',
      says: /destination/,
    },
  ],
  [
    'a destination with a trailing slash',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'nightly/' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*empty segments/,
    },
  ],
  [
    'a destination with a double slash',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'nightly//db' }),
      status: 400,
      code: 'INVALID_DESTINATION',
      says: /destination.*empty segments/,
    },
  ],
  [
    'a numeric destination',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 7 }),
      status: 400,
      code: 'VALIDATION_FAILED',
      says: /destination.*string/,
    },
  ],
  [
    'an unknown extra property',
    {
      payload: (s) => ({ source: `${s}/data`, priority: 1 }),
      status: 400,
      code: 'VALIDATION_FAILED',
      says: /additional properties/,
    },
  ],
  [
    'an empty Idempotency-Key header',
    {
      payload: (s) => ({ source: `${s}/data` }),
      headers: { 'idempotency-key': '' },
      status: 400,
      code: 'VALIDATION_FAILED',
      says: /idempotency-key/,
    },
  ],
  [
    'a body over 1 MiB',
    {
      payload: (s) => ({ source: `${s}/data`, destination: 'x'.repeat(BODY_LIMIT_BYTES) }),
      status: 413,
      code: 'BODY_TOO_LARGE',
      says: /too large/i,
      unparsed: true,
    },
  ],
  [
    'a text/plain body',
    {
      payload: (s) => JSON.stringify({ source: `${s}/data` }),
      contentType: 'text/plain',
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
      says: /media type/i,
    },
  ],
];

describe('POST /backup refuses bad input, queues nothing and logs one rejected row', () => {
  it.each(badInputs)('%s', async (_case, { payload, contentType, headers, status, code, says, unparsed }) => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastIdBefore = await lastLogId(api.db);
    const body = payload(sources);

    const res = await post(body, { ...(contentType ? { 'content-type': contentType } : {}), ...headers });

    const error = expectError(res, status, code);
    expect(error.message).toMatch(says);
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    const requested = !unparsed && typeof body === 'object' ? (body as { source?: unknown } | null)?.source : undefined;
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([
      containing<StoredLogRow>({
        status: 'rejected',
        job_id: null,
        code,
        message: error.message,
        parameter: typeof requested === 'string' ? requested.slice(0, 4096) : '',
      }),
    ]);
  });
});

describe('POST /backup with an Idempotency-Key', () => {
  it('returns the same job for the same key and body, queuing it once', async () => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const queuedRowsBefore = (await logRows(api.db, "status = 'queued'")).length;
    const headers = { 'idempotency-key': 'nightly-2024-06-01' };

    const first = await post({ source: folder, destination: 'nightly' }, headers);
    const second = await post({ source: folder, destination: 'nightly' }, headers);

    expect(first.statusCode, first.body).toBe(202);
    expect(second.statusCode, second.body).toBe(202);
    const { id } = first.json<{ id: string }>();
    expect(second.json()).toEqual({ id, status: 'queued' });
    expect(second.headers.location).toBe(`/jobs/${id}`);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(second.headers['idempotent-replayed']).toBe('true');

    const countsAfter = await api.app.backupQueue.getJobCounts();
    expect(countsAfter.waiting).toBe((countsBefore.waiting ?? 0) + 1);
    expect((await logRows(api.db, "status = 'queued'")).length).toBe(queuedRowsBefore + 1);
    expect((await logRows(api.db, 'job_id = ?', [id])).map((row) => row.status)).toEqual(['queued']);
  });

  it('treats the same source spelled differently as the same body', async () => {
    const headers = { 'idempotency-key': 'spelling' };
    const first = await post({ source: folder }, headers);
    const second = await post({ source: `${folder}/` }, headers);

    expect(first.statusCode, first.body).toBe(202);
    expect(second.statusCode, second.body).toBe(202);
    expect(second.json<{ id: string }>().id).toBe(first.json<{ id: string }>().id);
  });

  it('refuses the same key with a different body: 422 IDEMPOTENCY_KEY_REUSED, nothing queued', async () => {
    const headers = { 'idempotency-key': 'reused-key' };
    const first = await post({ source: folder, destination: 'one' }, headers);
    expect(first.statusCode, first.body).toBe(202);
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastIdBefore = await lastLogId(api.db);

    const res = await post({ source: folder, destination: 'two' }, headers);

    const error = expectError(res, 422, 'IDEMPOTENCY_KEY_REUSED');
    expect(error.message).toContain('reused-key');
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([
      containing<StoredLogRow>({ status: 'rejected', job_id: null, code: 'IDEMPOTENCY_KEY_REUSED' }),
    ]);
  });

  it('counts "incremental" as part of the body: the same key with another value is 422, omitted equals true', async () => {
    const headers = { 'idempotency-key': 'incremental-or-not' };
    const first = await post({ source: folder, destination: 'inc' }, headers);
    const same = await post({ source: folder, destination: 'inc', incremental: true }, headers);

    const full = await post({ source: folder, destination: 'inc', incremental: false }, headers);

    expect(first.statusCode, first.body).toBe(202);
    expect(same.json<{ id: string }>().id).toBe(first.json<{ id: string }>().id);
    expectError(full, 422, 'IDEMPOTENCY_KEY_REUSED');
  });

  it('gives different keys different jobs for the same body', async () => {
    const first = await post({ source: folder }, { 'idempotency-key': 'key-a' });
    const second = await post({ source: folder }, { 'idempotency-key': 'key-b' });

    expect(first.statusCode, first.body).toBe(202);
    expect(second.statusCode, second.body).toBe(202);
    expect(second.json<{ id: string }>().id).not.toBe(first.json<{ id: string }>().id);
  });
});

describe('POST /backup never backs up the backup store', () => {
  let shared: ApiHarness;
  const store = `/tmp/coffer-store-${process.pid}`;

  beforeAll(async () => {
    // The quick-start mistake: SOURCE_ROOTS holds BACKUP_ROOT.
    shared = await startApi({ SOURCE_ROOTS: '/tmp', BACKUP_ROOT: store });
  });

  afterAll(async () => {
    await shared?.close();
  });

  it.each([
    ['the folder that contains the store', '/tmp'],
    ['the store itself', store],
    ['a folder inside the store', `${store}/nightly/20261127T191045.123Z-x`],
    ['the store spelled with a trailing slash', `${store}/`],
  ])('refuses %s: 400 SOURCE_OVERLAPS_BACKUP_ROOT, nothing queued', async (_case, source) => {
    const countsBefore = await shared.app.backupQueue.getJobCounts();

    const res = await shared.request(shared.adminToken, { method: 'POST', url: '/backup', payload: { source } });

    const error = expectError(res, 400, 'SOURCE_OVERLAPS_BACKUP_ROOT');
    expect(error.message).toContain(store);
    expect(await shared.app.backupQueue.getJobCounts()).toEqual(countsBefore);
  });

  it('accepts a sibling of the store whose name starts the same', async () => {
    const res = await shared.request(shared.adminToken, {
      method: 'POST',
      url: '/backup',
      payload: { source: `${store}-other` },
    });

    expect(res.statusCode).toBe(202);
  });
});
