import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '@coffer/shared';
import { waitFor } from '../test/helpers/environment.js';
import {
  Cluster,
  countLogRows,
  logRows,
  partialFolders,
  startFaultStack,
  type FaultStack,
  type ManagedProcess,
  type Servers,
} from './harness.js';

const JOBS = 2000;
const SOURCES = 100;
const WORKERS = 3;
// A worker is killed each time this many more jobs have finished (and one is at work): kills
// keep pace with the work, on a fast machine as on a loaded one, about fifty in all.
const KILL_EVERY_JOBS = 40;
const TERMINAL = ['completed', 'failed', 'cancelled'];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

let servers: Servers;
let cluster: Cluster;
let sources: string;
let backups: string;

let stack: FaultStack;
let redis: Redis;
let queue: Queue;

beforeAll(async () => {
  stack = await startFaultStack({ WORKER_CONCURRENCY: '4' });
  ({ servers, cluster, sources, backups } = stack);
  redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
  queue = new Queue(QUEUE_NAME, { connection: redis, prefix: cluster.env.QUEUE_PREFIX });
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await stack?.stop();
});

/**
 * Jobs the queue has finished: known at once, where their log rows may still wait in the
 * outbox (for seconds when the worker holding its drain lock is the one killed).
 */
async function finishedJobs(): Promise<number> {
  const counts = await queue.getJobCounts('completed', 'failed');
  return (counts.completed ?? 0) + (counts.failed ?? 0);
}

describe('soak: 2,000 jobs while workers are killed at random', () => {
  // Minutes on a loaded machine; the deadlines inside fail it sooner if the jobs stop moving.
  it('ends with every job exactly once terminal, every completed snapshot exact, no partial folder', async () => {
    for (let i = 0; i < SOURCES; i++) {
      await mkdir(join(sources, `s${i}`));
      await writeFile(join(sources, `s${i}`, 'payload.txt'), `source ${i}\n`.repeat(i + 1));
    }
    const workers: ManagedProcess[] = [];
    for (let w = 0; w < WORKERS; w++) workers.push(await cluster.startWorker(`soak-${w}`));

    const started = Date.now();
    const ids: string[] = [];
    const submitting = (async () => {
      for (let batch = 0; batch < JOBS; batch += 25) {
        const made = await Promise.all(
          Array.from({ length: Math.min(25, JOBS - batch) }, (_, k) => {
            const n = (batch + k) % SOURCES;
            return cluster.submit(join(sources, `s${n}`), `soak/s${n}`);
          }),
        );
        ids.push(...made);
      }
    })();

    let kills = 0;
    const killing = (async () => {
      for (let next = KILL_EVERY_JOBS; next < JOBS; next += KILL_EVERY_JOBS) {
        // Once `next` jobs have finished, one of the workers that have taken jobs since they
        // started: a kill lands on work, not on a worker still starting. None once all are done.
        const victim = await waitFor(
          async () => {
            const done = await finishedJobs();
            if (done >= JOBS) return null;
            const working = workers.flatMap((worker, w) => (worker.log().includes('backup started') ? [w] : []));
            if (done < next || working.length === 0) return undefined;
            return working[Math.floor(Math.random() * working.length)];
          },
          150_000,
          `${next} jobs to finish and a worker at work`,
        );
        if (victim === null) break;
        await workers[victim]?.stop('SIGKILL');
        kills += 1;
        workers[victim] = cluster.worker(`soak-${victim}-${kills}`);
      }
    })();

    await submitting;
    await killing;
    await waitFor(
      async () => ((await countLogRows(servers, TERMINAL)) >= JOBS ? true : undefined),
      150_000,
      'every job to finish',
    );
    const elapsedMs = Date.now() - started;

    const rows = await logRows(servers);
    const byJob = new Map<string, typeof rows>();
    for (const row of rows) if (row.jobId) byJob.set(row.jobId, [...(byJob.get(row.jobId) ?? []), row]);
    expect(new Set(ids).size).toBe(JOBS);
    expect(byJob.size).toBe(JOBS);
    let completed = 0;
    const recoveries: number[] = [];
    for (const id of ids) {
      const history = byJob.get(id) ?? [];
      const terminal = history.filter((row) => TERMINAL.includes(row.status));
      expect(terminal, id).toHaveLength(1);
      expect(history[0]?.status, id).toBe('queued');
      expect(history[history.length - 1]?.status, id).toBe(terminal[0]?.status);
      if (terminal[0]?.status === 'completed') completed += 1;
      const actives = history.filter((row) => row.status === 'active');
      for (let a = 1; a < actives.length; a++) {
        recoveries.push(new Date(actives[a]?.date ?? 0).getTime() - new Date(actives[a - 1]?.date ?? 0).getTime());
      }
    }

    // Every completed snapshot holds exactly its source's file.
    let snapshotsChecked = 0;
    for (let n = 0; n < SOURCES; n++) {
      const expected = await readFile(join(sources, `s${n}`, 'payload.txt'), 'utf8');
      const folder = join(backups, 'soak', `s${n}`);
      const entries = await readdir(folder);
      // Beside the snapshots only Coffer's records of each one: which source it copied, and its manifest.
      const snapshots = entries.filter((name) => name !== '.coffer');
      expect((await readdir(join(folder, '.coffer'))).sort()).toEqual(
        snapshots.flatMap((name) => [`${name}.json`, `${name}.manifest.ndjson`]).sort(),
      );
      for (const snapshot of snapshots) {
        expect(await readdir(join(folder, snapshot))).toEqual(['payload.txt']);
        expect(await readFile(join(folder, snapshot, 'payload.txt'), 'utf8')).toBe(expected);
        snapshotsChecked += 1;
      }
    }
    expect(snapshotsChecked).toBe(completed);
    expect(completed).toBe(JOBS);
    expect(await partialFolders(backups)).toEqual([]);
    console.log(
      `[faults] soak: ${JOBS} jobs in ${elapsedMs} ms, ${kills} workers killed, ${recoveries.length} attempts re-run after a kill ` +
        `(recovery median ${median(recoveries)} ms, max ${Math.max(0, ...recoveries)} ms), ` +
        `${completed} completed, ${rows.length} log rows and ${snapshotsChecked} snapshots checked`,
    );
  }, 600_000);
});
