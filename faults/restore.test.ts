import { readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeTree } from '../test/helpers/trees.js';
import { waitFor } from '../test/helpers/environment.js';
import { Cluster, type FaultStack, logRows, makeTree, type Servers, startFaultStack } from './harness.js';

let servers: Servers;
let cluster: Cluster;
let sources: string;
let stack: FaultStack;

beforeAll(async () => {
  // One file at a time and one job per worker, so a restore lasts long enough to be interrupted.
  // Restores go into SOURCE_ROOTS (RESTORE_ROOTS' default).
  stack = await startFaultStack({ COPY_CONCURRENCY: '1', WORKER_CONCURRENCY: '1', SHUTDOWN_TIMEOUT_MS: '200' });
  ({ servers, cluster, sources } = stack);
});

afterEach(async () => {
  await Promise.all([...cluster.workers.values()].map((worker) => worker.stop('SIGKILL')));
});

afterAll(async () => {
  await stack?.stop();
});

/** Backs up `source` with a worker of its own and returns the completed job's id and snapshot path. */
async function backUp(source: string): Promise<{ id: string; path: string }> {
  const worker = await cluster.startWorker('backer');
  const id = await cluster.submit(source);
  const view = await cluster.waitForStatus(id, ['completed', 'failed'], 90_000);
  expect(view.status, JSON.stringify(view.error)).toBe('completed');
  await worker.stop('SIGTERM');
  return { id, path: view.result?.path ?? '' };
}

async function restore(snapshot: string, target: string): Promise<string> {
  const response = await cluster.request<{ id: string }>('POST', '/restore', { snapshot, target });
  expect(response.status, JSON.stringify(response.body)).toBe(202);
  return response.body.id;
}

/** Names in `folder` that a restore writes while it works (`.<target>.coffer-restore-…`). */
async function stagingLeft(folder: string): Promise<string[]> {
  return (await readdir(folder)).filter((name) => name.includes('coffer-restore'));
}

describe('a worker killed (SIGKILL) mid-restore', () => {
  it('leaves no partial target; another worker completes an exact restore', async () => {
    const source = join(sources, 'tree');
    await makeTree(source, 80, 250, 4096);
    const snapshot = await backUp(source);
    const target = join(sources, 'restored');

    await cluster.startWorker('victim');
    const id = await restore(snapshot.id, target);
    await waitFor(
      async () => ((await cluster.job(id)).progress.files > 200 ? true : undefined),
      30_000,
      'restore progress',
    );
    await cluster.workers.get('victim')?.stop('SIGKILL');
    // Half a restore is never where the user looks for it.
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });

    cluster.worker('rescuer');
    const view = await cluster.waitForStatus(id, ['completed', 'failed'], 90_000);
    expect(view.status, JSON.stringify(view.error)).toBe('completed');
    expect(await describeTree(target)).toEqual(await describeTree(source));
    expect(await stagingLeft(sources)).toEqual([]);
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
  });
});

describe('a damaged snapshot', () => {
  it('fails its restore with SNAPSHOT_DAMAGED without writing the target', async () => {
    const source = join(sources, 'small');
    await makeTree(source, 3, 20, 1024);
    const snapshot = await backUp(source);
    // Same size, same mtime: only the checksum can tell.
    const victim = join(snapshot.path, 'd2', 'f19');
    const before = await stat(victim);
    await writeFile(victim, Buffer.alloc(1024, 7));
    await utimes(victim, before.atime, before.mtime);

    await cluster.startWorker('restorer');
    const target = join(sources, 'from-damaged');
    const view = await cluster.waitForStatus(await restore(snapshot.id, target), ['completed', 'failed'], 60_000);
    expect(view.status).toBe('failed');
    expect(view.error?.code).toBe('SNAPSHOT_DAMAGED');
    expect(view.error?.message).toContain('d2/f19');
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await stagingLeft(sources)).toEqual([]);
  });
});
