import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { illFormedString } from '../src/well-formed.js';
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
} from './helpers.js';

// What a request may say as text: well-formed Unicode, instants a Date can hold, names a file
// system can hold; and every request counts against the rate limit, unknown URLs too.
let api: ApiHarness;
let folder: string;

beforeAll(async () => {
  api = await startApi();
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
});

afterAll(async () => {
  await api?.close();
});

/** A JSON body written by hand, so it can hold escapes JSON.stringify would never produce. */
function postRaw(url: string, json: string) {
  return api.app.inject({ method: 'POST', url, payload: json, headers: { 'content-type': 'application/json' } });
}

/** The answer can be read back by any JSON client: no lone surrogate, raw or escaped. */
function expectReadable(body: string): void {
  expect(body.isWellFormed()).toBe(true);
  expect(body).not.toMatch(/\\u[dD][89a-fA-F][0-9a-fA-F]{2}/);
}

describe('strings that are not well-formed Unicode (a lone surrogate) are refused with 400', () => {
  it.each([
    ['the source', '/backup', `{"source": "SOURCE/\\ud800"}`, /body\/source must be well-formed Unicode/],
    ['the destination', '/backup', `{"source": "SOURCE", "destination": "a\\udc00"}`, /body\/destination/],
    ['a property name', '/backup', `{"source": "SOURCE", "\\ud83d": 1}`, /property names/],
    ['a token name', '/tokens', `{"name": "ci\\ud800", "role": "viewer"}`, /body\/name/],
    [
      'a token root, inside an array',
      '/tokens',
      `{"name": "rooted", "role": "operator", "sourceRoots": ["SOURCE", "SOURCE/\\udfff"]}`,
      /body\/sourceRoots\/1/,
    ],
  ])('in %s', async (_case, url, json, says) => {
    const lastIdBefore = await lastLogId(api.db);
    const countsBefore = await api.app.backupQueue.getJobCounts();

    const res = await postRaw(url, json.replaceAll('SOURCE', folder));

    expect(expectError(res, 400, 'VALIDATION_FAILED').message).toMatch(says);
    expectReadable(res.body);
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    const rows = await logRows(api.db, 'id > ?', [lastIdBefore]);
    expect(rows).toEqual(url === '/backup' ? [containing<StoredLogRow>({ status: 'rejected' })] : []);
  });

  it('keeps well-formed text of any script, surrogate pairs (emoji) included', async () => {
    const source = join(api.env.sources, 'Ünïcødé 🙂 データ');
    await mkdir(source);

    const res = await api.app.inject({ method: 'POST', url: '/backup', payload: { source, destination: 'unicode' } });

    expect(res.statusCode, res.body).toBe(202);
  });

  it('leaves every page of GET /logs and GET /jobs readable after such attempts', async () => {
    await postRaw('/backup', `{"source": "${folder}/\\ud800"}`);

    for (const url of ['/logs?limit=1000', '/jobs?limit=100']) {
      const res = await api.app.inject({ method: 'GET', url });
      expect(res.statusCode, res.body).toBe(200);
      expectReadable(res.body);
    }
  });

  it('answers a surrogate encoded in a URL (CESU-8 bytes) with 400, in readable JSON', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/logs?jobId=%ED%A0%80' });

    expectError(res, 400, 'VALIDATION_FAILED');
    expectReadable(res.body);
  });

  it('finds one anywhere in a body, however deeply nested, without exhausting the stack', () => {
    let deep: unknown = ['\ud800'];
    for (let i = 0; i < 100_000; i += 1) deep = [deep];

    expect(illFormedString({ a: [{ b: 'fine' }, { 'c/~d': ['x', '\udc00'] }] })).toMatchObject({
      instancePath: '/a/1/c~1~0d/1',
    });
    expect(illFormedString(deep)?.instancePath).toMatch(/^(\/0){100001}$/);
    expect(illFormedString({ a: ['🙂', { b: 'データ' }], n: 1, z: null })).toBeNull();
  });
});

describe('instants in /logs (since, until)', () => {
  it.each([
    ['a leap second', 'since', '2026-06-30T23:59:60Z'],
    ['a leap second', 'until', '2026-12-31T23:59:60Z'],
    ['an offset without minutes', 'since', '2026-01-01T00:00:00+01'],
    ['the 30th of February', 'since', '2026-02-30T00:00:00Z'],
    ['hour 24', 'until', '2026-01-01T24:00:00Z'],
  ])('refuses %s as %s with 400 VALIDATION_FAILED', async (_case, name, value) => {
    const res = await api.app.inject({ method: 'GET', url: '/logs', query: { [name]: value } });

    expect(expectError(res, 400, 'VALIDATION_FAILED').message).toContain(name);
  });

  it.each([
    ['Z', '2026-06-30T23:59:59.999Z'],
    ['an offset', '2026-06-30T23:59:59+02:00'],
    ['a leap day', '2028-02-29T00:00:00Z'],
  ])('accepts an instant with %s', async (_case, value) => {
    const res = await api.app.inject({ method: 'GET', url: '/logs', query: { since: value, until: value } });

    expect(res.statusCode, res.body).toBe(200);
  });
});

describe('names longer than a file system holds (255 bytes a segment) are refused at submission', () => {
  const post = (payload: object) => api.app.inject({ method: 'POST', url: '/backup', payload });

  it('refuses a destination segment of 256 bytes, accepts one of 255', async () => {
    expectError(await post({ source: folder, destination: `ok/${'d'.repeat(256)}` }), 400, 'INVALID_DESTINATION');
    expect((await post({ source: folder, destination: `ok/${'d'.repeat(255)}` })).statusCode).toBe(202);
  });

  it('counts a source segment in UTF-8 bytes: 128 × "é" (256 bytes) is refused, 127 × "é" + "a" (255) accepted', async () => {
    const tooLong = await post({ source: join(folder, 'é'.repeat(128)), destination: 'long-names' });
    const longest = await post({ source: join(folder, `${'é'.repeat(127)}a`), destination: 'long-names' });

    expect(expectError(tooLong, 400, 'INVALID_SOURCE').message).toMatch(/255 bytes/);
    expect(longest.statusCode, longest.body).toBe(202);
  });
});

describe('the rate limit', () => {
  let limited: FastifyInstance;

  beforeAll(async () => {
    // A token of its own: counts are per token across replicas, and the harness's admin has spent its own.
    const token = await issueToken(api, 'counted', 'viewer');
    limited = authorise(await buildApp({ config: configWith(api.env, { RATE_LIMIT_PER_MINUTE: '2' }) }), token);
    await limited.ready();
  });

  afterAll(async () => {
    await limited?.close();
  });

  it('counts requests to unknown URLs like any other: 429 once the token is over, on known routes too', async () => {
    const first = await limited.inject({ method: 'GET', url: '/no-such-route' });
    const second = await limited.inject({ method: 'GET', url: '/nor/this' });
    const third = await limited.inject({ method: 'GET', url: '/no-such-route' });
    const known = await limited.inject({ method: 'GET', url: '/jobs' });

    expect([first.statusCode, second.statusCode]).toEqual([404, 404]);
    expectError(third, 429, 'RATE_LIMITED');
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    expectError(known, 429, 'RATE_LIMITED');
  });
});
