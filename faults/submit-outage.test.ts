import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers/environment.js';
import {
  Cluster,
  type FaultStack,
  logRows,
  type LogRow,
  type Servers,
  startFaultStack,
  waitForServers,
} from './harness.js';

// A burst of submissions over HTTP (the configured admin token) into destinations the API knows,
// while MySQL or Redis goes away part-way. A job's `queued` row goes through the log outbox in
// Redis, so: every job answered 202 completes, its history starts with exactly one `queued` row
// and runs queued < active < completed in the log, nothing accepted is lost.

const BURST = 200;
const IN_FLIGHT = 8;
const DESTINATIONS = 3;

let servers: Servers;
let cluster: Cluster;
let stack: FaultStack;
let sourceFolders: string[] = [];

beforeAll(async () => {
  stack = await startFaultStack({ WORKER_CONCURRENCY: '4' });
  ({ servers, cluster } = stack);
  await cluster.startWorker('w1');
  await cluster.startWorker('w2');
  sourceFolders = [];
  for (let d = 0; d < DESTINATIONS; d++) {
    const source = join(stack.sources, `burst-${d}`);
    await mkdir(source);
    await writeFile(join(source, 'data.txt'), `burst ${d}\n`);
    sourceFolders.push(source);
  }
  // One backup into each destination first: the API then knows their owners.
  const first = [];
  for (let d = 0; d < DESTINATIONS; d++) first.push(await cluster.submit(sourceFolders[d] ?? '', `burst-${d}`));
  for (const id of first) await cluster.waitForStatus(id, ['completed'], 60_000);
});

afterAll(async () => {
  await stack?.stop();
});

interface BurstResult {
  accepted: string[];
  /** Answers other than 202, by `status code`. */
  refused: Map<string, number>;
}

/**
 * Submits `total` backups, `IN_FLIGHT` at a time. `onAnswer` sees the tally after each answer.
 * With `retry`, a refused submission is sent again until it is accepted (as a client would),
 * so the burst ends with `total` accepted jobs.
 */
async function burst(total: number, retry: boolean, onAnswer: (result: BurstResult) => void): Promise<BurstResult> {
  const result: BurstResult = { accepted: [], refused: new Map() };
  let next = 0;
  const deadline = Date.now() + 120_000;
  async function lane(): Promise<void> {
    while (next < total) {
      const n = next++;
      for (;;) {
        if (Date.now() > deadline) throw new Error('the burst took more than 120 s');
        const d = n % DESTINATIONS;
        const response = await cluster
          .request<{ id: string; code: string }>('POST', '/backup', {
            source: sourceFolders[d],
            destination: `burst-${d}`,
          })
          .catch((err: unknown) => ({ status: 0, body: { id: '', code: String(err) }, ms: 0 }));
        if (response.status === 202) {
          result.accepted.push(response.body.id);
          onAnswer(result);
          break;
        }
        const key = `${response.status} ${response.body.code}`;
        result.refused.set(key, (result.refused.get(key) ?? 0) + 1);
        onAnswer(result);
        if (!retry) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, () => lane()));
  return result;
}

/** Waits until each job has a terminal row in MySQL; returns the rows of those jobs. */
async function settledRows(ids: readonly string[], timeoutMs = 120_000): Promise<LogRow[]> {
  const wanted = new Set(ids);
  return waitFor(
    async () => {
      const rows = await logRows(servers).catch(() => null);
      if (!rows) return undefined;
      const finished = new Set(
        rows
          .filter((row) => ['completed', 'failed', 'cancelled'].includes(row.status) && wanted.has(row.jobId ?? ''))
          .map((row) => row.jobId),
      );
      return finished.size === wanted.size ? rows : undefined;
    },
    timeoutMs,
    `${ids.length} jobs to finish in the log`,
  );
}

/** Per job: how many `queued` rows, and whether its rows run queued < active… < completed, nothing else. */
function check(ids: readonly string[], rows: readonly LogRow[]) {
  const byJob = new Map<string, LogRow[]>();
  for (const row of rows) if (row.jobId) byJob.set(row.jobId, [...(byJob.get(row.jobId) ?? []), row]);
  let completed = 0;
  const notOneQueued: string[] = [];
  const outOfOrder: string[] = [];
  for (const id of ids) {
    const history = byJob.get(id) ?? []; // ordered by id
    const statuses = history.map((row) => row.status);
    if (statuses.filter((status) => status === 'queued').length !== 1) notOneQueued.push(id);
    if (statuses.at(-1) === 'completed') completed += 1;
    const actives = statuses.slice(1, -1);
    const clean =
      statuses[0] === 'queued' &&
      statuses.at(-1) === 'completed' &&
      actives.length >= 1 &&
      actives.every((status) => status === 'active' || status === 'retrying');
    if (!clean) outOfOrder.push(`${id}: ${statuses.join(',')}`);
  }
  // Jobs the log started but never finished: a refused submission must close its history.
  const dangling = [...byJob.entries()]
    .filter(([, history]) => !history.some((row) => ['completed', 'failed', 'cancelled'].includes(row.status)))
    .map(([id]) => id);
  return { completed, notOneQueued, outOfOrder, dangling, lost: ids.length - completed };
}

describe('a submission burst', () => {
  it('while MySQL goes away part-way: every submission is accepted, and every accepted job completes once it returns, its queued row first', async () => {
    let stopping = null as Promise<number | null> | null;
    let acceptedWhileDown = 0;
    let downAt = 0;
    const result = await burst(BURST, false, ({ accepted }) => {
      if (accepted.length === Math.floor(BURST / 3) && !stopping) {
        stopping = servers.mariadb.stop('SIGKILL');
        void stopping.then(() => (downAt = Date.now()));
      }
      if (downAt > 0 && !servers.mariadb.running) acceptedWhileDown += 1;
    });
    await stopping;
    expect(servers.mariadb.running).toBe(false);
    expect(Object.fromEntries(result.refused)).toEqual({});
    expect(result.accepted).toHaveLength(BURST);
    expect(acceptedWhileDown).toBeGreaterThan(0);
    // The jobs run meanwhile (their views come from Redis); their rows wait in the outbox.
    const ready = await cluster.request<{ mysql: string }>('GET', '/ready');
    expect(ready.body.mysql).toBe('down');

    servers.mariadb.start();
    await waitForServers(servers);
    const upAt = Date.now();
    const rows = await settledRows(result.accepted);
    const figures = check(result.accepted, rows);
    expect(figures).toEqual({ completed: BURST, notOneQueued: [], outOfOrder: [], dangling: [], lost: 0 });
    for (const id of result.accepted.slice(-5)) expect((await cluster.job(id)).status).toBe('completed');
    console.log(
      `[faults] MySQL down part-way through a burst of ${BURST}: ${result.accepted.length} accepted (${acceptedWhileDown} while MySQL was down), ` +
        `${figures.completed} completed, ${figures.lost} lost, ${figures.outOfOrder.length} ordering violations; ` +
        `the log caught up ${Date.now() - upAt} ms after MySQL returned`,
    );
  });

  it('while Redis goes away part-way: submissions meanwhile are refused with 503 QUEUE_UNAVAILABLE, every accepted job completes once it returns', async () => {
    let stopping = null as Promise<number | null> | null;
    let starting = null as Promise<void> | null;
    let downAt = 0;
    let upAt = 0;
    const result = await burst(BURST, true, ({ accepted, refused }) => {
      if (accepted.length >= Math.floor(BURST / 3) && !stopping) {
        stopping = servers.redis.stop('SIGTERM');
        void stopping.then(() => (downAt = Date.now()));
      }
      const refusals = [...refused.values()].reduce((sum, n) => sum + n, 0);
      if (downAt > 0 && refusals >= 20 && !starting) {
        servers.redis.start();
        starting = waitForServers(servers).then(() => {
          upAt = Date.now();
        });
      }
    });
    await starting;
    // Refusals say what happened; no other answer came.
    expect([...result.refused.keys()]).toEqual(['503 QUEUE_UNAVAILABLE']);
    const refusedCount = result.refused.get('503 QUEUE_UNAVAILABLE') ?? 0;
    expect(refusedCount).toBeGreaterThanOrEqual(20);
    expect(result.accepted).toHaveLength(BURST);

    const rows = await settledRows(result.accepted);
    const figures = check(result.accepted, rows);
    const danglingRows = rows.filter((row) => figures.dangling.includes(row.jobId ?? ''));
    if (figures.dangling.length + figures.notOneQueued.length + figures.outOfOrder.length > 0) {
      console.log('[faults] figures:', JSON.stringify(figures), 'open histories:', JSON.stringify(danglingRows));
    }
    expect(figures).toEqual({ completed: BURST, notOneQueued: [], outOfOrder: [], dangling: [], lost: 0 });
    console.log(
      `[faults] Redis down ${upAt - downAt} ms part-way through a burst of ${BURST}: ${result.accepted.length} accepted, ` +
        `${refusedCount} submissions refused with 503 QUEUE_UNAVAILABLE (and sent again), ${figures.completed} completed, ` +
        `${figures.lost} lost, ${figures.outOfOrder.length} ordering violations, ${figures.dangling.length} histories left open`,
    );
  });
});
