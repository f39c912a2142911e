import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createConnection, createPool, type Pool, type RowDataPacket } from 'mysql2/promise';
import { freePort } from '../test/helpers/ports.js';
import { SEEDED_JOBS, seedJobHistory, seededJobId } from './job-history.js';
import { caseResult, type CaseResult } from './report.js';
import { postAll, type Submissions } from './http-client.js';
import {
  E2E_JOBS,
  E2E_POLL_MS,
  E2E_WORKER_CONCURRENCY,
  HTTP_CONNECTIONS,
  HTTP_SECONDS,
  LIST_CONNECTIONS,
  RUNS,
} from './settings.js';
import {
  cofferEnvironment,
  isolate,
  launch,
  mysqlServer,
  peakRssMiB,
  redisUrl,
  resetPeakRss,
  stop,
  waitForHttp,
  type Scope,
} from './stack.js';
import { interleave, median } from './timing.js';

export const QUEUE_NAME = 'backup';
const TOKEN = randomBytes(24).toString('hex');
export const AUTHORIZATION = `Bearer ${TOKEN}`;
export const HEADERS = { 'content-type': 'application/json', authorization: AUTHORIZATION };

export interface Api {
  url: string;
  child: ChildProcess;
}

/** Where Coffer reads (`SOURCE_ROOTS`) and writes (`BACKUP_ROOT`) in the benchmark. */
export interface ServiceDirs {
  sourceRoot: string;
  out: string;
}

/**
 * A Coffer API process as deployed, with an admin token for the benchmark and the rate
 * limit raised out of the way (its Redis round trip is still paid on every request).
 */
export async function startCofferApi(
  scope: Scope,
  name: string,
  isolation: { prefix: string; database: string },
  dirs: ServiceDirs,
  extra: Record<string, string> = {},
): Promise<Api> {
  const port = await freePort();
  const child = launch(
    scope,
    name,
    ['api/dist/server.js'],
    cofferEnvironment(isolation, {
      PORT: String(port),
      SOURCE_ROOTS: dirs.sourceRoot,
      BACKUP_ROOT: join(dirs.out, 'backups'),
      API_ADMIN_TOKEN: TOKEN,
      RATE_LIMIT_PER_MINUTE: '1000000',
      INSTANCE_NAME: name,
      ...extra,
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/ready`, child);
  return { url, child };
}

export function startCofferWorker(
  scope: Scope,
  name: string,
  isolation: { prefix: string; database: string },
  dirs: ServiceDirs,
  extra: Record<string, string> = {},
): ChildProcess {
  return launch(
    scope,
    name,
    ['worker/dist/main.js'],
    cofferEnvironment(isolation, {
      SOURCE_ROOTS: dirs.sourceRoot,
      BACKUP_ROOT: join(dirs.out, 'backups'),
      INSTANCE_NAME: name,
      ...extra,
    }),
  );
}

export async function waitForWorkers(queue: Queue, count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await queue.getWorkersCount()) < count) {
    if (Date.now() > deadline) throw new Error(`${count} workers did not connect within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A round of `postRate`: accepted requests per second, and latency in ms. */
interface PostRun {
  rate: number;
  refused: number;
  p50: number;
  p99: number;
}

async function postRate(url: string, body: string, seconds: number): Promise<PostRun> {
  const result = await autocannon({
    url: `${url}/backup`,
    method: 'POST',
    connections: HTTP_CONNECTIONS,
    duration: seconds,
    headers: { 'content-type': 'application/json', authorization: AUTHORIZATION },
    body,
  });
  return {
    rate: result['2xx'] / result.duration,
    refused: result.non2xx + result.errors + result.timeouts,
    p50: result.latency.p50,
    p99: result.latency.p99,
  };
}

/** `POST /backup` with 50 connections: Coffer's API against a bare Fastify route doing `queue.add`. */
export async function runHttpCase(scope: Scope, dirs: ServiceDirs, source: string): Promise<CaseResult> {
  console.log('case: POST /backup throughput');
  const coffer = await startCofferApi(scope, 'http-api', isolate(scope, 'http'), dirs);
  const barePort = await freePort();
  const bareIsolation = isolate(scope, 'http-bare');
  const bareChild = launch(scope, 'bare-api', ['--import', 'tsx', 'bench/baselines/bare-api.ts'], {
    PATH: process.env.PATH ?? '',
    PORT: String(barePort),
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: bareIsolation.prefix,
  });
  const bare = { url: `http://127.0.0.1:${barePort}`, child: bareChild };
  await waitForHttp(`${bare.url}/ready`, bareChild);
  const body = JSON.stringify({ source, destination: 'http' });
  let refused = 0;
  const runs = { coffer: [] as PostRun[], bare: [] as PostRun[] };
  const contenders = [
    {
      name: 'coffer',
      run: async (run: number) => {
        const result = await postRate(coffer.url, body, run < 0 ? 1 : HTTP_SECONDS);
        if (run >= 0) {
          refused += result.refused;
          runs.coffer.push(result);
        }
        return result.rate;
      },
    },
    {
      name: 'bare',
      run: async (run: number) => {
        const result = await postRate(bare.url, body, run < 0 ? 1 : HTTP_SECONDS);
        if (run >= 0) runs.bare.push(result);
        return result.rate;
      },
    },
  ];
  for (const contender of contenders) await contender.run(-1);
  const samples = await interleave(RUNS.httpRounds, contenders);
  await Promise.all([stop(coffer.child), stop(bareChild)]);
  // Autocannon's latency (ms, send to whole answer) per round; the medians over the rounds.
  const latency = (side: PostRun[]) => ({
    p50: median(side.map((run) => run.p50)),
    p99: median(side.map((run) => run.p99)),
  });
  return caseResult({
    name: `POST /backup throughput, ${HTTP_CONNECTIONS} connections`,
    unit: 'req/s',
    target: '>= 0.5',
    baselineName: 'Fastify + queue.add',
    coffer: samples.get('coffer') ?? [],
    baseline: samples.get('bare') ?? [],
    latencyMs: { coffer: latency(runs.coffer), baseline: latency(runs.bare) },
    note:
      `${HTTP_SECONDS} s of autocannon per round, no worker running; latency: autocannon's p50 and p99 ` +
      `(send to whole answer), medians over the rounds` +
      (refused > 0 ? `; ${refused} Coffer requests not answered 202` : ''),
  });
}

/** Runs `submit` `count` times, at most `inFlight` at a time. */
async function submitAll(count: number, inFlight: number, submit: () => Promise<void>): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (started < count) {
        started += 1;
        await submit();
      }
    }),
  );
}

const JOBS_TIMEOUT_MS = 300_000;

/** How many of a round's jobs have finished (completed or failed) so far. */
export type FinishedCount = () => Promise<number>;

/** Jobs of `queue` finished since this was called (finished jobs are kept in Redis, see the callers). */
export async function finishedSince(queue: Queue): Promise<FinishedCount> {
  const finished = async () => {
    const counts = await queue.getJobCounts('completed', 'failed');
    return (counts.completed ?? 0) + (counts.failed ?? 0);
  };
  const before = await finished();
  return async () => (await finished()) - before;
}

/**
 * Submits a round of jobs and returns its rate: jobs accepted (`submit` resolves with their
 * number) over the seconds from sending the first submission until `finished` reaches that
 * number. Every side is timed by this one clock: `finished` is asked every `E2E_POLL_MS`
 * from the start, so a round is seen to end at most one poll interval plus one poll's round
 * trip after its last job did, on every side alike. `submit` must resolve as soon as its
 * last answer arrives, as `postAll` does: autocannon with `amount`, which Coffer's side used
 * before, resolves only on its next one-second sampling tick, which counted up to a second
 * too many on Coffer's side and none on the baseline's (`queue.add` resolves at once).
 */
export async function jobRate(finished: FinishedCount, submit: () => Promise<number>): Promise<number> {
  const started = performance.now();
  let submitted: { accepted: number } | { error: unknown } | undefined;
  const submitting = submit().then(
    (accepted) => (submitted = { accepted }),
    (error: unknown) => (submitted = { error }),
  );
  for (;;) {
    if (submitted && 'error' in submitted) throw submitted.error;
    const done = await finished();
    if (submitted && 'accepted' in submitted && done >= submitted.accepted) break;
    if (performance.now() - started > JOBS_TIMEOUT_MS) throw new Error('jobs did not finish in time');
    await sleep(E2E_POLL_MS);
  }
  const seconds = (performance.now() - started) / 1000;
  await submitting;
  return submitted.accepted / seconds;
}

/**
 * A Coffer stack for tiny jobs end to end: an API and two workers (`<name>-api`,
 * `<name>-worker-1`, `-2`), finished jobs kept in Redis for the whole run so the completed
 * count keeps counting; `extra` goes to all three.
 */
export async function startTinyJobsStack(
  scope: Scope,
  name: string,
  isolation: { prefix: string; database: string },
  dirs: ServiceDirs,
  extra: Record<string, string> = {},
): Promise<Api> {
  const keep = { JOB_RETENTION_COUNT: '10000000', ...extra };
  const api = await startCofferApi(scope, `${name}-api`, isolation, dirs, keep);
  const workerEnv = { ...keep, WORKER_CONCURRENCY: String(E2E_WORKER_CONCURRENCY) };
  for (const worker of [`${name}-worker-1`, `${name}-worker-2`])
    startCofferWorker(scope, worker, isolation, dirs, workerEnv);
  return api;
}

/**
 * Submits `count` tiny backups of `source` to `api` over HTTP_CONNECTIONS kept-alive
 * connections, spread over 100 destinations as many small sources would be; resolves at the
 * last answer (see `jobRate`).
 */
export async function postTinyBackups(api: Api, source: string, count: number): Promise<Submissions> {
  return postAll({
    url: `${api.url}/backup`,
    count,
    connections: HTTP_CONNECTIONS,
    headers: HEADERS,
    body: (index) => JSON.stringify({ source, destination: `tiny-${index % 100}` }),
    status: 202,
  });
}

/**
 * Tiny jobs (a folder holding one small file) end to end: through Coffer's API, Redis, two
 * worker processes and MySQL, against two BullMQ workers that only write one row per job.
 */
export async function runEndToEndCase(scope: Scope, dirs: ServiceDirs, source: string): Promise<CaseResult> {
  console.log('case: end-to-end tiny jobs, 2 workers');
  const cofferIsolation = isolate(scope, 'e2e');
  const api = await startTinyJobsStack(scope, 'e2e', cofferIsolation, dirs);

  const baseIsolation = isolate(scope, 'e2e-base');
  const connection = await createConnection(mysqlServer);
  try {
    await connection.query(`CREATE DATABASE \`${baseIsolation.database}\``);
    await connection.query(
      `CREATE TABLE \`${baseIsolation.database}\`.log (id BIGINT AUTO_INCREMENT PRIMARY KEY, ` +
        'date TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), action VARCHAR(100) NOT NULL, ' +
        'parameter VARCHAR(4096) NOT NULL, status VARCHAR(100) NOT NULL, job_id VARCHAR(64), INDEX (job_id))',
    );
  } finally {
    await connection.end();
  }
  for (const name of ['noop-worker-1', 'noop-worker-2']) {
    launch(scope, name, ['--import', 'tsx', 'bench/baselines/noop-worker.ts'], {
      ...cofferEnvironment(baseIsolation, {}),
      WORKER_CONCURRENCY: String(E2E_WORKER_CONCURRENCY),
    });
  }

  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const cofferQueue = new Queue(QUEUE_NAME, { connection: redis, prefix: cofferIsolation.prefix });
  const baseQueue = new Queue(QUEUE_NAME, { connection: redis, prefix: baseIsolation.prefix });
  try {
    await waitForWorkers(cofferQueue, 2);
    await waitForWorkers(baseQueue, 2);
    let refused = 0;
    const postJobs = async (count: number) => {
      const result = await postTinyBackups(api, source, count);
      refused += result.refused;
      return result.accepted;
    };
    const addJobs = async (count: number) => {
      await submitAll(count, HTTP_CONNECTIONS, async () => {
        await baseQueue.add(QUEUE_NAME, { source, destination: 'tiny' });
      });
      return count;
    };
    const contenders = [
      {
        name: 'coffer',
        run: async (run: number) => jobRate(await finishedSince(cofferQueue), () => postJobs(run < 0 ? 200 : E2E_JOBS)),
      },
      {
        name: 'bullmq',
        run: async (run: number) => jobRate(await finishedSince(baseQueue), () => addJobs(run < 0 ? 200 : E2E_JOBS)),
      },
    ];
    for (const contender of contenders) await contender.run(-1);
    const samples = await interleave(RUNS.endToEnd, contenders);
    const failed = (await cofferQueue.getJobCounts('failed')).failed ?? 0;
    const problems = [refused > 0 ? `${refused} submissions refused` : '', failed > 0 ? `${failed} jobs failed` : ''];
    return caseResult({
      name: 'end-to-end tiny jobs (1 small file), 2 workers',
      unit: 'jobs/s',
      target: '>= 0.4',
      baselineName: 'BullMQ no-op worker, 1 row per job',
      coffer: samples.get('coffer') ?? [],
      baseline: samples.get('bullmq') ?? [],
      note:
        `${E2E_JOBS} jobs per run, submitted ${HTTP_CONNECTIONS} at a time (Coffer: POST /backup over ` +
        `${HTTP_CONNECTIONS} kept-alive connections; baseline: queue.add); both timed from the first submission ` +
        `until a poll of the queue's finished count (every ${E2E_POLL_MS} ms) sees the last job done; ` +
        `WORKER_CONCURRENCY ${E2E_WORKER_CONCURRENCY} on both sides` +
        problems
          .filter(Boolean)
          .map((problem) => `; ${problem}`)
          .join(''),
    });
  } finally {
    await cofferQueue.close();
    await baseQueue.close();
    redis.disconnect();
    await Promise.all(scope.processes.map(stop));
  }
}

interface JobView {
  status: string;
  progress: { files: number; bytes: number; bytesTotal: number };
  result?: { files: number; durationMs: number };
  error?: { code: string; message: string };
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** Submits a job (`POST /backup`, `/verify`, `/restore`); returns its id. */
async function submitJob(url: string, route: string, body: object): Promise<string> {
  const posted = await fetch(`${url}${route}`, { method: 'POST', headers: HEADERS, body: JSON.stringify(body) });
  if (posted.status !== 202) throw new Error(`POST ${route} answered ${posted.status}: ${await posted.text()}`);
  return ((await posted.json()) as { id: string }).id;
}

async function jobView(url: string, id: string): Promise<JobView> {
  return (await (await fetch(`${url}/jobs/${id}`, { headers: HEADERS })).json()) as JobView;
}

/** Polls `GET /jobs/:id` every `everyMs` until `done` holds of the view (default: a terminal status). */
async function waitForJob(
  url: string,
  id: string,
  everyMs: number,
  timeoutMs: number,
  done = (view: JobView) => TERMINAL.has(view.status),
): Promise<JobView> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const view = await jobView(url, id);
    if (done(view)) return view;
    if (performance.now() > deadline) throw new Error(`job ${id} still ${view.status} after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** A job of the memory case: it must complete. */
async function completedJob(url: string, route: string, body: object): Promise<{ id: string; view: JobView }> {
  const id = await submitJob(url, route, body);
  const view = await waitForJob(url, id, 1000, 30 * 60_000);
  if (view.status !== 'completed')
    throw new Error(`${route} of the million-file tree ended ${view.status}: ${view.error?.message}`);
  return { id, view };
}

/**
 * A real worker process (default settings) on a tree of a million tiny files: it backs the
 * tree up (writing its manifest), verifies the snapshot and restores it (both read the whole
 * manifest). The peak RSS of the worker over the three; the note gives each job's own.
 */
export async function runMemoryCase(scope: Scope, dirs: ServiceDirs, source: string): Promise<CaseResult> {
  console.log('case: worker memory on a 1,000,000-file tree: backup (with its manifest), verify, restore');
  const isolation = isolate(scope, 'memory');
  const restores = join(dirs.out, 'restores');
  mkdirSync(restores, { recursive: true });
  const roots = { RESTORE_ROOTS: restores };
  const api = await startCofferApi(scope, 'memory-api', isolation, dirs, roots);
  const worker = startCofferWorker(scope, 'memory-worker', isolation, dirs, roots);
  const phases: string[] = [];
  const peaks: number[] = [];
  // Each job's own peak, when the kernel lets the peak be reset in between; else the peak so far.
  let separate = true;
  const measure = (name: string, view: JobView) => {
    const peak = peakRssMiB(worker);
    peaks.push(peak);
    const seconds = ((view.result?.durationMs ?? 0) / 1000).toFixed(1);
    phases.push(
      `${name} ${peak.toFixed(0)} MiB (${(view.result?.files ?? 0).toLocaleString('en')} files, ${seconds} s)`,
    );
    separate &&= resetPeakRss(worker);
  };
  try {
    const backup = await completedJob(api.url, '/backup', { source, destination: 'million' });
    measure('backup', backup.view);
    measure('verify', (await completedJob(api.url, '/verify', { snapshot: backup.id })).view);
    const target = join(restores, 'million');
    measure('restore', (await completedJob(api.url, '/restore', { snapshot: backup.id, target })).view);
  } finally {
    await Promise.all([stop(worker), stop(api.child)]);
  }
  return caseResult({
    name: 'worker memory on a 1,000,000-file tree: backup with manifest, verify, restore',
    unit: 'MiB',
    target: '< 200',
    baselineName: null,
    coffer: [Math.max(...peaks)],
    note:
      `peak RSS (VmHWM) of the worker process; ${separate ? 'each job' : 'so far, after each job'}: ` +
      phases.join(', '),
  });
}

/**
 * Backups of one 2 GiB file through the real API and a worker, each cancelled (`DELETE
 * /jobs/:id`) once the job's progress shows it inside the file: milliseconds from sending the
 * DELETE until `GET /jobs/:id` (polled every 5 ms) answers `cancelled`.
 */
export async function runCancelCase(scope: Scope, dirs: ServiceDirs, hugeFile: string): Promise<CaseResult> {
  console.log('case: cancel inside one 2 GiB file');
  const isolation = isolate(scope, 'cancel');
  const api = await startCofferApi(scope, 'cancel-api', isolation, dirs);
  const worker = startCofferWorker(scope, 'cancel-worker', isolation, dirs);
  const samples: number[] = [];
  const copied: string[] = [];
  try {
    for (let run = 0; run < RUNS.cancel; run += 1) {
      const id = await submitJob(api.url, '/backup', { source: hugeFile, destination: 'cancel' });
      const inside = await waitForJob(
        api.url,
        id,
        5,
        60_000,
        (view) => TERMINAL.has(view.status) || (view.status === 'active' && view.progress.bytes > 0),
      );
      if (inside.status !== 'active') throw new Error(`the 2 GiB backup ended ${inside.status} before the cancel`);
      const sent = performance.now();
      const response = await fetch(`${api.url}/jobs/${id}`, {
        method: 'DELETE',
        headers: { authorization: AUTHORIZATION },
      });
      if (response.status !== 202)
        throw new Error(`DELETE /jobs/:id answered ${response.status}: ${await response.text()}`);
      const view = await waitForJob(api.url, id, 5, 60_000);
      if (view.status !== 'cancelled') throw new Error(`the cancelled backup ended ${view.status}`);
      samples.push(performance.now() - sent);
      copied.push(`${Math.round(inside.progress.bytes / 2 ** 20)}`);
    }
  } finally {
    await Promise.all([stop(worker), stop(api.child)]);
  }
  return caseResult({
    name: 'cancel inside one 2 GiB file: DELETE to cancelled',
    unit: 'ms',
    target: '<= 1000',
    baselineName: null,
    coffer: samples,
    note:
      `${RUNS.cancel} backups through the API and one worker, each cancelled once its progress showed ` +
      `${copied.join(', ')} MiB of the file copied; until GET /jobs/:id answered cancelled (partial copy removed)`,
  });
}

/** A run of list requests: rate, and latency in ms. */
interface ListRun {
  rate: number;
  p50: number;
  p99: number;
  failed: number;
}

async function listOverHttp(url: string, seconds: number): Promise<ListRun> {
  const result = await autocannon({
    url,
    connections: LIST_CONNECTIONS,
    duration: seconds,
    headers: { authorization: AUTHORIZATION },
  });
  const failed = result.non2xx + result.errors + result.timeouts;
  return { rate: result['2xx'] / result.duration, p50: result.latency.p50, p99: result.latency.p99, failed };
}

/** The two statements `GET /jobs?status=` runs: a page of job_status, then those jobs' log rows. */
async function listPageSql(pool: Pool, status: string, cursor: number | null): Promise<string[]> {
  const [page] = await pool.execute<RowDataPacket[]>(
    'SELECT queued_id AS id, job_id FROM job_status WHERE status = ? AND queued_id IS NOT NULL' +
      (cursor === null ? '' : ' AND queued_id < ?') +
      ' ORDER BY queued_id DESC LIMIT 51',
    cursor === null ? [status] : [status, cursor],
  );
  const jobIds = page.slice(0, 50).map((row) => String(row.job_id));
  await pool.query('SELECT * FROM log WHERE job_id IN (?) ORDER BY id', [jobIds]);
  return jobIds;
}

async function listOverSql(pool: Pool, status: string, cursor: number | null, seconds: number): Promise<ListRun> {
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: LIST_CONNECTIONS }, async () => {
      while (performance.now() < end) {
        const sent = performance.now();
        await listPageSql(pool, status, cursor);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  const sorted = latencies.sort((a, b) => a - b);
  const at = (share: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * share))] ?? Number.NaN;
  return { rate: latencies.length / ((performance.now() - started) / 1000), p50: at(0.5), p99: at(0.99), failed: 0 };
}

// The status filter as it was before job_status: a correlated subquery per queued row.
const FORMER_STATUS_SQL =
  "SELECT q.id, q.job_id FROM log q WHERE q.status = 'queued'" +
  ' AND (SELECT l.status FROM log l WHERE l.job_id = q.job_id ORDER BY l.id DESC LIMIT 1) = ?' +
  ' ORDER BY q.id DESC LIMIT 51';

async function timedQuery(pool: Pool, sql: string, params: string[]): Promise<number> {
  const started = performance.now();
  await pool.execute(sql, params);
  return performance.now() - started;
}

const ms = (values: readonly number[]) => `${median(values).toFixed(1)} ms`;

/**
 * `GET /jobs?status=completed&limit=50` on a log of a million jobs (seeded straight into a
 * private database, then upgraded by migration 005), the first page and one deep in the
 * list, against the same two SELECTs sent through mysql2 by as many clients.
 */
export async function runJobsListCase(scope: Scope, dirs: ServiceDirs): Promise<CaseResult[]> {
  console.log(`case: GET /jobs?status= on ${SEEDED_JOBS.toLocaleString('en')} jobs`);
  const isolation = isolate(scope, 'jobs');
  const target = { ...mysqlServer, database: isolation.database };
  const seeded = await seedJobHistory(target);
  const seeding = `log seeded in ${seeded.rowsSeconds.toFixed(1)} s, migration 005 (job_status backfill) ${seeded.upgradeSeconds.toFixed(1)} s`;
  console.log(`  ${seeding}`);
  const api = await startCofferApi(scope, 'jobs-api', isolation, dirs);
  const pool = createPool({ ...target, connectionLimit: LIST_CONNECTIONS });
  try {
    const [[middle]] = await pool.execute<RowDataPacket[]>(
      "SELECT id FROM log WHERE job_id = ? AND status = 'queued'",
      [seededJobId(SEEDED_JOBS / 2)],
    );
    const deep = Number(middle?.id);
    const pages = [
      { label: 'first page', cursor: null },
      { label: `page below job ${(SEEDED_JOBS / 2).toLocaleString('en')}`, cursor: deep },
    ];
    const results: CaseResult[] = [];
    for (const page of pages) {
      const url = `${api.url}/jobs?status=completed&limit=50${page.cursor === null ? '' : `&cursor=${page.cursor}`}`;
      // Both sides must answer the same page.
      const response = await fetch(url, { headers: { authorization: AUTHORIZATION } });
      const body = (await response.json()) as { items: { id: string; status: string }[] };
      const expected = await listPageSql(pool, 'completed', page.cursor);
      if (body.items.map((item) => item.id).join() !== expected.join() || expected.length !== 50) {
        throw new Error(`GET /jobs answered another page than the SQL (${response.status})`);
      }
      const runs = { coffer: [] as ListRun[], sql: [] as ListRun[] };
      let failed = 0;
      const contenders = [
        {
          name: 'coffer',
          run: async (run: number) => {
            const result = await listOverHttp(url, run < 0 ? 1 : HTTP_SECONDS);
            if (run >= 0) runs.coffer.push(result);
            failed += result.failed;
            return result.rate;
          },
        },
        {
          name: 'sql',
          run: async (run: number) => {
            const result = await listOverSql(pool, 'completed', page.cursor, run < 0 ? 1 : HTTP_SECONDS);
            if (run >= 0) runs.sql.push(result);
            return result.rate;
          },
        },
      ];
      for (const contender of contenders) await contender.run(-1);
      const samples = await interleave(RUNS.httpRounds, contenders);
      const latency = (side: ListRun[]) =>
        `p50 ${ms(side.map((run) => run.p50))}, p99 ${ms(side.map((run) => run.p99))}`;
      results.push(
        caseResult({
          name: `GET /jobs?status=completed&limit=50, 1M jobs, ${page.label}`,
          unit: 'req/s',
          target: '>= 0.2',
          baselineName: 'its two SELECTs through mysql2',
          coffer: samples.get('coffer') ?? [],
          baseline: samples.get('sql') ?? [],
          note:
            `${LIST_CONNECTIONS} clients; latency Coffer ${latency(runs.coffer)}, SQL ${latency(runs.sql)}` +
            (failed > 0 ? `; ${failed} Coffer requests not answered 200` : '') +
            (page.cursor === null ? `; ${seeding}` : ''),
        }),
      );
    }

    // The filter's own statement, against the one it replaced, for a status no seeded job has.
    const current = [] as number[];
    const former = [] as number[];
    for (let run = 0; run < 3; run += 1) {
      current.push(
        await timedQuery(
          pool,
          'SELECT queued_id, job_id FROM job_status WHERE status = ? AND queued_id IS NOT NULL ORDER BY queued_id DESC LIMIT 51',
          ['retrying'],
        ),
      );
      if (run === 0) former.push(await timedQuery(pool, FORMER_STATUS_SQL, ['retrying']));
    }
    results.push(
      caseResult({
        name: 'status filter SQL, a status no job has, 1M jobs',
        unit: 'ms',
        target: '<= 0.01',
        baselineName: 'the former correlated subquery',
        coffer: [median(current)],
        baseline: former,
        note: `job_status index: ${ms(current)} (median of 3); the former subquery ran once: ${ms(former)}`,
      }),
    );
    return results;
  } finally {
    await pool.end();
    await stop(api.child);
  }
}
