import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers/environment.js';
import {
  Cluster,
  logRows,
  makeTree,
  partialFolders,
  startFaultStack,
  type FaultStack,
  type Servers,
} from './harness.js';

let stack: FaultStack;
let servers: Servers;
let cluster: Cluster;
let sources: string;
let backups: string;
let tmpfs: string;

beforeAll(async () => {
  stack = await startFaultStack({ COPY_CONCURRENCY: '1', JOB_ATTEMPTS: '2', JOB_BACKOFF_MS: '100' });
  ({ servers, cluster, sources, backups } = stack);
  // A 2 MiB file system as one destination folder: small enough to fill.
  tmpfs = join(backups, 'tiny');
  await mkdir(tmpfs);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', tmpfs], { encoding: 'utf8' });
  if (mounted.status !== 0) throw new Error(`cannot mount a tmpfs (the fault suite runs as root): ${mounted.stderr}`);
});

afterAll(async () => {
  await stack?.cluster.stopAll();
  spawnSync('umount', [tmpfs]);
  await stack?.servers.stopAll();
});

describe('a full destination disk', () => {
  it('fails the job with DESTINATION_FULL, a readable message and no partial snapshot', async () => {
    await cluster.startWorker('w1');
    const source = join(sources, 'too-big');
    await makeTree(source, 4, 100, 16 * 1024);
    const id = await cluster.submit(source, 'tiny');
    const view = await cluster.waitForStatus(id, ['completed', 'failed'], 60_000);
    expect(view.status).toBe('failed');
    expect(view.error?.code).toBe('DESTINATION_FULL');
    expect(view.error?.message).toMatch(/no space left/);
    expect(await readdir(tmpfs)).toEqual([]);
    const rows = await waitFor(async () => {
      const all = await logRows(servers, id);
      return all.some((row) => row.status === 'failed') ? all : undefined;
    });
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'retrying', 'active', 'failed']);
  });

  it('still takes backups that fit', async () => {
    const source = join(sources, 'fits');
    await mkdir(source);
    await writeFile(join(source, 'small.txt'), 'fits\n');
    const id = await cluster.submit(source, 'tiny');
    expect((await cluster.waitForStatus(id, ['completed', 'failed'])).status).toBe('completed');
  });
});

describe('cancellation across processes', () => {
  it('cancels a queued job at once', async () => {
    await cluster.workers.get('w1')?.stop('SIGTERM');
    const source = join(sources, 'queued-cancel');
    await mkdir(source);
    await writeFile(join(source, 'x'), 'x');
    const id = await cluster.submit(source);
    const response = await cluster.request<{ status: string }>('DELETE', `/jobs/${id}`);
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('cancelled');
    await cluster.startWorker('w2');
    // A job queued after it runs to its end: had the cancelled job stayed in the queue, the
    // worker would have taken it first, and its rows would be in the log before the later job's.
    const later = join(sources, 'queued-after-cancel');
    await mkdir(later);
    await writeFile(join(later, 'y'), 'y');
    const laterId = await cluster.submit(later);
    expect((await cluster.waitForStatus(laterId, ['completed', 'failed'])).status).toBe('completed');
    await waitFor(async () =>
      (await logRows(servers, laterId)).some((row) => row.status === 'completed') ? true : undefined,
    );
    expect((await cluster.job(id)).status).toBe('cancelled');
    expect((await logRows(servers, id)).map((row) => row.status)).toEqual(['queued', 'cancelled']);
  });

  it('stops a running copy part-way, removes its partial folder, and ends it cancelled; 409 afterwards', async () => {
    const source = join(sources, 'running-cancel');
    await makeTree(source, 80, 250, 4096);
    const id = await cluster.submit(source, 'cancelled');
    await waitFor(
      async () => ((await cluster.job(id)).progress.files > 50 ? true : undefined),
      30_000,
      'copy progress',
    );
    const asked = Date.now();
    const response = await cluster.request<{ status: string }>('DELETE', `/jobs/${id}`);
    expect(response.status).toBe(202);
    // Cancelled, not completed: the copy stopped before its end. How soon is information
    // only (README: within a second); a loaded machine may take longer to say so.
    const view = await cluster.waitForStatus(id, ['cancelled', 'completed', 'failed'], 60_000);
    const tookMs = Date.now() - asked;
    expect(view.status).toBe('cancelled');
    expect(await partialFolders(backups)).toEqual([]);
    expect(await readdir(join(backups, 'cancelled'))).toEqual([]);
    expect((await cluster.request('DELETE', `/jobs/${id}`)).status).toBe(409);
    const rows = await waitFor(async () => {
      const all = await logRows(servers, id);
      return all.some((row) => row.status === 'cancelled') ? all : undefined;
    });
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'cancelled']);
    console.log(
      `[faults] cancel of a running copy: cancelled after ${tookMs} ms, ${view.progress.files} files reported copied`,
    );
  });
});

describe('a source changing during the copy', () => {
  it('reports files that vanish as warnings and completes with the rest intact', async () => {
    const source = join(sources, 'changing');
    // One large folder: it is listed long before its last files are copied, so
    // files deleted meanwhile are met as vanished (in a tree of small folders
    // the copy often reaches a folder after its files are already gone).
    const DIRS = 1;
    const FILES = 40_000;
    await makeTree(source, DIRS, FILES, 1024);
    if (![...cluster.workers.values()].some((worker) => worker.running)) await cluster.startWorker('w3');
    const id = await cluster.submit(source, 'changing');
    await waitFor(async () => ((await cluster.job(id)).progress.files > 0 ? true : undefined), 30_000, 'copy progress');
    // Delete every other file while the copy runs.
    let deleted = 0;
    for (let f = FILES - 1; f >= 0; f -= 2) {
      await rm(join(source, 'd0', `f${f}`), { force: true });
      deleted += 1;
    }
    const view = await cluster.waitForStatus(id, ['completed', 'failed'], 60_000);
    expect(view.status).toBe('completed');
    const warnings = view.result?.warnings;
    expect(warnings?.count).toBeGreaterThan(0);
    expect(warnings?.items.every((item) => item.code === 'ENOENT' && /^d\d+\/f\d+$/.test(item.path))).toBe(true);
    expect((view.result?.files ?? 0) + (warnings?.count ?? 0)).toBeLessThanOrEqual(DIRS * FILES);
    // What was copied is exactly what the source held.
    const snapshot = view.result?.path ?? '';
    for (let d = 0; d < DIRS; d++) {
      for (const name of await readdir(join(snapshot, `d${d}`))) {
        const f = Number(name.slice(1));
        expect((await readFile(join(snapshot, `d${d}`, name))).equals(Buffer.alloc(1024, (d * 31 + f) % 251))).toBe(
          true,
        );
      }
    }
    console.log(
      `[faults] source changing: ${deleted} files deleted during the copy, ${warnings?.count ?? 0} reported as vanished, ${view.result?.files ?? 0} copied`,
    );
  });
});
