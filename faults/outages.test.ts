import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers/environment.js';
import { describeTree } from '../test/helpers/trees.js';
import {
  Cluster,
  type FaultStack,
  logRows,
  makeTree,
  outboxRows,
  type Servers,
  startFaultStack,
  waitForServers,
} from './harness.js';

let servers: Servers;
let cluster: Cluster;
let sources: string;

let stack: FaultStack;

beforeAll(async () => {
  stack = await startFaultStack({ WORKER_CONCURRENCY: '2' });
  ({ servers, cluster, sources } = stack);
  await cluster.startWorker('w1');
  await cluster.startWorker('w2');
});

afterAll(async () => {
  await stack?.stop();
});

/** A promise and the function that fulfils it. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((fulfil) => (resolve = fulfil));
  return { promise, resolve };
}

async function smallSources(prefix: string, count: number): Promise<string[]> {
  const made: string[] = [];
  for (let i = 0; i < count; i++) {
    const source = join(sources, `${prefix}-${i}`);
    await mkdir(source);
    await writeFile(join(source, 'data.txt'), `${prefix} ${i}\n`);
    made.push(source);
  }
  return made;
}

/** Each job's statuses in log order must be queued, active…, one terminal: the contract's shape. */
async function expectCleanHistories(ids: string[]): Promise<void> {
  const rows = await logRows(servers);
  for (const id of ids) {
    const statuses = rows.filter((row) => row.jobId === id).map((row) => row.status);
    expect(statuses[0], id).toBe('queued');
    expect(
      statuses.filter((status) => ['completed', 'failed', 'cancelled'].includes(status)),
      id,
    ).toEqual(['completed']);
    expect(statuses[statuses.length - 1], id).toBe('completed');
    expect(statuses.filter((status) => status === 'active').length, id).toBeGreaterThanOrEqual(1);
  }
}

describe('Redis down', () => {
  it('the API refuses new backups with 503 QUEUE_UNAVAILABLE while Redis is down, without waiting for it; accepted jobs survive the restart (AOF) and complete', async () => {
    const before = await smallSources('before-redis', 10);
    const big = join(sources, 'big-during-redis');
    await makeTree(big, 20, 200, 4096);
    const ids = [await cluster.submit(big)];
    for (const source of before) ids.push(await cluster.submit(source));

    // Submissions keep coming, one after another, while Redis goes away: each is either
    // accepted (and must complete) or refused with 503, never lost in between. A few are
    // accepted first; the rest go in from the moment Redis is told to stop until a few have
    // been refused, however long the outage takes to show.
    const during = await smallSources('during-redis', 40);
    const fewAccepted = deferred();
    const stopping = deferred();
    let acceptedDuring = 0;
    let refusedDuring = 0;
    const submitting = (async () => {
      for (let n = 0; refusedDuring < 5; n++) {
        if (n === 1000) throw new Error(`only ${refusedDuring} of ${n} submissions refused`);
        if (acceptedDuring === 3) {
          fewAccepted.resolve();
          await stopping.promise;
        }
        const source = during[n % during.length] ?? '';
        const response = await cluster
          .request<{ id: string; code: string }>('POST', '/backup', { source })
          .catch(() => null);
        if (response?.status === 202) {
          ids.push(response.body.id);
          acceptedDuring += 1;
        } else if (response?.status === 503 && response.body.code === 'QUEUE_UNAVAILABLE') refusedDuring += 1;
        else throw new Error(`unexpected answer during the outage: ${JSON.stringify(response)}`);
      }
    })();
    await Promise.race([fewAccepted.promise, submitting]);
    const stopped = servers.redis.stop('SIGTERM');
    stopping.resolve();
    await stopped;
    const downAt = Date.now();
    // Fails fast: answered while Redis is still down (the producer queues nothing offline,
    // which would hold the request until Redis came back). The request's own deadline
    // (10 s) is only a guard against that hang; the time is information.
    const refused = await cluster.request<{ code: string }>('POST', '/backup', { source: before[0] });
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe('QUEUE_UNAVAILABLE');
    expect(servers.redis.running).toBe(false);
    const ready = await cluster.request<{ redis: string; mysql: string }>('GET', '/ready');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ redis: 'down', mysql: 'up' });

    await submitting;
    expect(refusedDuring).toBe(5);
    servers.redis.start();
    await waitForServers(servers);
    const recovered = await waitFor(
      async () => ((await cluster.request('GET', '/ready').catch(() => null))?.status === 200 ? Date.now() : undefined),
      30_000,
      'the API to see Redis again',
    );
    const after = await smallSources('after-redis', 3);
    for (const source of after) ids.push(await cluster.submit(source));

    for (const id of ids)
      expect((await cluster.waitForStatus(id, ['completed', 'failed'], 90_000)).status).toBe('completed');
    const view = await cluster.job(ids[0] ?? '');
    expect(await describeTree(view.result?.path ?? '')).toEqual(await describeTree(big));
    await waitFor(async () =>
      (await logRows(servers)).filter((row) => row.status === 'completed').length >= ids.length ? true : undefined,
    );
    await expectCleanHistories(ids);
    console.log(
      `[faults] Redis down ${recovered - downAt} ms: ${ids.length} accepted jobs all completed, ${refusedDuring} submissions refused with 503 during the outage; refusal answered in ${Math.round(refused.ms)} ms`,
    );
  });
});

describe('MySQL down', () => {
  it('jobs keep running, their transitions (and catalog rows) wait in Redis and land in order when MySQL returns; the API refuses backups into new destinations with 503', async () => {
    const first = await smallSources('before-mysql', 10);
    const ids: string[] = [];
    // The workers are paused while the jobs go in and MySQL goes away, so every job runs,
    // start to end, during the outage (left running, they could finish some before it).
    const workers = [...cluster.workers.values()];
    const marks = workers.map((worker) => worker.mark());
    const pids = workers.map((worker) => worker.child?.pid ?? 0);
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      for (const source of first) ids.push(await cluster.submit(source));
      await servers.mariadb.stop('SIGKILL');
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }

    // A backup into a destination the API knows is accepted (faults/submit-outage.test.ts); one
    // into a destination it has never seen needs its owner recorded in MySQL first.
    const refused = await cluster.request<{ code: string }>('POST', '/backup', {
      source: first[0],
      destination: 'never-seen-before-the-outage',
    });
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe('LOG_UNAVAILABLE');
    const ready = await cluster.request<{ mysql: string }>('GET', '/ready');
    expect(ready.body.mysql).toBe('down');
    // Views of jobs Redis holds still answer while the log is away.
    for (const id of ids) expect((await cluster.waitForStatus(id, ['completed'], 30_000)).status).toBe('completed');

    // Their transitions wait in Redis, and a worker has tried to move them and failed: MySQL
    // comes back to a drainer that is retrying, as after a real outage.
    const waiting = await outboxRows(servers, cluster.env.QUEUE_PREFIX);
    for (const id of ids) {
      expect(
        waiting.filter((row) => row.jobId === id).map((row) => row.status),
        id,
      ).toContain('completed');
    }
    await waitFor(
      async () =>
        workers.some((worker, w) => worker.logSince(marks[w] ?? 0).includes('keeping them in Redis'))
          ? true
          : undefined,
      30_000,
      'a worker to meet the MySQL outage',
    );
    servers.mariadb.start();
    await waitForServers(servers);
    const rows = await waitFor(
      async () => {
        const all = await logRows(servers).catch(() => []);
        const done = all.filter((row) => row.status === 'completed' && ids.includes(row.jobId ?? ''));
        return done.length === ids.length ? all : undefined;
      },
      60_000,
      'the outbox to drain',
    );
    await expectCleanHistories(ids);
    // Each backup's catalog row travelled with its `completed` row and landed with it.
    for (const id of ids) {
      const [view, snapshot] = await Promise.all([
        cluster.job(id),
        cluster.request<{ id: string; path: string }>('GET', `/snapshots/${id}`),
      ]);
      expect(snapshot.status, id).toBe(200);
      expect(snapshot.body.path).toBe(view.result?.path);
    }
    const later = await smallSources('after-mysql', 2);
    for (const source of later) {
      const id = await cluster.submit(source);
      expect((await cluster.waitForStatus(id, ['completed', 'failed'])).status).toBe('completed');
    }
    console.log(
      `[faults] MySQL down: ${ids.length} jobs completed meanwhile; ${rows.length} rows checked after it returned`,
    );
  });
});
