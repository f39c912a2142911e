import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeTree } from '../test/helpers/trees.js';
import { waitFor } from '../test/helpers/environment.js';
import { type FaultStack, logRows, makeTree, partialFolders, startFaultStack } from './harness.js';

let stack: FaultStack;

beforeAll(async () => {
  // One file at a time, so the copy lasts long enough to be paused in the middle.
  stack = await startFaultStack({ COPY_CONCURRENCY: '1', WORKER_CONCURRENCY: '1' });
});

afterEach(async () => {
  await Promise.all([...stack.cluster.workers.values()].map((worker) => worker.stop('SIGKILL')));
});

afterAll(async () => {
  await stack?.stop();
});

describe('a worker paused (SIGSTOP) past its lock while another takes the job over', () => {
  it('stops when it resumes, touches nothing of the new attempt, and the snapshot is complete', async () => {
    const { cluster, servers, sources, backups } = stack;
    const source = join(sources, 'paused');
    await makeTree(source, 80, 250, 4096);
    const paused = await cluster.startWorker('paused');
    const id = await cluster.submit(source, 'paused');
    await waitFor(
      async () => ((await cluster.job(id)).progress.files > 200 ? true : undefined),
      30_000,
      'copy progress',
    );
    const pid = paused.child?.pid ?? 0;
    process.kill(pid, 'SIGSTOP');
    try {
      // The lock (JOB_LOCK_MS 2 s) runs out; the other worker's stall check takes the job.
      cluster.worker('taker');
      await waitFor(
        async () => ((await logRows(servers, id)).some((row) => row.worker === 'taker') ? true : undefined),
        30_000,
        'the second attempt to start',
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }

    const view = await cluster.waitForStatus(id, ['completed', 'failed'], 120_000);
    expect(view.status, JSON.stringify(view.error)).toBe('completed');
    const tree = await describeTree(source);
    expect(await describeTree(view.result?.path ?? '')).toEqual(tree);
    expect(view.result?.files).toBe(80 * 250);

    // The resumed attempt noticed it lost the job, removed its own copy, and wrote no row.
    await waitFor(
      async () => (paused.log().includes('lost the job to another one') ? true : undefined),
      30_000,
      'the paused attempt to stop',
    );
    await waitFor(async () => ((await partialFolders(backups)).length === 0 ? true : undefined), 30_000, 'no partial');
    const snapshots = (await readdir(join(backups, 'paused'))).filter((name) => name.endsWith(`-${id}`));
    expect(snapshots).toEqual([view.result?.path.split('/').pop()]);
    const rows = await logRows(servers, id);
    expect(rows.map((row) => `${row.status}:${row.worker}`)).toEqual([
      'queued:api',
      'active:paused',
      'active:taker',
      'completed:taker',
    ]);
    // The snapshot is still exact once the paused worker has had its say.
    expect(await describeTree(view.result?.path ?? '')).toEqual(tree);
  });
});
