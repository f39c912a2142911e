import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type RunningWorker } from '@coffer/worker';
import { createMysqlPool } from '@coffer/shared';
import { createTestEnvironment, waitFor } from '../../test/helpers/environment.js';
import { buildApp } from '../src/app.js';
import { createToken } from '../src/auth/token-admin.js';
import { createTokenRepository } from '../src/auth/token-repository.js';
import {
  createScheduleInstaller,
  createScheduleQueue,
  type ScheduleQueue,
} from '../src/schedules/schedule-installer.js';
import { createScheduleStore } from '../src/schedules/schedule-store.js';
import { authorise, configWith, createOutage, issueToken, lastLogId, startApi, type ApiHarness } from './helpers.js';

// Schedules at work: each run an ordinary backup job, refused runs, one run at a time, and the
// schedulers installed again in a Redis that lost them. Runs come every second or two here
// (SCHEDULE_MIN_INTERVAL_SECONDS=1).

interface ScheduleBody {
  name: string;
  actor: string;
  lastJobId: string | null;
  lastStatus: string | null;
}

interface ScheduledRow {
  id: number;
  status: string;
  job_id: string | null;
  code: string | null;
  message: string | null;
  parameter: string;
  actor: string | null;
}

let api: ApiHarness;
let redis: Redis;
let queue: ScheduleQueue;
let data: string;

beforeAll(async () => {
  api = await startApi({ SCHEDULE_MIN_INTERVAL_SECONDS: '1' });
  data = join(api.env.sources, 'data');
  await mkdir(join(data, 'sub'), { recursive: true });
  await writeFile(join(data, 'sub', 'a.txt'), 'scheduled');
  redis = new Redis(api.env.redisUrl, { maxRetriesPerRequest: null });
  queue = createScheduleQueue(api.env.config, redis);
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await api?.close();
});

async function create(token: string, name: string, cron: string, destination: string): Promise<void> {
  const res = await api.request(token, {
    method: 'POST',
    url: '/schedules',
    payload: { name, cron, backup: { source: data, destination } },
  });
  expect(res.statusCode, res.body).toBe(201);
}

async function remove(name: string): Promise<void> {
  expect((await api.app.inject({ method: 'DELETE', url: `/schedules/${name}` })).statusCode).toBe(204);
}

async function schedule(name: string): Promise<ScheduleBody> {
  const res = await api.app.inject({ method: 'GET', url: `/schedules/${name}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<ScheduleBody>();
}

/** The log rows that name the schedule, oldest first, straight from MySQL. */
async function scheduledRows(name: string, afterId = 0): Promise<ScheduledRow[]> {
  const [rows] = await api.db.query<RowDataPacket[]>(
    'SELECT id, status, job_id, code, message, parameter, actor FROM log WHERE schedule = ? AND id > ? ORDER BY id',
    [name, afterId],
  );
  return rows.map((row) => ({ ...row, id: Number(row.id) }) as ScheduledRow);
}

describe('without a worker', () => {
  it('queues at most one run: while it waits, every slot is skipped with one SCHEDULE_BUSY row', async () => {
    await create(api.adminToken, 'busy', '* * * * * *', 'busy');

    const first = await waitFor(async () => (await schedule('busy')).lastJobId ?? undefined, 10_000, 'a first run');
    const busy = await waitFor(
      async () => {
        const rows = (await scheduledRows('busy')).filter((row) => row.code === 'SCHEDULE_BUSY');
        return rows.length >= 3 ? rows : undefined;
      },
      15_000,
      'three skipped slots',
    );
    await remove('busy');

    const rows = await scheduledRows('busy');
    expect(rows.filter((row) => row.status === 'queued').map((row) => row.job_id)).toEqual([first]);
    expect(rows.filter((row) => row.status !== 'queued').every((row) => row.status === 'rejected')).toBe(true);
    for (const row of busy) {
      expect(row).toMatchObject({ status: 'rejected', job_id: null, parameter: data, actor: 'admin' });
      expect(row.message).toContain('schedule "busy"');
      expect(row.message).toContain(`its previous run ${first} is still queued`);
    }
    // The one run waits in the queue, as any backup does.
    expect(await api.app.backupQueue.getJobState(first)).toBe('waiting');
    // One row per slot: the slots are a second apart, so the rows are too.
    const dates = await api.db.query<RowDataPacket[]>(
      "SELECT date FROM log WHERE schedule = 'busy' AND code = 'SCHEDULE_BUSY' ORDER BY id",
    );
    const times = dates[0].map((row) => (row.date as Date).getTime());
    for (let i = 1; i < times.length; i++) expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBeGreaterThan(500);
  });

  it("refuses the runs of a schedule whose creator's token is revoked: a rejected row per slot, nothing queued", async () => {
    const token = await issueToken(api, 'nightly-op', 'operator');
    await create(token, 'revoked', '* * * * * *', 'revoked');
    const record = await api.app.tokenStore.byName('nightly-op');
    const revoked = await api.app.inject({ method: 'DELETE', url: `/tokens/${record?.id}` });
    expect(revoked.statusCode, revoked.body).toBe(200);

    const refusals = await waitFor(
      async () => {
        const rows = (await scheduledRows('revoked')).filter((row) => row.status === 'rejected');
        return rows.length >= 2 ? rows : undefined;
      },
      15_000,
      'refused runs',
    );
    await remove('revoked');

    for (const row of refusals) {
      expect(row).toMatchObject({ code: 'SCHEDULE_TOKEN_REVOKED', job_id: null, parameter: data, actor: 'nightly-op' });
      expect(row.message).toContain('schedule "revoked"');
      expect(row.message).toContain('token "nightly-op" that created the schedule is revoked');
    }
    // A run may have been queued before the revocation; none after the first refusal.
    expect((await scheduledRows('revoked', refusals[0]?.id)).filter((row) => row.status === 'queued')).toEqual([]);
    const listed = await api.app.inject({ method: 'GET', url: '/logs?status=rejected&limit=1000' });
    expect(listed.json<{ items: { schedule: string | null; code: string }[] }>().items).toContainEqual(
      expect.objectContaining({ schedule: 'revoked', code: 'SCHEDULE_TOKEN_REVOKED' }),
    );
  });
});

describe('installing the schedules again', () => {
  const installed = async (name: string) => (await queue.getJobScheduler(name)) !== undefined;

  it('when the Redis connection comes back: schedulers Redis lost are back, and runs go on', async () => {
    await create(api.adminToken, 'comes-back', '*/2 * * * * *', 'comes-back');
    await waitFor(async () => ((await installed('comes-back')) ? true : undefined));
    // What a Redis restarted empty has lost: the schedulers and their ticks.
    await queue.obliterate({ force: true });
    expect(await installed('comes-back')).toBe(false);
    const since = await lastLogId(api.db);

    // The API's connection drops and comes back, as when Redis restarts.
    api.app.redis.disconnect(true);

    await waitFor(async () => ((await installed('comes-back')) ? true : undefined), 15_000, 'the scheduler back');
    await waitFor(
      async () => ((await scheduledRows('comes-back', since)).length > 0 ? true : undefined),
      15_000,
      'a run after the reconnection',
    );
    await remove('comes-back');
  });

  it('when Redis is back after an outage: a schedule created meanwhile (201, stored in MySQL) gets installed', async () => {
    // A second API on the same queue and database, that reaches Redis through a relay the test cuts.
    const outage = await createOutage(api.env.redisUrl);
    await outage.restore();
    const second = authorise(
      await buildApp({ config: configWith(api.env, { REDIS_URL: outage.url, SCHEDULE_MIN_INTERVAL_SECONDS: '1' }) }),
      api.adminToken,
    );
    try {
      await second.ready();
      await outage.cut();

      const res = await second.inject({
        method: 'POST',
        url: '/schedules',
        payload: { name: 'during-outage', cron: '0 5 * * *', backup: { source: data, destination: 'outage' } },
      });

      expect(res.statusCode, res.body).toBe(201);
      expect(await installed('during-outage')).toBe(false);
      await outage.restore();
      await waitFor(async () => ((await installed('during-outage')) ? true : undefined), 15_000, 'the scheduler');
      expect(await queue.getJobScheduler('during-outage')).toMatchObject({ pattern: '0 5 * * *', tz: 'UTC' });
    } finally {
      await second.close();
      await outage.cut();
    }
    await remove('during-outage');
  });

  it('when an API starts: every stored schedule is installed and schedulers without one are removed', async () => {
    await create(api.adminToken, 'at-start', '0 3 * * *', 'at-start');
    await queue.removeJobScheduler('at-start');
    await queue.upsertJobScheduler('ghost', { pattern: '0 4 * * *', tz: 'UTC' }, { name: 'tick', data: {} as never });
    expect(await installed('at-start')).toBe(false);

    const second = await buildApp({ config: api.env.config });
    try {
      await second.ready();

      expect(await installed('at-start')).toBe(true);
      expect(await installed('ghost')).toBe(false);
      expect(await queue.getJobScheduler('at-start')).toMatchObject({ pattern: '0 3 * * *', tz: 'UTC' });
    } finally {
      await second.close();
    }
    await remove('at-start');
  });
});

describe('slots missed while no API ran', () => {
  it('give one run, late, as soon as an API starts; the others are not made up', async () => {
    // An environment of its own, where no API runs until the test starts one.
    const env = await createTestEnvironment({ SCHEDULE_MIN_INTERVAL_SECONDS: '1' });
    const pool = createMysqlPool(env.config.mysql);
    const connection = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
    const ticks = createScheduleQueue(env.config, connection);
    try {
      const source = join(env.sources, 'data');
      await mkdir(source);
      const tokens = createTokenRepository(pool);
      await createToken(tokens, env.config, { name: 'late-op', role: 'operator', sourceRoots: null });
      // Two slots a second apart, soon; the next ones a minute later.
      const second = new Date().getUTCSeconds();
      const cron = `${(second + 2) % 60},${(second + 3) % 60} * * * * *`;
      const store = createScheduleStore(pool);
      await store.insert({
        name: 'missed',
        cron,
        timezone: 'UTC',
        backup: { source, destination: 'missed' },
        actor: 'late-op',
      });
      await createScheduleInstaller(ticks).install({ name: 'missed', cron, timezone: 'UTC' });
      const first = (await ticks.getJobScheduler('missed'))?.next ?? 0;
      await waitFor(async () => (Date.now() > first + 1500 ? true : undefined), 10_000, 'both slots to pass');

      const app = await buildApp({ config: env.config });
      const started = Date.now();
      let jobId: string;
      try {
        await app.ready();
        // Long before the next slot, a minute away.
        jobId = await waitFor(async () => (await store.get('missed'))?.lastJobId ?? undefined, 10_000, 'the late run');
        // A second slot made up would come as quickly, refused as busy (no worker runs the job).
        await waitFor(async () => (Date.now() > started + 3000 ? true : undefined));
      } finally {
        await app.close();
      }
      const [rows] = await pool.query<RowDataPacket[]>("SELECT status, job_id FROM log WHERE schedule = 'missed'");
      expect(rows.map((row) => [row.status, row.job_id] as unknown[])).toEqual([['queued', jobId]]);
    } finally {
      await ticks.close();
      connection.disconnect();
      await pool.end();
      await env.cleanup();
    }
  });
});

describe('with a worker', () => {
  let worker: RunningWorker;

  beforeAll(async () => {
    worker = startWorker(api.env.config, pino({ level: 'silent' }));
    await worker.worker.waitUntilReady();
  });

  afterAll(async () => {
    await worker?.close(5000);
  });

  it("runs an ordinary backup job: the schedule named in its view and every log row, the creator's rights", async () => {
    const token = await issueToken(api, 'runner-op', 'operator');
    await create(token, 'every-2s', '*/2 * * * * *', 'scheduled');

    const jobId = await waitFor(
      async () => {
        const view = await schedule('every-2s');
        return view.lastStatus === 'completed' ? (view.lastJobId ?? undefined) : undefined;
      },
      20_000,
      'a completed run',
    );
    await remove('every-2s');

    const job = await api.app.inject({ method: 'GET', url: `/jobs/${jobId}` });
    expect(job.statusCode, job.body).toBe(200);
    const view = job.json<{
      kind: string;
      status: string;
      source: string;
      destination: string;
      actor: string;
      schedule: string;
      result: { path: string };
    }>();
    expect(view).toMatchObject({
      kind: 'backup',
      status: 'completed',
      source: data,
      destination: 'scheduled',
      actor: 'runner-op',
      schedule: 'every-2s',
    });
    expect(await readFile(join(view.result.path, 'sub', 'a.txt'), 'utf8')).toBe('scheduled');

    const logs = await api.app.inject({ method: 'GET', url: `/logs?jobId=${jobId}` });
    const rows = logs.json<{ items: { status: string; schedule: string | null; actor: string | null }[] }>().items;
    expect(rows.map((row) => row.status).reverse()).toEqual(['queued', 'active', 'completed']);
    expect(rows.every((row) => row.schedule === 'every-2s' && row.actor === 'runner-op')).toBe(true);

    // Once Redis has dropped the job, its view is rebuilt from the log, the schedule still named.
    await (await api.app.backupQueue.getJob(jobId))?.remove();
    const rebuilt = await api.app.inject({ method: 'GET', url: `/jobs/${jobId}` });
    expect(rebuilt.json()).toMatchObject({ status: 'completed', schedule: 'every-2s' });
  });

  it('names no schedule in the view of a job queued by hand', async () => {
    const res = await api.app.inject({
      method: 'POST',
      url: '/backup',
      payload: { source: data, destination: 'manual' },
    });
    const { id } = res.json<{ id: string }>();

    expect((await api.app.inject({ method: 'GET', url: `/jobs/${id}` })).json()).toMatchObject({ schedule: null });
  });
});
