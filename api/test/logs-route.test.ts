import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  allPages,
  collect,
  expectError,
  finishThroughLog,
  ISO_DATE,
  logRows,
  matching,
  queueBackup,
  startApi,
  type ApiHarness,
  type LogRowBody,
  type PageBody,
} from './helpers.js';

let api: ApiHarness;
let folder: string;
/** A job with the whole history queued → active → completed. */
let finished: string;
let pending: string[];

beforeAll(async () => {
  api = await startApi();
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
  pending = [];
  for (let i = 0; i < 3; i += 1) pending.push(await queueBackup(api.app, { source: folder, destination: `job-${i}` }));
  finished = await queueBackup(api.app, { source: folder });
  await finishThroughLog(api.app, finished, {
    status: 'completed',
    snapshot: '/backups/data/snap',
    files: 2,
    bytes: 10,
    durationMs: 5,
  });
  const refused = await api.app.inject({ method: 'POST', url: '/backup', payload: { source: '/etc' } });
  expect(refused.statusCode).toBe(400);
});

afterAll(async () => {
  await api?.close();
});

async function logs(query: string) {
  return api.app.inject({ method: 'GET', url: `/logs${query}` });
}

async function rows(query: string): Promise<LogRowBody[]> {
  return collect<LogRowBody>(api.app, `/logs${query}`);
}

async function page(query: string): Promise<PageBody<LogRowBody>> {
  const res = await logs(query);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<PageBody<LogRowBody>>();
}

describe('GET /logs', () => {
  it('lists every row newest first in the row shape dashboards read', async () => {
    const stored = await logRows(api.db);

    const items = await rows('?limit=50');

    expect(items.map((row) => row.id)).toEqual(stored.map((row) => row.id).reverse());
    expect(items.find((row) => row.jobId === finished && row.status === 'completed')).toMatchObject({
      date: matching(ISO_DATE),
      action: 'backup',
      parameter: folder,
      attempt: 1,
      worker: 'test-worker',
      destination: 'data',
      snapshot: '/backups/data/snap',
      files: 2,
      bytes: 10,
      durationMs: 5,
    });
    expect(items[0]).toMatchObject({
      status: 'rejected',
      jobId: null,
      parameter: '/etc',
      code: 'SOURCE_OUTSIDE_ROOTS',
    });
  });

  it('filters by job id: that job history only', async () => {
    const { items } = await page(`?jobId=${finished}`);

    expect(items.map((row) => row.status)).toEqual(['completed', 'active', 'queued']);
    expect(items.every((row) => row.jobId === finished)).toBe(true);
  });

  it('filters by status', async () => {
    const queued = await rows('?status=queued&limit=50');
    const rejected = await page('?status=rejected');

    expect(queued.map((row) => row.jobId).sort()).toEqual([...pending, finished].sort());
    expect(queued.every((row) => row.status === 'queued')).toBe(true);
    expect(rejected.items).toHaveLength(1);
    expect(rejected.items[0]).toMatchObject({ status: 'rejected', jobId: null });
  });

  it('combines job id and status filters', async () => {
    const { items } = await page(`?jobId=${finished}&status=active`);

    expect(items.map((row) => [row.jobId, row.status])).toEqual([[finished, 'active']]);
  });

  it('filters by time: since includes the instant, until excludes it', async () => {
    const all = await rows('?limit=50');
    const middle = all[Math.floor(all.length / 2)];
    if (!middle) throw new Error('no rows');
    const at = middle.date;

    const since = await rows(`?since=${encodeURIComponent(at)}&limit=50`);
    const until = await rows(`?until=${encodeURIComponent(at)}&limit=50`);

    expect(since.map((row) => row.id)).toContain(middle.id);
    expect(since.every((row) => row.date >= at)).toBe(true);
    expect(until.every((row) => row.date < at)).toBe(true);
    expect(since.length + until.length).toBe(all.length);
  });

  it('answers an empty page for a since after every row', async () => {
    const future = new Date(Date.now() + 3_600_000).toISOString();

    expect(await page(`?since=${encodeURIComponent(future)}`)).toEqual({ items: [], nextCursor: null });
  });

  it('accepts a since with a time-zone offset', async () => {
    const all = await rows('?limit=50');
    const offsetPast = '2000-01-01T02:00:00+02:00';

    expect(await rows(`?since=${encodeURIComponent(offsetPast)}&limit=50`)).toEqual(all);
  });

  it('pages with limit and cursor: newest first, ids strictly decreasing, no overlap, nothing missed', async () => {
    const all = (await rows('?limit=50')).map((row) => row.id);

    const pages = await allPages<LogRowBody>(api.app, '/logs?limit=3');

    const ids = pages.flatMap((p) => p.items.map((row) => row.id));
    expect(ids).toEqual(all);
    expect(ids.every((id, i) => i === 0 || id < (ids[i - 1] ?? 0))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(pages.slice(0, -1).every((p) => p.items.length === 3)).toBe(true);
    expect(pages.at(-1)?.nextCursor).toBeNull();
  });

  it('pages within a filter', async () => {
    const pages = await allPages<LogRowBody>(api.app, '/logs?status=queued&limit=1');

    const jobIds = pages.flatMap((p) => p.items.map((row) => row.jobId));
    expect(jobIds).toEqual([finished, ...[...pending].reverse()]);
  });

  it.each([
    ['a since that is not a date-time', '?since=yesterday'],
    ['an unknown query parameter', '?level=debug'],
    ['an unknown status', '?status=done'],
    ['an SQL-injection-looking job id', `?jobId=${encodeURIComponent("x' OR '1'='1")}`],
    ['an SQL-injection-looking status', `?status=${encodeURIComponent("queued' OR '1'='1")}`],
    ['an SQL-injection-looking limit', `?limit=${encodeURIComponent('1; DROP TABLE log')}`],
    ['limit 0', '?limit=0'],
    ['limit 5000', '?limit=5000'],
    ['a cursor of 0', '?cursor=0'],
  ])('answers 400 for %s', async (_case, query) => {
    const error = expectError(await logs(query), 400, 'VALIDATION_FAILED');
    expect(error.message).toMatch(/querystring/);
  });

  it('still has the log table after the injection attempts', async () => {
    expect((await rows('?limit=50')).length).toBe((await logRows(api.db)).length);
  });
});
