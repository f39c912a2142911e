// Coffer against a peer on the same machine, in the same run: rclone's remote-control server
// (`rclone rcd`, Debian's rclone) for jobs submitted over HTTP, and `rclone copy` for the
// re-run of an unchanged tree.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freePort } from '../test/helpers/ports.js';
import type { CopyEngine } from './copy-cases.js';
import { postAll, quantile, type Submissions } from './http-client.js';
import { caseResult, type CaseResult, type Latency } from './report.js';
import {
  finishedSince,
  HEADERS,
  jobRate,
  QUEUE_NAME,
  startCofferApi,
  startCofferWorker,
  waitForWorkers,
  type FinishedCount,
  type ServiceDirs,
} from './service-cases.js';
import {
  E2E_POLL_MS,
  E2E_WORKER_CONCURRENCY,
  HTTP_CONNECTIONS,
  PEER_JOBS,
  PEER_SUBMISSIONS,
  RUNS,
} from './settings.js';
import { isolate, redisUrl, stop, type Scope } from './stack.js';
import { flushWrites, interleaveAfterWarmUp, median, timeCommand, timed } from './timing.js';

/** rclone's version line, installing Debian's package when it is missing; null (with the reason printed) when impossible. */
export function ensureRclone(): string | null {
  const version = () => spawnSync('rclone', ['version'], { encoding: 'utf8' });
  if (version().status !== 0) {
    console.log('installing rclone (apt-get)…');
    let install = spawnSync('apt-get', ['install', '-y', 'rclone'], { stdio: 'inherit' });
    if (install.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'inherit' });
      install = spawnSync('apt-get', ['install', '-y', 'rclone'], { stdio: 'inherit' });
    }
  }
  const found = version();
  if (found.status !== 0) {
    console.log('skipping the peer cases: rclone is missing and `apt-get install -y rclone` failed');
    return null;
  }
  return (found.stdout.split('\n')[0] ?? '').trim();
}

/** The sources the peer cases read: the tiny tree (a folder `d0` holding `f0.dat`) and the 20k tree. */
export interface PeerSources {
  tiny: string;
  smallFiles: string;
}

interface Rcd {
  url: string;
  child: ChildProcess;
}

/**
 * `rclone rcd` on a free loopback port, without authentication (nothing but this benchmark
 * reaches it) and with an empty config file of its own, so a developer's remotes change
 * nothing. Finished async jobs are kept the default 60 s (`--rc-job-expire-duration`).
 */
async function startRcd(scope: Scope, dir: string): Promise<Rcd> {
  const port = await freePort();
  const config = join(dir, 'rclone.conf');
  writeFileSync(config, '');
  const log = createWriteStream(join(scope.logDir, 'rclone-rcd.log'));
  const child = spawn('rclone', ['rcd', '--rc-no-auth', `--rc-addr=127.0.0.1:${port}`, `--config=${config}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  scope.processes.push(child);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`rclone rcd exited with code ${child.exitCode}`);
    const answer = await rc(url, 'rc/noop', {}).catch(() => null);
    if (answer !== null) return { url, child };
    if (Date.now() > deadline) throw new Error('rclone rcd did not answer within 30 s');
    await sleep(100);
  }
}

/** One rc call; throws unless it answers 200. */
async function rc(url: string, method: string, params: object): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(params),
  });
  const body = (await response.json()) as Record<string, unknown>;
  if (response.status !== 200) throw new Error(`rclone ${method} answered ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

/** `job/status` calls in flight at once while catching up with finished jobs. */
const STATUS_WINDOW = 10;

/**
 * The async jobs of one round, as their ids come back, and how many have finished: asked
 * through `job/status`, in the order they were accepted, from the first one not yet known
 * finished, `STATUS_WINDOW` at a time, until the first of a window is still running. So each
 * finished job is asked about about once, a poll costs a few calls more, and catching up with
 * many finished jobs takes a few round trips rather than one per job (which would time the
 * poller rather than rclone).
 */
function rcloneJobs(url: string): { add: (body: string) => void; finished: FinishedCount; failed: () => number } {
  const ids: number[] = [];
  // Jobs 0 … prefix-1 are finished, and so are those in `ahead` (finished out of order).
  let prefix = 0;
  const ahead = new Set<number>();
  let failed = 0;
  return {
    add: (body) => ids.push((JSON.parse(body) as { jobid: number }).jobid),
    finished: async () => {
      for (;;) {
        const window: number[] = [];
        for (let index = prefix; index < ids.length && window.length < STATUS_WINDOW; index += 1) {
          if (!ahead.has(index)) window.push(index);
        }
        if (window.length === 0) break;
        const statuses = await Promise.all(window.map((index) => rc(url, 'job/status', { jobid: ids[index] })));
        statuses.forEach((status, at) => {
          if (status.finished !== true) return;
          if (status.success !== true) failed += 1;
          ahead.add(window[at] ?? -1);
        });
        if (!ahead.has(prefix)) break;
        while (ahead.delete(prefix)) prefix += 1;
      }
      return prefix + ahead.size;
    },
    failed: () => failed,
  };
}

/** Waits, untimed, until `finished` reaches `count`. */
async function drain(finished: FinishedCount, count: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  while ((await finished()) < count) {
    if (Date.now() > deadline) throw new Error(`jobs did not finish within 300 s`);
    await sleep(E2E_POLL_MS);
  }
}

type Side = 'coffer' | 'rclone';
type Tally = Record<Side, { refused: number; firstRefusal?: string | undefined; failed: number }>;

const newTally = (): Tally => ({ coffer: { refused: 0, failed: 0 }, rclone: { refused: 0, failed: 0 } });

/** What went wrong, as the end of a note (`; …`), or ''. */
function problemsOf(tally: Tally): string {
  return (['coffer', 'rclone'] as const)
    .flatMap((side) => {
      const name = side === 'coffer' ? 'Coffer' : 'rclone';
      const { refused, firstRefusal, failed } = tally[side];
      return [
        refused > 0 ? `; ${refused} ${name} submissions refused (first: ${firstRefusal ?? '?'})` : '',
        failed > 0 ? `; ${failed} ${name} jobs failed` : '',
      ];
    })
    .join('');
}

function latencyOf(runs: readonly Submissions[]): Latency {
  return {
    p50: median(runs.map((run) => quantile(run.latenciesMs, 0.5))),
    p99: median(runs.map((run) => quantile(run.latenciesMs, 0.99))),
  };
}

/**
 * The three peer cases. Coffer: its API and two workers (`WORKER_CONCURRENCY` 16), which log
 * every job's transitions in MySQL (durable history) and write a complete snapshot per backup.
 * rclone: one `rclone rcd`, whose async jobs live in its memory only, 60 s after they finish.
 */
export async function runPeerCases(
  scope: Scope,
  dirs: ServiceDirs,
  sources: PeerSources,
  engine: CopyEngine,
): Promise<CaseResult[]> {
  const version = ensureRclone();
  if (version === null) return [];
  const out = join(dirs.out, 'peer');
  mkdirSync(out, { recursive: true });
  const results = await runPeerJobCases(scope, dirs, sources.tiny, out, version);
  results.push(await runRecheckCase(engine, sources.smallFiles, join(out, 'recheck'), version));
  return results;
}

async function runPeerJobCases(
  scope: Scope,
  dirs: ServiceDirs,
  tiny: string,
  out: string,
  version: string,
): Promise<CaseResult[]> {
  console.log(`case: ${PEER_SUBMISSIONS} submissions and ${PEER_JOBS} tiny jobs against rclone rcd (${version})`);
  // Finished jobs kept in Redis for the whole run, so the finished count keeps counting.
  const keep = { JOB_RETENTION_COUNT: '10000000' };
  const isolation = isolate(scope, 'peer');
  const api = await startCofferApi(scope, 'peer-api', isolation, dirs, keep);
  const workerEnv = { ...keep, WORKER_CONCURRENCY: String(E2E_WORKER_CONCURRENCY) };
  const workers = ['peer-worker-1', 'peer-worker-2'].map((name) =>
    startCofferWorker(scope, name, isolation, dirs, workerEnv),
  );
  const rcd = await startRcd(scope, out);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: isolation.prefix });
  // The same job on both sides: the tiny tree's one file copied into a new folder.
  const source = { folder: join(tiny, 'd0'), file: 'f0.dat' };
  const rcloneTarget = join(out, 'rclone');
  // Refused submissions and failed jobs of each side, per case.
  let tally = newTally();
  const count = (side: Side, submissions: Submissions) => {
    tally[side].refused += submissions.refused;
    tally[side].firstRefusal ??= submissions.firstRefusal;
    return submissions;
  };
  const cofferPost = async (round: string, jobs: number) =>
    count(
      'coffer',
      await postAll({
        url: `${api.url}/backup`,
        count: jobs,
        connections: HTTP_CONNECTIONS,
        headers: HEADERS,
        // Spread over 100 destinations, as the end-to-end case does; each backup is a new snapshot.
        body: (index) => JSON.stringify({ source: tiny, destination: `peer-${round}-${index % 100}` }),
        status: 202,
      }),
    );
  const rclonePost = async (round: string, jobs: number, onAccepted: (body: string) => void) =>
    count(
      'rclone',
      await postAll({
        url: `${rcd.url}/operations/copyfile`,
        count: jobs,
        connections: HTTP_CONNECTIONS,
        headers: { 'content-type': 'application/json' },
        // A fresh folder per job, so each one copies (into an existing copy, rclone would only compare).
        body: (index) =>
          JSON.stringify({
            srcFs: source.folder,
            srcRemote: source.file,
            dstFs: join(rcloneTarget, round, `job-${index}`),
            dstRemote: source.file,
            _async: true,
          }),
        status: 200,
        onAccepted,
      }),
    );

  const failedCoffer = async () => (await queue.getJobCounts('failed')).failed ?? 0;
  try {
    await waitForWorkers(queue, 2);
    const accepted = { coffer: [] as Submissions[], rclone: [] as Submissions[] };
    const round = (run: number, kind: string) => (run < 0 ? `${kind}-warm-up` : `${kind}-${run}`);

    let failedBefore = await failedCoffer();
    // (a) Accepted rate: submissions over the seconds from the first sent to the last answered.
    // Both sides run what they accept meanwhile (Coffer's workers, rclone's job goroutines); each
    // round's jobs are all finished, untimed, before the next round starts.
    console.log(`  accepted rate: ${PEER_SUBMISSIONS} submissions, ${HTTP_CONNECTIONS} connections`);
    // Warm-up rounds: 100 submissions each side, as the end-to-end warm-up.
    const sized = (run: number, full: number) => (run < 0 ? 100 : full);
    const acceptedSamples = await interleaveAfterWarmUp(RUNS.peer, [
      {
        name: 'coffer',
        run: async (run: number) => {
          const finished = await finishedSince(queue);
          const submissions = await cofferPost(round(run, 'accept'), sized(run, PEER_SUBMISSIONS));
          await drain(finished, submissions.accepted);
          if (run >= 0) accepted.coffer.push(submissions);
          return submissions.accepted / submissions.seconds;
        },
      },
      {
        name: 'rclone',
        run: async (run: number) => {
          const jobs = rcloneJobs(rcd.url);
          const submissions = await rclonePost(round(run, 'accept'), sized(run, PEER_SUBMISSIONS), jobs.add);
          await drain(jobs.finished, submissions.accepted);
          tally.rclone.failed += jobs.failed();
          if (run >= 0) accepted.rclone.push(submissions);
          return submissions.accepted / submissions.seconds;
        },
      },
    ]);

    tally.coffer.failed = (await failedCoffer()) - failedBefore;
    const acceptedProblems = problemsOf(tally);
    tally = newTally();
    failedBefore = await failedCoffer();
    // (b) End to end: the jobRate clock on both sides (first submission sent → a poll every
    // E2E_POLL_MS sees the round's last job finished): Coffer's queue counts, rclone's job/status.
    console.log(`  end to end: ${PEER_JOBS} tiny jobs`);
    const endToEndSamples = await interleaveAfterWarmUp(RUNS.peer, [
      {
        name: 'coffer',
        run: async (run: number) =>
          jobRate(
            await finishedSince(queue),
            async () => (await cofferPost(round(run, 'e2e'), sized(run, PEER_JOBS))).accepted,
          ),
      },
      {
        name: 'rclone',
        run: async (run: number) => {
          const jobs = rcloneJobs(rcd.url);
          const rate = await jobRate(
            jobs.finished,
            async () => (await rclonePost(round(run, 'e2e'), sized(run, PEER_JOBS), jobs.add)).accepted,
          );
          tally.rclone.failed += jobs.failed();
          return rate;
        },
      },
    ]);

    tally.coffer.failed = (await failedCoffer()) - failedBefore;
    const endToEndProblems = problemsOf(tally);
    const sides =
      `Coffer: POST /backup of a folder holding one 100 B file, API + 2 workers (WORKER_CONCURRENCY ` +
      `${E2E_WORKER_CONCURRENCY}), every transition logged in MySQL (durable history), each backup a complete ` +
      `snapshot with its manifest; ${version}: rcd operations/copyfile of the same file into a new folder, ` +
      `_async=true, jobs kept in memory only, 60 s after they finish`;
    const rcloneLatency = latencyOf(accepted.rclone);
    const cofferLatency = latencyOf(accepted.coffer);
    return [
      caseResult({
        name: `accepted submissions, ${PEER_SUBMISSIONS} per round, ${HTTP_CONNECTIONS} connections, against rclone rcd`,
        unit: 'req/s',
        target: '>= 1.0',
        baselineName: 'rclone rcd copyfile _async',
        coffer: acceptedSamples.get('coffer') ?? [],
        baseline: acceptedSamples.get('rclone') ?? [],
        latencyMs: { coffer: cofferLatency, baseline: rcloneLatency },
        note:
          `accepted answers (202 / 200 with a job id) over the seconds from the first request sent to the last ` +
          `answer, over ${HTTP_CONNECTIONS} kept-alive connections; both sides run the jobs as they accept them; ` +
          `${sides}${acceptedProblems}`,
      }),
      caseResult({
        name: `end-to-end tiny jobs, ${PEER_JOBS} per round, against rclone rcd`,
        unit: 'jobs/s',
        target: '>= 1.0',
        baselineName: 'rclone rcd copyfile _async, job/status',
        coffer: endToEndSamples.get('coffer') ?? [],
        baseline: endToEndSamples.get('rclone') ?? [],
        note:
          `from the first submission sent until a poll every ${E2E_POLL_MS} ms sees the last job finished ` +
          `(Coffer: the queue's completed + failed count, one Redis call; rclone: job/status of the jobs not yet ` +
          `seen finished, in submission order, ${STATUS_WINDOW} calls at a time, until one still runs); ` +
          `${HTTP_CONNECTIONS} submissions at a time; ${sides}${endToEndProblems}`,
      }),
    ];
  } finally {
    await queue.close();
    redis.disconnect();
    await Promise.all([stop(api.child), ...workers.map(stop), stop(rcd.child)]);
  }
}

/**
 * The unchanged 20k tree backed up again, as the worker runs a backup (the engine's
 * `createSnapshot`, incremental, with `measureTree` beside it, without the queue and MySQL),
 * against `rclone copy` into a copy it made before, untimed, and so finds up to date (size and
 * modification time of each file; `--checkers` and `--transfers` set to the number of cores,
 * defaults otherwise). Coffer writes a complete snapshot each time (every file hard-linked to
 * the previous one, and its manifest); rclone only checks.
 */
async function runRecheckCase(engine: CopyEngine, source: string, dir: string, version: string): Promise<CaseResult> {
  console.log('case: unchanged re-run of the 20k tree against rclone copy');
  const cores = String(os.availableParallelism());
  const rcloneTarget = join(dir, 'rclone');
  const config = join(dir, 'rclone.conf');
  mkdirSync(dir, { recursive: true });
  writeFileSync(config, '');
  const rcloneCopy = () =>
    timeCommand('rclone', [
      'copy',
      source,
      rcloneTarget,
      `--checkers=${cores}`,
      `--transfers=${cores}`,
      `--config=${config}`,
    ]);
  let job = 0;
  const backup = async () => {
    let linked = 0;
    const seconds = await timed(async () => {
      const [, made] = await Promise.all([
        engine.measureTree(source, undefined, {}),
        engine.createSnapshot({
          source,
          backupRoot: join(dir, 'coffer'),
          destination: 'tree',
          jobId: `peer-${(job += 1)}`,
          startedAt: new Date(),
        }),
      ]);
      linked = made.filesLinked;
    });
    return { seconds, linked };
  };
  // Untimed: the first, full copies; then rclone once more, to see that it finds nothing to copy.
  rcloneCopy();
  await backup();
  const check = spawnSync('rclone', ['copy', source, rcloneTarget, `--config=${config}`, '-v'], { encoding: 'utf8' });
  if (check.status !== 0 || !check.stderr.includes('There was nothing to transfer')) {
    throw new Error(`rclone copy of the unchanged tree was not a no-op: ${check.stderr.slice(-500)}`);
  }
  let unlinked = 0;
  const contenders = [
    {
      name: 'coffer',
      run: async () => {
        const { seconds, linked } = await backup();
        if (linked !== 20_000) unlinked += 1;
        return seconds;
      },
    },
    { name: 'rclone', run: async () => rcloneCopy() },
  ];
  const samples = await interleaveAfterWarmUp(RUNS.incremental, contenders, flushWrites);
  return caseResult({
    name: 'unchanged re-run of the 20k tree, against rclone copy',
    unit: 's',
    target: '<= 1.25',
    baselineName: `rclone copy (up to date), --checkers=${cores} --transfers=${cores}`,
    coffer: samples.get('coffer') ?? [],
    baseline: samples.get('rclone') ?? [],
    note:
      `Coffer: createSnapshot (incremental) with measureTree beside it, as a worker runs a backup, writing a ` +
      `complete snapshot (20,000 hard links and a manifest); ${version}: rclone copy into its own earlier copy, ` +
      `comparing size and modification time, copying nothing; a new process each run, timed to its exit` +
      (unlinked > 0 ? `; ${unlinked} Coffer runs did not link every file` : ''),
  });
}
