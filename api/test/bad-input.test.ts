import { request as httpRequest } from 'node:http';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import {
  authorise,
  configWith,
  containing,
  expectError,
  issueToken,
  lastLogId,
  logRows,
  startApi,
  type ApiHarness,
  type StoredLogRow,
  queuedBackup,
} from './helpers.js';

// What a hostile or careless client may send, and what must come of it: the exact source
// queued, or a 4xx with a stable code, nothing queued and one `rejected` row.
let api: ApiHarness;
let sources: string;
let teamA: string;
let port: number;

beforeAll(async () => {
  api = await startApi();
  sources = api.env.sources;
  teamA = await issueToken(api, 'team-a', 'operator', [join(sources, 'team-a')]);
  await mkdir(join(sources, 'data'));
  await api.app.listen({ host: '127.0.0.1', port: 0 });
  const address = api.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  port = address.port;
});

afterAll(async () => {
  await api?.close();
});

type Source = (sources: string) => unknown;

interface Case {
  body: (s: string) => unknown;
  /** The token to send (default the admin's). */
  as?: () => string;
  status: number;
  /** The code of a refusal. */
  code?: string;
  /** The source queued when accepted. */
  queued?: (s: string) => string;
}

const accept = (queued: (s: string) => string, body: (s: string) => unknown, as?: () => string): Case => ({
  body,
  queued,
  status: 202,
  as,
});
const refuse = (status: number, code: string, body: (s: string) => unknown, as?: () => string): Case => ({
  body,
  status,
  code,
  as,
});
const source = (value: Source) => (s: string) => ({ source: value(s) });

/** A path of exactly 4096 characters under `s`, in segments of at most 255 bytes. */
function longSource(s: string): string {
  let path = s;
  while (4095 - path.length > 255) path += `/${'x'.repeat(200)}`;
  return `${path}/${'x'.repeat(4095 - path.length)}`;
}

const cases: [string, Case][] = [
  // Traversal, spelled every way.
  [
    'a ".." segment',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `${s}/../etc`),
    ),
  ],
  [
    'a ".." deeper down',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `${s}/data/../../etc/passwd`),
    ),
  ],
  [
    'a trailing ".."',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `${s}/data/..`),
    ),
  ],
  [
    '"..." (a plain name)',
    accept(
      (s) => `${s}/...`,
      source((s) => `${s}/...`),
    ),
  ],
  [
    '"%2e%2e" (never URL-decoded)',
    accept(
      (s) => `${s}/%2e%2e/etc`,
      source((s) => `${s}/%2e%2e/etc`),
    ),
  ],
  [
    '"..%2f" (never URL-decoded)',
    accept(
      (s) => `${s}/..%2f..%2fetc`,
      source((s) => `${s}/..%2f..%2fetc`),
    ),
  ],
  [
    'a backslash traversal (a plain name on Linux)',
    accept(
      (s) => `${s}/..\\..\\etc`,
      source((s) => `${s}/..\\..\\etc`),
    ),
  ],
  [
    'duplicate slashes',
    accept(
      (s) => `${s}/data`,
      source((s) => `${s}///data`),
    ),
  ],
  [
    'a leading double slash',
    accept(
      (s) => `${s}/data`,
      source((s) => `/${s}/data`),
    ),
  ],
  [
    'trailing slashes',
    accept(
      (s) => `${s}/data`,
      source((s) => `${s}/data//`),
    ),
  ],
  [
    '"." segments',
    accept(
      (s) => `${s}/data`,
      source((s) => `${s}/./data/.`),
    ),
  ],
  [
    'the root itself',
    accept(
      (s) => s,
      source((s) => `${s}/`),
    ),
  ],
  [
    '"/"',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source(() => '/'),
    ),
  ],
  [
    'a sibling sharing the root as a prefix',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source((s) => `${s}-evil/data`),
    ),
  ],
  [
    'the parent of the root',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source((s) => join(s, '..')),
    ),
  ],
  [
    'a relative path',
    refuse(
      400,
      'INVALID_SOURCE',
      source(() => 'data'),
    ),
  ],
  [
    'a "~" path',
    refuse(
      400,
      'INVALID_SOURCE',
      source(() => '~/data'),
    ),
  ],
  [
    'a file: URL',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `file://${s}/data`),
    ),
  ],
  // NUL bytes and control characters.
  [
    'a NUL byte',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `${s}/data\u0000/../../etc`),
    ),
  ],
  [
    'a trailing NUL byte',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `${s}/data\u0000`),
    ),
  ],
  [
    'a NUL byte in the destination',
    refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: 'a\u0000' })),
  ],
  [
    'a newline (a legal file name)',
    accept(
      (s) => `${s}/da\nta`,
      source((s) => `${s}/da\nta`),
    ),
  ],
  // Sizes.
  [
    'a source of 4097 characters',
    refuse(
      400,
      'VALIDATION_FAILED',
      source((s) => `${s}/${'x'.repeat(4097 - s.length - 1)}`),
    ),
  ],
  ['a source of 4096 characters (in segments a file system holds)', accept(longSource, source(longSource))],
  [
    'a source with a segment of 256 bytes',
    refuse(400, 'INVALID_SOURCE', (s) => ({ source: `${s}/${'x'.repeat(256)}` })),
  ],
  [
    'a destination of 1025 characters',
    refuse(400, 'VALIDATION_FAILED', (s) => ({ source: `${s}/data`, destination: 'd'.repeat(1025) })),
  ],
  ['a body over 1 MiB', refuse(413, 'BODY_TOO_LARGE', (s) => ({ source: `${s}/data`, pad: 'x'.repeat(1024 * 1024) }))],
  [
    'a JSON nesting 100 000 deep',
    refuse(400, 'VALIDATION_FAILED', () => `{"source":${'['.repeat(100_000)}${']'.repeat(100_000)}}`),
  ],
  [
    '10 000 unknown properties',
    refuse(400, 'VALIDATION_FAILED', (s) => ({
      source: `${s}/data`,
      ...Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])),
    })),
  ],
  // Wrong types and shapes.
  [
    'a number',
    refuse(
      400,
      'VALIDATION_FAILED',
      source(() => 42),
    ),
  ],
  [
    'a boolean',
    refuse(
      400,
      'VALIDATION_FAILED',
      source(() => true),
    ),
  ],
  [
    'an array of paths',
    refuse(
      400,
      'VALIDATION_FAILED',
      source((s) => [`${s}/data`, '/etc']),
    ),
  ],
  [
    'an object',
    refuse(
      400,
      'VALIDATION_FAILED',
      source((s) => ({ toString: `${s}/data` })),
    ),
  ],
  [
    'null',
    refuse(
      400,
      'VALIDATION_FAILED',
      source(() => null),
    ),
  ],
  ['a body that is a JSON string', refuse(400, 'VALIDATION_FAILED', (s) => JSON.stringify(`${s}/data`))],
  ['a body that is JSON null', refuse(400, 'VALIDATION_FAILED', () => 'null')],
  [
    'a __proto__ property (refused by the JSON parser)',
    refuse(400, 'INVALID_JSON', (s) => `{"source":"${s}/data","__proto__":{"destination":"../../etc"}}`),
  ],
  [
    'a constructor.prototype property (refused by the JSON parser)',
    refuse(400, 'INVALID_JSON', (s) => `{"source":"${s}/data","constructor":{"prototype":{}}}`),
  ],
  [
    'a duplicated key (the last one wins, and is checked)',
    refuse(400, 'SOURCE_OUTSIDE_ROOTS', (s) => `{"source":"${s}/data","source":"/etc"}`),
  ],
  // Unicode: compared as written, never folded, so no look-alike can reach another folder.
  [
    'fullwidth dots "．．"',
    accept(
      (s) => `${s}/．．/etc`,
      source((s) => `${s}/．．/etc`),
    ),
  ],
  [
    'a one-dot leader pair "‥"',
    accept(
      (s) => `${s}/‥/etc`,
      source((s) => `${s}/‥/etc`),
    ),
  ],
  [
    'a division slash "∕"',
    accept(
      (s) => `${s}/..∕..∕etc`,
      source((s) => `${s}/..∕..∕etc`),
    ),
  ],
  [
    'a look-alike hyphen in a sibling root',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source((s) => `${s}‐evil`),
    ),
  ],
  [
    'a right-to-left override',
    accept(
      (s) => `${s}/\u202egpj.exe`,
      source((s) => `${s}/\u202egpj.exe`),
    ),
  ],
  [
    'a decomposed "é" (NFD)',
    accept(
      (s) => `${s}/cafe\u0301`,
      source((s) => `${s}/cafe\u0301`),
    ),
  ],
  [
    'a fullwidth destination',
    refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: 'ｅｔｃ' })),
  ],
  // Destinations.
  ['a destination "../x"', refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: '../x' }))],
  [
    'a destination "a/../../x"',
    refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: 'a/../../x' })),
  ],
  [
    'a destination "%2e%2e"',
    refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: '%2e%2e/x' })),
  ],
  ['a destination "./a"', refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: './a' }))],
  [
    'a destination "a\\..\\b"',
    refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: 'a\\..\\b' })),
  ],
  [
    'an absolute destination',
    refuse(400, 'INVALID_DESTINATION', (s) => ({ source: `${s}/data`, destination: '/tmp/x' })),
  ],
  [
    'a destination "..."',
    accept(
      (s) => `${s}/data`,
      (s) => ({ source: `${s}/data`, destination: '...' }),
    ),
  ],
  // A token limited to one folder.
  [
    'a limited token inside its folder',
    accept(
      (s) => `${s}/team-a/db`,
      source((s) => `${s}/team-a/db`),
      () => teamA,
    ),
  ],
  [
    'a limited token on its folder itself',
    accept(
      (s) => `${s}/team-a`,
      source((s) => `${s}/team-a/`),
      () => teamA,
    ),
  ],
  [
    'a limited token outside its folder',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source((s) => `${s}/team-b`),
      () => teamA,
    ),
  ],
  [
    'a limited token on the whole root',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source((s) => s),
      () => teamA,
    ),
  ],
  [
    'a limited token on a prefix sibling',
    refuse(
      400,
      'SOURCE_OUTSIDE_ROOTS',
      source((s) => `${s}/team-a-evil`),
      () => teamA,
    ),
  ],
  [
    'a limited token climbing out',
    refuse(
      400,
      'INVALID_SOURCE',
      source((s) => `${s}/team-a/../team-b`),
      () => teamA,
    ),
  ],
];

describe('POST /backup with hostile input', () => {
  it.each(cases)('%s', async (_case, { body, as, status, code, queued }) => {
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastIdBefore = await lastLogId(api.db);
    const payload = body(sources);

    const res = await api.request(as ? as() : api.adminToken, {
      method: 'POST',
      url: '/backup',
      headers: { 'content-type': 'application/json' },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

    if (code === undefined) {
      expect(res.statusCode, res.body).toBe(status);
      const data = await queuedBackup(api.app, res.json<{ id: string }>().id);
      expect(data?.source).toBe(queued?.(sources));
      return;
    }
    expectError(res, status, code);
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([
      containing<StoredLogRow>({ status: 'rejected', job_id: null, code }),
    ]);
  });
});

/**
 * A raw HTTP request with the path exactly as given: URL parsers (fetch, inject, http.request
 * with a URL) would resolve ".." and "%2e%2e" before sending it.
 */
function raw(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      method,
      headers: { authorization: `Bearer ${api.adminToken}` },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.end();
  });
}

describe('ids with traversal, sent as raw HTTP', () => {
  it.each([
    ['GET', '/jobs/%2e%2e'],
    ['GET', '/jobs/%2E%2E'],
    ['GET', '/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd'],
    ['GET', '/jobs/..%2f..%2fetc'],
    ['GET', '/jobs/a%00b'],
    ['GET', '/jobs/%252e%252e'],
    ['DELETE', '/jobs/%2e%2e'],
    ['DELETE', '/tokens/%2e%2e'],
    ['GET', '/logs?jobId=%2e%2e%2f%2e%2e'],
    ['GET', "/logs?jobId=x'%20OR%20'1'='1"],
    ['GET', '/logs?status=queued%27%20OR%201=1--'],
  ])('%s %s is refused with 400 VALIDATION_FAILED', async (method, path) => {
    const res = await raw(method, path);

    expect(res.status, res.body).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it.each([
    ['GET', '/jobs/../tokens'],
    ['GET', '/docs/../tokens'],
    ['GET', '/health/../tokens'],
  ])('%s %s does not reach another route', async (method, path) => {
    const res = await raw(method, path);

    expect(res.status, res.body).toBe(404);
  });
});

describe('a value outside a fixed set', () => {
  it.each([
    [
      'GET /jobs?status=done',
      { method: 'GET', url: '/jobs?status=done' },
      'querystring/status must be one of: queued, active, retrying, completed, failed, cancelled',
    ],
    [
      'GET /logs?status=done',
      { method: 'GET', url: '/logs?status=done' },
      'querystring/status must be one of: queued, active, retrying, completed, failed, cancelled, rejected, removed',
    ],
    [
      'POST /tokens with role "root"',
      { method: 'POST', url: '/tokens', payload: { name: 'would-be-root', role: 'root' } },
      'body/role must be one of: admin, operator, viewer',
    ],
  ] as const)('%s is refused naming the values allowed', async (_case, request, message) => {
    const error = expectError(await api.app.inject(request), 400, 'VALIDATION_FAILED');

    expect(error.message).toBe(message);
  });
});

describe('a root whose name is not ASCII', () => {
  let app: FastifyInstance;
  const nfc = 'donn\u00e9es';
  const nfd = 'donne\u0301es';

  beforeAll(async () => {
    app = authorise(
      await buildApp({ config: configWith(api.env, { SOURCE_ROOTS: join(sources, nfc) }) }),
      api.adminToken,
    );
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
  });

  it('accepts the name as configured', async () => {
    const res = await app.inject({ method: 'POST', url: '/backup', payload: { source: join(sources, nfc, 'x') } });

    expect(res.statusCode, res.body).toBe(202);
  });

  it('refuses another normalisation of it: paths are compared byte for byte, as the file system does', async () => {
    const res = await app.inject({ method: 'POST', url: '/backup', payload: { source: join(sources, nfd, 'x') } });

    expectError(res, 400, 'SOURCE_OUTSIDE_ROOTS');
  });
});
