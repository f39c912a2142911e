import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeTree } from '../test/helpers/trees.js';
import { waitFor } from '../test/helpers/environment.js';
import {
  Cluster,
  type FaultStack,
  logRows,
  makeTree,
  partialFolders,
  type Servers,
  startFaultStack,
} from './harness.js';

let servers: Servers;
let cluster: Cluster;
let sources: string;
let backups: string;

let stack: FaultStack;

beforeAll(async () => {
  // One file at a time and one job per worker, so a copy lasts long enough to be interrupted.
  stack = await startFaultStack({ COPY_CONCURRENCY: '1', WORKER_CONCURRENCY: '1', SHUTDOWN_TIMEOUT_MS: '200' });
  ({ servers, cluster, sources, backups } = stack);
});

// Each case starts its own workers; none may linger into the next one.
afterEach(async () => {
  await Promise.all([...cluster.workers.values()].map((worker) => worker.stop('SIGKILL')));
});

afterAll(async () => {
  await stack?.stop();
});

describe('a worker killed (SIGKILL) mid-copy', () => {
  it('loses nothing: another worker removes the partial copy and completes an exact snapshot', async () => {
    const source = join(sources, 'crash');
    await makeTree(source, 80, 250, 4096);
    const first = await cluster.startWorker('victim');
    const id = await cluster.submit(source);
    await waitFor(
      async () => ((await cluster.job(id)).progress.files > 200 ? true : undefined),
      30_000,
      'copy progress',
    );
    await first.stop('SIGKILL');
    const killedAt = Date.now();
    const rescuer = cluster.worker('rescuer');

    const view = await cluster.waitForStatus(id, ['completed', 'failed'], 90_000);
    expect(view.status).toBe('completed');
    expect(view.result?.path, JSON.stringify(view)).toBeTruthy();
    expect(await describeTree(view.result?.path ?? '')).toEqual(await describeTree(source));
    expect(await partialFolders(backups)).toEqual([]);

    const rows = await waitFor(async () => {
      const all = await logRows(servers, id);
      return all.some((row) => row.status === 'completed') ? all : undefined;
    });
    expect(rows.map((row) => `${row.status}:${row.worker}`)).toEqual([
      'queued:api',
      'active:victim',
      'active:rescuer',
      'completed:rescuer',
    ]);
    const rescued = new Date(rows[2]?.date ?? 0).getTime();
    console.log(`[faults] SIGKILL mid-copy: recovered by another worker after ${rescued - killedAt} ms`);
    await rescuer.stop('SIGTERM');
  });
});

describe('a worker stopped (SIGTERM) while busy', () => {
  it('finishes a job that ends within the shutdown timeout and exits 0', async () => {
    const source = join(sources, 'quick');
    await makeTree(source, 2, 20, 1024);
    const worker = await cluster.startWorker('finisher', { SHUTDOWN_TIMEOUT_MS: '20000' });
    const id = await cluster.submit(source);
    await cluster.waitForStatus(id, ['active', 'completed']);
    expect(await worker.stop('SIGTERM')).toBe(0);
    expect((await cluster.waitForStatus(id, ['completed', 'failed'])).status).toBe('completed');
  });

  it('hands a long job back once its shutdown timeout runs out, exits 0, leaves no partial folder, and another worker completes it', async () => {
    const source = join(sources, 'long');
    await makeTree(source, 80, 250, 4096);
    const worker = await cluster.startWorker('leaver');
    const id = await cluster.submit(source);
    await waitFor(
      async () => ((await cluster.job(id)).progress.files > 100 ? true : undefined),
      30_000,
      'copy progress',
    );
    // The bound is the behaviour: the worker does not wait for the rest of the copy but hands
    // the job back and exits 0 by itself (a worker that overstays is killed by `stop` after
    // 30 s: no exit code). How long it took is information only.
    const stopping = Date.now();
    expect(await worker.stop('SIGTERM')).toBe(0);
    const stopMs = Date.now() - stopping;
    expect(await partialFolders(backups)).toEqual([]);
    expect((await cluster.job(id)).status).toBe('queued');

    cluster.worker('successor');
    const view = await cluster.waitForStatus(id, ['completed', 'failed'], 90_000);
    expect(view.status).toBe('completed');
    expect(await describeTree(view.result?.path ?? '')).toEqual(await describeTree(source));
    const rows = await waitFor(async () => {
      const all = await logRows(servers, id);
      return all.some((row) => row.status === 'completed') ? all : undefined;
    });
    expect(rows.map((row) => `${row.status}:${row.worker}:${row.code ?? ''}`)).toEqual([
      'queued:api:',
      'active:leaver:',
      'retrying:leaver:WORKER_STOPPED',
      'active:successor:',
      'completed:successor:',
    ]);
    console.log(`[faults] SIGTERM busy worker: stopped in ${stopMs} ms (SHUTDOWN_TIMEOUT_MS 200), job handed back`);
  });
});
