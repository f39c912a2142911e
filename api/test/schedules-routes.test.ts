import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScheduleQueue, type ScheduleQueue } from '../src/schedules/schedule-installer.js';
import { expectError, ISO_DATE, issueToken, matching, startApi, type ApiHarness } from './helpers.js';

// The schedule routes: what is stored and answered, who may do what, and every refusal.
// SCHEDULE_MIN_INTERVAL_SECONDS is 120 here, so a cron that runs every minute is too frequent.

interface ScheduleBody {
  name: string;
  cron: string;
  timezone: string;
  backup: { source: string; destination?: string; incremental?: boolean; exclude?: string[] };
  actor: string;
  createdAt: string;
  updatedAt: string;
  nextRunAt: string | null;
  lastJobId: string | null;
  lastStatus: string | null;
}

let api: ApiHarness;
let redis: Redis;
let queue: ScheduleQueue;
let data: string;
let teamA: string;
let operator: string;
let other: string;
let viewer: string;
let narrowed: string;

beforeAll(async () => {
  api = await startApi({ SCHEDULE_MIN_INTERVAL_SECONDS: '120' });
  data = join(api.env.sources, 'data');
  teamA = join(api.env.sources, 'team-a');
  await mkdir(data);
  await writeFile(join(data, 'a.txt'), 'a');
  await mkdir(teamA);
  operator = await issueToken(api, 'op', 'operator');
  other = await issueToken(api, 'other-op', 'operator');
  viewer = await issueToken(api, 'watcher', 'viewer');
  narrowed = await issueToken(api, 'team-a-op', 'operator', [teamA]);
  redis = new Redis(api.env.redisUrl, { maxRetriesPerRequest: null });
  queue = createScheduleQueue(api.env.config, redis);
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await api?.close();
});

const as = (token: string | null) => ({
  post: (url: string, payload: object) => api.request(token, { method: 'POST', url, payload }),
  put: (url: string, payload: object) => api.request(token, { method: 'PUT', url, payload }),
  get: (url: string) => api.request(token, { method: 'GET', url }),
  delete: (url: string) => api.request(token, { method: 'DELETE', url }),
});
const admin = () => as(api.adminToken);

async function create(token: string, body: object): Promise<ScheduleBody> {
  const res = await as(token).post('/schedules', body);
  expect(res.statusCode, res.body).toBe(201);
  return res.json<ScheduleBody>();
}

describe('creating and reading schedules', () => {
  it('creates a schedule: 201, its view and Location, UTC by default, the next slot, and its scheduler in Redis', async () => {
    const before = Date.now();
    const res = await admin().post('/schedules', {
      name: 'nightly.data',
      cron: '30  2 * * *',
      backup: { source: data, destination: 'nightly', exclude: ['*.tmp'] },
    });

    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers.location).toBe('/schedules/nightly.data');
    const view = res.json<ScheduleBody>();
    expect(view).toEqual({
      name: 'nightly.data',
      cron: '30 2 * * *',
      timezone: 'UTC',
      backup: { source: data, destination: 'nightly', exclude: ['*.tmp'] },
      actor: 'admin',
      createdAt: matching(ISO_DATE),
      updatedAt: matching(ISO_DATE),
      nextRunAt: matching(/T02:30:00\.000Z$/),
      lastJobId: null,
      lastStatus: null,
    });
    const next = Date.parse(view.nextRunAt ?? '');
    expect(next).toBeGreaterThan(before);
    expect(next - before).toBeLessThanOrEqual(86_400_000);

    expect((await admin().get('/schedules/nightly.data')).json()).toEqual(view);
    const scheduler = await queue.getJobScheduler('nightly.data');
    expect(scheduler).toMatchObject({ pattern: '30 2 * * *', tz: 'UTC', next });
  });

  it('reads the cron in the given timezone', async () => {
    const view = await create(api.adminToken, {
      name: 'paris-noon',
      cron: '0 0 12 * * *',
      timezone: 'Europe/Paris',
      backup: { source: data, destination: 'paris' },
    });

    const hour = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Paris', hour: 'numeric', hourCycle: 'h23' });
    expect(hour.format(new Date(view.nextRunAt ?? ''))).toBe('12');
    expect(await queue.getJobScheduler('paris-noon')).toMatchObject({ pattern: '0 0 12 * * *', tz: 'Europe/Paris' });
  });

  it('refuses a taken name with 409 SCHEDULE_NAME_TAKEN and keeps the first schedule', async () => {
    await create(api.adminToken, { name: 'taken', cron: '0 3 * * *', backup: { source: data, destination: 'taken' } });

    const error = expectError(
      await as(operator).post('/schedules', { name: 'taken', cron: '0 4 * * *', backup: { source: data } }),
      409,
      'SCHEDULE_NAME_TAKEN',
    );
    expect(error.message).toContain('"taken"');
    expect((await admin().get('/schedules/taken')).json<ScheduleBody>()).toMatchObject({
      cron: '0 3 * * *',
      actor: 'admin',
    });
  });

  it('lists schedules by name; admins and viewers see all, an operator only its own', async () => {
    await create(operator, { name: 'b-op', cron: '0 5 * * *', backup: { source: data, destination: 'op-data' } });
    await create(other, { name: 'a-other', cron: '0 6 * * *', backup: { source: data, destination: 'other-data' } });

    const names = async (token: string) =>
      (await as(token).get('/schedules')).json<{ items: ScheduleBody[] }>().items.map((item) => item.name);
    const all = await names(api.adminToken);
    expect(all).toEqual([...all].sort());
    expect(all).toEqual(expect.arrayContaining(['a-other', 'b-op', 'nightly.data', 'taken']));
    expect(await names(viewer)).toEqual(all);
    expect(await names(operator)).toEqual(['b-op']);
    expect(await names(other)).toEqual(['a-other']);
  });

  it("answers 404 SCHEDULE_NOT_FOUND for an unknown schedule, and to an operator for another's", async () => {
    expectError(await admin().get('/schedules/nobody'), 404, 'SCHEDULE_NOT_FOUND');
    expect((await as(viewer).get('/schedules/b-op')).statusCode).toBe(200);
    expectError(await as(other).get('/schedules/b-op'), 404, 'SCHEDULE_NOT_FOUND');
    expectError(
      await as(other).put('/schedules/b-op', { cron: '0 7 * * *', backup: { source: data } }),
      404,
      'SCHEDULE_NOT_FOUND',
    );
    expectError(await as(other).delete('/schedules/b-op'), 404, 'SCHEDULE_NOT_FOUND');
    expect((await admin().get('/schedules/b-op')).json<ScheduleBody>().cron).toBe('0 5 * * *');
  });

  it('lets viewers read but not create, change or delete', async () => {
    const body = { name: 'by-viewer', cron: '0 1 * * *', backup: { source: data } };
    expectError(await as(viewer).post('/schedules', body), 403, 'FORBIDDEN');
    expectError(await as(viewer).put('/schedules/b-op', body), 403, 'FORBIDDEN');
    expectError(await as(viewer).delete('/schedules/b-op'), 403, 'FORBIDDEN');
    expectError(await as(null).get('/schedules'), 401, 'UNAUTHENTICATED');
  });
});

describe('replacing and deleting schedules', () => {
  it('replaces cron, timezone and backup; the creator stays the actor and Redis runs the new cron', async () => {
    const created = await create(operator, {
      name: 'op-hourly',
      cron: '0 * * * *',
      backup: { source: data, destination: 'op-data' },
    });

    const res = await admin().put('/schedules/op-hourly', {
      cron: '15 */2 * * *',
      timezone: 'America/New_York',
      backup: { source: data, destination: 'op-data', incremental: false },
    });

    expect(res.statusCode, res.body).toBe(200);
    const view = res.json<ScheduleBody>();
    expect(view).toMatchObject({
      name: 'op-hourly',
      cron: '15 */2 * * *',
      timezone: 'America/New_York',
      backup: { source: data, destination: 'op-data', incremental: false },
      actor: 'op',
      createdAt: created.createdAt,
    });
    expect(view.nextRunAt).toMatch(/:15:00\.000Z$/);
    expect(await queue.getJobScheduler('op-hourly')).toMatchObject({
      pattern: '15 */2 * * *',
      tz: 'America/New_York',
    });
  });

  it("checks a replaced backup with the creator's rights, not the caller's", async () => {
    await create(narrowed, { name: 'team-a', cron: '0 1 * * *', backup: { source: teamA } });

    const error = expectError(
      await admin().put('/schedules/team-a', { cron: '0 1 * * *', backup: { source: data } }),
      400,
      'SOURCE_OUTSIDE_ROOTS',
    );
    expect(error.message).toContain('team-a-op');
    expect((await admin().get('/schedules/team-a')).json<ScheduleBody>().backup).toEqual({ source: teamA });
  });

  it('deletes a schedule: 204, then 404, and its scheduler leaves Redis', async () => {
    await create(operator, {
      name: 'short-lived',
      cron: '0 4 * * *',
      backup: { source: data, destination: 'op-data' },
    });
    expect(await queue.getJobScheduler('short-lived')).toBeDefined();

    const res = await as(operator).delete('/schedules/short-lived');

    expect(res.statusCode, res.body).toBe(204);
    expect(res.body).toBe('');
    expectError(await admin().get('/schedules/short-lived'), 404, 'SCHEDULE_NOT_FOUND');
    expectError(await as(operator).delete('/schedules/short-lived'), 404, 'SCHEDULE_NOT_FOUND');
    expect(await queue.getJobScheduler('short-lived')).toBeUndefined();
  });
});

describe('bad schedules are refused with 400 INVALID_SCHEDULE, saying what is wrong', () => {
  const refused = async (cron: string, timezone?: string) => {
    const name = `bad-${Math.random().toString(36).slice(2)}`;
    const body = { name, cron, ...(timezone === undefined ? {} : { timezone }), backup: { source: data } };
    const error = expectError(await admin().post('/schedules', body), 400, 'INVALID_SCHEDULE');
    // Nothing was stored or installed.
    expectError(await admin().get(`/schedules/${name}`), 404, 'SCHEDULE_NOT_FOUND');
    expect(await queue.getJobScheduler(name)).toBeUndefined();
    return error.message;
  };

  it.each([
    ['4 fields', '0 2 * *', 'has 4 fields'],
    ['7 fields', '0 0 2 * * * 2030', 'has 7 fields'],
  ])('a cron with %s', async (_case, cron, said) => {
    const message = await refused(cron);
    expect(message).toContain(said);
    expect(message).toContain('5 (minute hour day-of-month month day-of-week) or 6 (second first)');
  });

  it.each([
    ['second', '61 0 2 * * *', 'cron field "second" has "61": allowed 0-59'],
    ['minute', '60 2 * * *', 'cron field "minute" has "60": allowed 0-59'],
    ['hour', '0 25 * * *', 'cron field "hour" has "25": allowed 0-23'],
    ['day of month', '0 2 32 * *', 'cron field "day-of-month" has "32": allowed 1-31'],
    ['month', '0 2 1 13 *', 'cron field "month" has "13": allowed 1-12'],
    ['day of week', '0 2 * * 8', 'cron field "day-of-week" has "8": allowed 0-7'],
    ['day of week, by name', '0 2 * * fun', 'cron field "day-of-week" has "fun"'],
    ['minute, a step of 0', '*/0 2 * * *', 'cron field "minute" has "*/0"'],
  ])('a bad %s field, named', async (_case, cron, said) => {
    expect(await refused(cron)).toContain(said);
  });

  it('a cron that never runs', async () => {
    expect(await refused('0 0 30 2 *')).toContain('never runs');
  });

  it('a timezone that is not an IANA timezone, named', async () => {
    expect(await refused('0 2 * * *', 'Mars/Olympus_Mons')).toContain('timezone "Mars/Olympus_Mons"');
  });

  it.each([
    ['every minute', '* * * * *', '1 min'],
    ['every 30 seconds', '*/30 * * * * *', '30 s'],
    // Runs an hour apart but for one minute in every hour: the closest two runs decide.
    ['irregularly', '0,1 * * * *', '1 min'],
  ])('runs closer than SCHEDULE_MIN_INTERVAL_SECONDS: %s', async (_case, cron, gap) => {
    const message = await refused(cron);
    expect(message).toContain(`as little as ${gap} apart`);
    expect(message).toContain('at least 2 min apart (SCHEDULE_MIN_INTERVAL_SECONDS)');
  });

  it('accepts runs exactly the minimum apart', async () => {
    await create(api.adminToken, { name: 'every-2-min', cron: '*/2 * * * *', backup: { source: data } });
  });

  it.each([
    ['a name with a slash', { name: 'a/b' }],
    ['a name of dots only', { name: '..' }],
    ['a name over 128 characters', { name: 'n'.repeat(129) }],
    ['no cron', { cron: undefined }],
    ['an unknown field', { every: '1h' }],
  ])('%s is refused with 400 VALIDATION_FAILED', async (_case, change) => {
    const body = { name: 'valid-name', cron: '0 2 * * *', backup: { source: data }, ...change };
    expectError(await admin().post('/schedules', body), 400, 'VALIDATION_FAILED');
  });
});

describe('the backup of a schedule is checked as POST /backup checks it', () => {
  it.each([
    ['a relative source', () => ({ source: 'relative/path' })],
    ['a source outside SOURCE_ROOTS', () => ({ source: '/etc' })],
    ['a source inside BACKUP_ROOT', () => ({ source: join(api.env.backups, 'x') })],
    ['a destination with ..', () => ({ source: data, destination: '../escape' })],
    ['a destination that is not a relative name', () => ({ source: data, destination: '/abs' })],
    ['an unknown backup field', () => ({ source: data, compress: true })],
    ['more than 100 exclude patterns', () => ({ source: data, exclude: Array.from({ length: 101 }, () => '*.tmp') })],
    ['an exclude pattern over 1024 characters', () => ({ source: data, exclude: ['x'.repeat(1025)] })],
    ['an empty exclude pattern', () => ({ source: data, exclude: [''] })],
  ])('%s: the same status and code as POST /backup', async (_case, backup) => {
    const direct = await admin().post('/backup', backup());
    expect(direct.statusCode).toBe(400);
    const name = `backup-${Math.random().toString(36).slice(2)}`;

    const res = await admin().post('/schedules', { name, cron: '0 2 * * *', backup: backup() });

    const { code } = direct.json<{ code: string }>();
    expectError(res, 400, code);
    expectError(await admin().get(`/schedules/${name}`), 404, 'SCHEDULE_NOT_FOUND');
  });

  it('refuses an operator a destination another token owns: 403 DESTINATION_NOT_OWNED, as POST /backup does', async () => {
    await create(api.adminToken, { name: 'owned', cron: '0 2 * * *', backup: { source: data, destination: 'admins' } });

    expectError(
      await as(operator).post('/backup', { source: data, destination: 'admins' }),
      403,
      'DESTINATION_NOT_OWNED',
    );
    expectError(
      await as(operator).post('/schedules', {
        name: 'into-admins',
        cron: '0 2 * * *',
        backup: { source: data, destination: 'admins' },
      }),
      403,
      'DESTINATION_NOT_OWNED',
    );
  });

  it("refuses a source outside an operator's own roots", async () => {
    const error = expectError(
      await as(narrowed).post('/schedules', { name: 'escape', cron: '0 2 * * *', backup: { source: data } }),
      400,
      'SOURCE_OUTSIDE_ROOTS',
    );
    expect(error.message).toContain('team-a-op');
  });

  it("refuses to change a schedule whose creator's token is revoked", async () => {
    const token = await issueToken(api, 'leaving-op', 'operator');
    await create(token, { name: 'orphan', cron: '0 2 * * *', backup: { source: data, destination: 'leaving' } });
    const record = await api.app.tokenStore.byName('leaving-op');
    expect((await admin().delete(`/tokens/${record?.id}`)).statusCode).toBe(200);

    const error = expectError(
      await admin().put('/schedules/orphan', { cron: '0 3 * * *', backup: { source: data, destination: 'leaving' } }),
      400,
      'INVALID_SCHEDULE',
    );
    expect(error.message).toContain('token "leaving-op" that created the schedule is revoked');
    // It can still be read and deleted.
    expect((await admin().get('/schedules/orphan')).json<ScheduleBody>().cron).toBe('0 2 * * *');
    expect((await admin().delete('/schedules/orphan')).statusCode).toBe(204);
  });
});
