import { join, posix } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDestination, checkSourcePath, effectiveRoots, isInside, isInsideRoots } from '@coffer/shared';
import { issueToken, queuedBackup, startApi, type ApiHarness } from './helpers.js';

// Property-based: whatever a client sends, the API answers 2xx or 4xx (never 5xx), and a job
// it queues reads only inside the roots (the token's own, when it has some) and writes only
// inside BACKUP_ROOT.
let api: ApiHarness;
let sources: string;
let teamARoot: string;
const tokens: Record<'admin' | 'team-a', string> = { admin: '', 'team-a': '' };

beforeAll(async () => {
  api = await startApi();
  sources = api.env.sources;
  teamARoot = join(sources, 'team-a');
  tokens.admin = api.adminToken;
  tokens['team-a'] = await issueToken(api, 'team-a', 'operator', [teamARoot]);
});

afterAll(async () => {
  await api?.close();
});

/** Path pieces chosen to tempt the policy, mixed with arbitrary text. */
const segment = fc.oneof(
  fc.constantFrom(
    '..',
    '.',
    '',
    '%2e%2e',
    '..%2f',
    '．．',
    '‥',
    '..∕..',
    '\u0000',
    '..\u0000',
    'data',
    'team-a',
    'team-b',
    'team-a-evil',
    'café',
    'cafe\u0301',
    '~',
    '..\\..',
    ' ..',
    '..\u200b',
    'etc',
  ),
  fc.string({ maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 4 }),
);

function pathArbitrary() {
  const inside = fc.constantFrom(
    () => sources,
    () => `${sources}/`,
    () => `/${sources}`,
    () => teamARoot,
  );
  const outside = fc.constantFrom(
    () => `${sources}-evil`,
    () => api.env.backups,
    () => '/',
    () => '/etc',
    () => '',
    () => '.',
  );
  const start = fc.oneof({ weight: 3, arbitrary: inside }, { weight: 1, arbitrary: outside });
  return fc
    .tuple(start, fc.array(segment, { maxLength: 5 }))
    .map(([prefix, segments]) => [prefix(), ...segments].join('/'));
}

function bodyArbitrary() {
  const destination = fc.oneof(
    fc.array(segment, { minLength: 1, maxLength: 3 }).map((segments) => segments.join('/')),
    fc.constantFrom('nightly', 'a/b-c.d', '../x', '/abs', 'x'.repeat(1025)),
  );
  const object = fc
    .tuple(
      fc.oneof({ weight: 6, arbitrary: pathArbitrary() }, { weight: 1, arbitrary: fc.anything() }),
      fc.oneof(
        { weight: 4, arbitrary: fc.constant(null) },
        { weight: 3, arbitrary: destination },
        { weight: 1, arbitrary: fc.anything() },
      ),
      fc.oneof(
        { weight: 8, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 8 }), fc.anything(), { maxKeys: 2 }) },
      ),
    )
    .map(([source, target, extra]) => ({ ...extra, source, ...(target === null ? {} : { destination: target }) }));
  return fc.oneof(
    { weight: 8, arbitrary: object.map((value) => JSON.stringify(value)) },
    { weight: 1, arbitrary: fc.json() },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  );
}

describe('any POST /backup', () => {
  it('is answered 2xx or 4xx, and only ever queues a source inside the roots and a destination inside BACKUP_ROOT', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        bodyArbitrary(),
        fc.constantFrom('admin' as const, 'admin' as const, 'team-a' as const),
        fc.oneof(
          { weight: 8, arbitrary: fc.constant('application/json') },
          { weight: 1, arbitrary: fc.constantFrom('application/json; charset=utf-8', 'text/plain') },
        ),
        async (payload, who, contentType) => {
          const waitingBefore = (await api.app.backupQueue.getJobCounts('waiting')).waiting ?? 0;

          const res = await api.request(tokens[who], {
            method: 'POST',
            url: '/backup',
            headers: { 'content-type': contentType },
            payload,
          });

          expect(res.statusCode, res.body).toBeGreaterThanOrEqual(200);
          expect(res.statusCode, res.body).toBeLessThan(500);
          if (res.statusCode !== 202) {
            expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
            expect((await api.app.backupQueue.getJobCounts('waiting')).waiting ?? 0).toBe(waitingBefore);
            return;
          }
          accepted += 1;
          const data = await queuedBackup(api.app, res.json<{ id: string }>().id);
          if (!data) throw new Error('a 202 without a job');
          const roots = who === 'admin' ? api.env.config.sourceRoots : [teamARoot];
          expect(checkSourcePath(data.source)).toBeNull();
          expect(posix.normalize(data.source)).toBe(data.source.length > 1 ? data.source.replace(/\/$/, '') : '/');
          expect(isInsideRoots(data.source, roots)).toBe(true);
          expect(isInsideRoots(posix.resolve(data.source), roots)).toBe(true);
          expect(checkDestination(data.destination)).toBeNull();
          expect(isInside(posix.resolve(api.env.backups, data.destination), api.env.backups)).toBe(true);
          expect(data.actor).toBe(who);
          expect(data.sourceRoots).toEqual(who === 'admin' ? undefined : [teamARoot]);
        },
      ),
      { numRuns: 200 },
    );
    // The generators must reach the interesting side too, not only refusals.
    expect(accepted).toBeGreaterThan(10);
  });
});

describe('the path policy', () => {
  it('lets through only paths that resolve inside the effective roots', () => {
    const roots = ['/srv/data', '/mnt/b'];
    fc.assert(
      fc.property(
        fc.constantFrom('/srv/data', '/srv/data/', '/srv', '/mnt/b', '/mnt/bb', '/', ''),
        fc.array(segment, { maxLength: 6 }),
        fc.option(fc.constantFrom(['/srv/data/team'], ['/etc'], ['/srv/data/team', '/mnt'])),
        (prefix, segments, tokenRoots) => {
          const path = [prefix, ...segments].join('/');
          const allowed = effectiveRoots(roots, tokenRoots);
          if (checkSourcePath(path) !== null) return;
          const normal = posix.normalize(path);
          if (!isInsideRoots(normal, allowed)) return;
          const resolved = posix.resolve(normal);
          expect(allowed.some((root) => resolved === root || resolved.startsWith(`${root}/`))).toBe(true);
          // A token's roots narrow SOURCE_ROOTS, never widen them.
          expect(isInsideRoots(resolved, roots)).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
