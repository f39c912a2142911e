import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Pool } from 'mysql2/promise';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBackupQueue,
  createLogRepository,
  createMysqlPool,
  createRedis,
  createRetentionStore,
  createSnapshotCatalog,
  decodeFailure,
  jobLogRow,
  manifestPathOf,
  type BackupQueue,
  type JobItem,
  type LogRepository,
  type LogRow,
  type PruneResult,
  type RetentionPolicy,
  type RetentionStore,
  type SnapshotCatalog,
} from '@coffer/shared';
import { startWorker, type RunningWorker } from '@coffer/worker';
import { verifySnapshot } from '../src/copy/verify-snapshot.js';
import { CANCEL_REASON } from '../src/jobs/attempt-lifecycle.js';
import { autoPruneJobId } from '../src/jobs/auto-prune.js';
import { pruneRunner } from '../src/jobs/prune-runner.js';
import { createPruneLocks } from '../src/prune/prune-lock.js';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';

// Prune jobs through a real worker, against the real Redis and MariaDB: snapshots made by real
// backups (later ones hard-link unchanged files from earlier ones), removed as policies say.

let env: TestEnvironment;
let pool: Pool;
let logStore: LogRepository;
let catalog: SnapshotCatalog;
let retention: RetentionStore;
let queue: BackupQueue;
let producer: ReturnType<typeof createRedis>;
let running: RunningWorker;

beforeAll(async () => {
  env = await createTestEnvironment({ COPY_CONCURRENCY: '2', WORKER_CONCURRENCY: '2' });
  pool = createMysqlPool(env.config.mysql);
  logStore = createLogRepository(pool);
  catalog = createSnapshotCatalog(pool);
  retention = createRetentionStore(pool);
  producer = createRedis(env.redisUrl, 'worker');
  queue = createBackupQueue(env.config, producer);
  running = startWorker(env.config, pino({ level: 'silent' }));
  await running.worker.waitUntilReady();
});

afterAll(async () => {
  await running?.close(5000);
  await queue?.close();
  producer?.disconnect();
  await pool?.end();
  await env?.cleanup();
});

/** Queues a job the way the API does: its `queued` row first, then the queue. */
async function submit(item: JobItem): Promise<string> {
  const id = randomUUID();
  await logStore.append({ ...jobLogRow(item, id, 1, 'test'), status: 'queued' });
  await queue.add(item.name, item.data, { jobId: id });
  return id;
}

async function finalRows(id: string): Promise<LogRow[]> {
  return waitFor(
    async () => {
      const rows = (await logStore.history(id)).filter((row) => row.status !== 'removed');
      const last = rows.at(-1);
      return last && ['completed', 'failed', 'cancelled'].includes(last.status) ? rows : undefined;
    },
    30_000,
    `job ${id} to finish`,
  );
}

async function resultOf(id: string): Promise<PruneResult> {
  const rows = await finalRows(id);
  expect(rows.at(-1)?.status).toBe('completed');
  const job = await waitFor(async () => {
    const found = await queue.getJob(id);
    return found?.returnvalue ? found : undefined;
  });
  return job.returnvalue as PruneResult;
}

async function removedRows(destination: string): Promise<LogRow[]> {
  const page = await logStore.query({ status: 'removed', limit: 1000 });
  return page.items.filter((row) => row.destination === destination);
}

interface Made {
  id: string;
  path: string;
}

/** Backs `source` up into `destination` with a real backup job; returns the snapshot. */
async function backUp(source: string, destination: string, actor?: string): Promise<Made> {
  const id = await submit({ name: 'backup', data: { source, destination, ...(actor ? { actor } : {}) } });
  const rows = await finalRows(id);
  const completed = rows.at(-1);
  expect(completed?.status).toBe('completed');
  await waitFor(async () => ((await catalog.get(id)) ? true : undefined), 10_000, `snapshot ${id} in the catalog`);
  return { id, path: completed?.snapshot ?? '' };
}

/**
 * A source of a few files, backed up `count` times into `destination`, one file changed
 * between backups: each snapshot hard-links the others from the one before. Oldest first.
 */
async function snapshots(destination: string, count: number): Promise<Made[]> {
  const source = join(env.sources, destination);
  await mkdir(join(source, 'nested'), { recursive: true });
  await writeFile(join(source, 'shared.txt'), 'the same in every snapshot');
  await writeFile(join(source, 'nested', 'big.bin'), Buffer.alloc(40_000, 3));
  // A name that is not UTF-8: deleted as the bytes it is.
  await writeFile(Buffer.from(`${join(source, 'nested')}/latin1-\xe9t\xe9`, 'latin1'), 'été');
  const made: Made[] = [];
  for (let n = 0; n < count; n += 1) {
    await writeFile(join(source, 'changing.txt'), `version ${n}`);
    made.push(await backUp(source, destination));
  }
  return made;
}

async function setPolicy(destination: string, policy: RetentionPolicy): Promise<void> {
  await retention.set(destination, policy, 'test');
}

const prune = (destination: string, dryRun?: boolean) =>
  submit({ name: 'prune', data: { destination, actor: 'pruner', ...(dryRun === undefined ? {} : { dryRun }) } });

const ids = (made: readonly Made[]) => made.map((snapshot) => snapshot.id);
/** Newest first, as results list them. */
const newestFirst = (made: readonly Made[]) => ids(made).reverse();

async function metadataNames(destination: string): Promise<string[]> {
  return readdir(join(env.backups, destination, '.coffer'));
}

describe('a prune by retention policy', () => {
  it('keeps the newest by keepLast and removes the rest: folders, manifests, catalog, one removed row each', async () => {
    const made = await snapshots('keep-last', 5);
    const [s1, s2, s3, s4, s5] = made as [Made, Made, Made, Made, Made];
    const sharedBefore = await stat(join(s5.path, 'shared.txt'));
    await setPolicy('keep-last', { keepLast: 2 });

    const id = await prune('keep-last');
    const result = await resultOf(id);

    expect(result.kept).toEqual([s5.id, s4.id]);
    expect(result.removed).toEqual([s3.id, s2.id, s1.id]);
    for (const gone of [s1, s2, s3]) {
      expect(existsSync(gone.path)).toBe(false);
      expect(existsSync(manifestPathOf(gone.path))).toBe(false);
      expect((await catalog.get(gone.id))?.deletedAt).toBeInstanceOf(Date);
    }
    for (const kept of [s4, s5]) {
      expect(existsSync(manifestPathOf(kept.path))).toBe(true);
      expect((await catalog.get(kept.id))?.deletedAt).toBeNull();
    }
    // Only what Coffer keeps for the two kept snapshots is left in .coffer: nothing half removed.
    expect((await metadataNames('keep-last')).sort()).toEqual(
      [s4, s5].flatMap((kept) => [`${basename(kept.path)}.json`, basename(manifestPathOf(kept.path))]).sort(),
    );
    expect((await catalog.list({ destination: 'keep-last', limit: 10 })).items.map((s) => s.id)).toEqual([
      s5.id,
      s4.id,
    ]);

    const rows = await removedRows('keep-last');
    expect(rows).toHaveLength(3);
    for (const gone of [s1, s2, s3]) {
      expect(rows.filter((row) => row.snapshotId === gone.id)).toEqual([
        expect.objectContaining({
          action: 'prune',
          status: 'removed',
          jobId: id,
          attempt: null,
          parameter: gone.path,
          destination: 'keep-last',
          actor: 'pruner',
        }),
      ]);
    }
    // The removed rows are not transitions: the job's history is the usual one.
    expect((await finalRows(id)).map((row) => row.status)).toEqual(['queued', 'active', 'completed']);

    // The kept snapshots shared their unchanged files with the removed ones: still whole.
    expect((await stat(join(s5.path, 'shared.txt'))).nlink).toBe(sharedBefore.nlink - 3);
    for (const kept of [s4, s5]) {
      const record = await catalog.get(kept.id);
      const report = await verifySnapshot({ snapshotPath: kept.path, manifestSha256: record?.manifestSha256 ?? '' });
      expect(report.problems).toEqual({ count: 0, items: [] });
      expect(report.files).toBe(4);
    }
  });

  it('dry run: names what it would remove and removes nothing', async () => {
    const made = await snapshots('dry', 3);
    await setPolicy('dry', { keepLast: 1 });

    const result = await resultOf(await prune('dry', true));

    expect(result).toMatchObject({ kept: [made[2]?.id], removed: newestFirst(made.slice(0, 2)) });
    for (const snapshot of made) {
      expect(existsSync(snapshot.path)).toBe(true);
      expect(existsSync(manifestPathOf(snapshot.path))).toBe(true);
      expect((await catalog.get(snapshot.id))?.deletedAt).toBeNull();
    }
    expect(await removedRows('dry')).toEqual([]);
  });

  it('without a policy keeps everything and says so', async () => {
    const made = await snapshots('no-policy', 2);

    const id = await prune('no-policy');
    const result = await resultOf(id);

    expect(result).toMatchObject({ kept: newestFirst(made), removed: [] });
    expect((await finalRows(id)).at(-1)?.message).toMatch(/no retention policy/);
    for (const snapshot of made) expect(existsSync(snapshot.path)).toBe(true);
  });

  it('keeps a snapshot an unfinished verify reads, reports it held, and removes it once the verify ended', async () => {
    const made = await snapshots('held', 3);
    const [s1, s2, s3] = made as [Made, Made, Made];
    // A verify of the oldest, queued and not finished.
    const verify: JobItem = {
      name: 'verify',
      data: {
        snapshot: s1.id,
        snapshotPath: s1.path,
        source: '/src',
        destination: 'held',
        manifestSha256: 'x'.repeat(64),
      },
    };
    const verifyId = randomUUID();
    const verifyRow = jobLogRow(verify, verifyId, 1, 'test');
    await logStore.append({ ...verifyRow, status: 'queued' });
    await setPolicy('held', { keepLast: 1 });

    const first = await resultOf(await prune('held'));

    expect(first).toEqual({ kept: [s3.id, s1.id], removed: [s2.id], held: [s1.id] });
    expect(existsSync(s1.path)).toBe(true);
    expect(existsSync(s2.path)).toBe(false);

    await logStore.append({ ...verifyRow, status: 'cancelled', code: 'CANCELLED' });
    const second = await resultOf(await prune('held'));

    expect(second).toEqual({ kept: [s3.id], removed: [s1.id], held: [] });
    expect(existsSync(s1.path)).toBe(false);
  });

  it('finishes a removal an interrupted prune left in .coffer', async () => {
    const made = await snapshots('leftover', 3);
    const [s1, , s3] = made as [Made, Made, Made];
    // As a prune that died right after taking s1 out of its final name.
    await rename(s1.path, join(dirname(s1.path), '.coffer', `pruning-${basename(s1.path)}`));
    await setPolicy('leftover', { keepLast: 2 });

    const id = await prune('leftover');
    const result = await resultOf(id);

    expect(result.removed).toEqual([s1.id]);
    expect(result.kept).toEqual(newestFirst(made.slice(1)));
    expect((await metadataNames('leftover')).filter((name) => name.includes(basename(s1.path)))).toEqual([]);
    expect((await catalog.get(s1.id))?.deletedAt).toBeInstanceOf(Date);
    const rows = await removedRows('leftover');
    expect(rows.map((row) => [row.snapshotId, row.jobId])).toEqual([[s1.id, id]]);
    expect(rows[0]?.message).toMatch(/interrupted/);
    expect(existsSync(s3.path)).toBe(true);
  });

  it('records a snapshot already gone from disk as removed, and says so', async () => {
    const made = await snapshots('gone', 2);
    const [s1] = made as [Made, Made];
    await rm(s1.path, { recursive: true });
    await setPolicy('gone', { keepLast: 1 });

    const result = await resultOf(await prune('gone'));

    expect(result.removed).toEqual([s1.id]);
    const rows = await removedRows('gone');
    expect(rows.map((row) => row.snapshotId)).toEqual([s1.id]);
    expect(rows[0]?.message).toMatch(/already gone/);
    expect(existsSync(manifestPathOf(s1.path))).toBe(false);
  });
});

describe('a prune never deletes what is not a snapshot of its destination', () => {
  /** A folder outside BACKUP_ROOT with one file, to see it survive. */
  async function outsider(name: string): Promise<string> {
    const folder = join(env.dir, 'outside', name);
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'precious.txt'), 'not Coffer’s');
    return folder;
  }

  it('refuses a catalog path outside the destination: fails PRUNE_FAILED, nothing deleted', async () => {
    const made = await snapshots('elsewhere', 3);
    const [s1] = made as [Made, Made, Made];
    // A catalog row pointing outside BACKUP_ROOT, at a folder named like the snapshot.
    const outside = await outsider(basename(s1.path));
    await pool.execute('UPDATE snapshot SET path = ? WHERE id = ?', [outside, s1.id]);
    await setPolicy('elsewhere', { keepLast: 1 });

    const rows = await finalRows(await prune('elsewhere'));

    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'failed']);
    expect(rows.at(-1)?.code).toBe('PRUNE_FAILED');
    expect(rows.at(-1)?.message).toContain(outside);
    expect(existsSync(join(outside, 'precious.txt'))).toBe(true);
    for (const snapshot of made) expect(existsSync(snapshot.path)).toBe(true);
    expect(await removedRows('elsewhere')).toEqual([]);
    for (const snapshot of made) expect((await catalog.get(snapshot.id))?.deletedAt).toBeNull();
  });

  it('does not follow a link in place of a snapshot folder: fails PRUNE_FAILED, link and target intact', async () => {
    const made = await snapshots('linked', 3);
    const [s1] = made as [Made, Made, Made];
    const outside = await outsider('link-target');
    await rm(s1.path, { recursive: true });
    await symlink(outside, s1.path);
    await setPolicy('linked', { keepLast: 1 });

    const rows = await finalRows(await prune('linked'));

    expect(rows.at(-1)).toMatchObject({ status: 'failed', code: 'PRUNE_FAILED' });
    expect(rows.at(-1)?.message).toMatch(/link/);
    expect(existsSync(join(outside, 'precious.txt'))).toBe(true);
    expect(existsSync(join(s1.path, 'precious.txt'))).toBe(true);
    for (const snapshot of made.slice(1)) expect(existsSync(snapshot.path)).toBe(true);
    expect(await removedRows('linked')).toEqual([]);
  });
});

describe('prunes of one destination', () => {
  it('run one at a time: two at once end with each snapshot removed once, by one of them', async () => {
    const made = await snapshots('together', 4);
    await setPolicy('together', { keepLast: 1 });

    const [a, b] = await Promise.all([prune('together'), prune('together')]);
    const results = await Promise.all([resultOf(a ?? ''), resultOf(b ?? '')]);

    // The second to run found the first one's removals in the catalog: nothing left to remove.
    const removed = results.map((result) => result.removed).sort((x, y) => y.length - x.length);
    expect(removed).toEqual([newestFirst(made.slice(0, 3)), []]);
    for (const result of results) expect(result.kept).toEqual([made[3]?.id]);
    const rows = await removedRows('together');
    expect(rows.map((row) => row.snapshotId).sort()).toEqual(ids(made.slice(0, 3)).sort());
  });
});

describe('the automatic prune after a backup', () => {
  it('prunes a destination with a policy after each completed backup, as the backup’s actor', async () => {
    await setPolicy('auto', { keepLast: 1 });
    const source = join(env.sources, 'auto');
    await mkdir(source, { recursive: true });
    await writeFile(join(source, 'f.txt'), 'one');
    const first = await backUp(source, 'auto', 'alice');
    const afterFirst = await finalRows(autoPruneJobId(first.id));
    expect(afterFirst.map((row) => row.status)).toEqual(['queued', 'active', 'completed']);
    expect(afterFirst[0]).toMatchObject({ action: 'prune', parameter: 'auto', destination: 'auto', actor: 'alice' });
    expect(await resultOf(autoPruneJobId(first.id))).toMatchObject({ kept: [first.id], removed: [] });

    await writeFile(join(source, 'f.txt'), 'two');
    const second = await backUp(source, 'auto', 'alice');
    const afterSecond = await resultOf(autoPruneJobId(second.id));
    expect(afterSecond).toMatchObject({ kept: [second.id], removed: [first.id] });
    expect(existsSync(first.path)).toBe(false);
    const rows = await removedRows('auto');
    expect(rows).toEqual([expect.objectContaining({ snapshotId: first.id, actor: 'alice' })]);
  });

  it('queues no prune after a backup into a destination without a policy', async () => {
    const source = join(env.sources, 'manual');
    await mkdir(source, { recursive: true });
    await writeFile(join(source, 'f.txt'), 'x');
    const made = await backUp(source, 'manual');
    // The follow-up runs before the backup's processor returns, so before BullMQ completes it.
    await waitFor(async () => ((await (await queue.getJob(made.id))?.getState()) === 'completed' ? true : undefined));

    expect(await queue.getJob(autoPruneJobId(made.id))).toBeUndefined();
    expect(await logStore.history(autoPruneJobId(made.id))).toEqual([]);
  });
});

describe('a cancelled prune', () => {
  it('stops between snapshots: the ones removed are logged, the rest stay, the next prune finishes', async () => {
    const made = await snapshots('cancel', 4);
    const [s1, s2, s3, s4] = made as [Made, Made, Made, Made];
    await setPolicy('cancel', { keepLast: 1 });
    const lockPool = createMysqlPool(env.config.mysql, { connectionLimit: 1 });
    const controller = new AbortController();
    const runner = pruneRunner({
      config: env.config,
      catalog,
      retention,
      locks: createPruneLocks(lockPool, env.config.mysql.database),
      // The cancel arrives as the first removal is logged.
      outbox: {
        async record(entries) {
          await logStore.append(entries);
          controller.abort(CANCEL_REASON);
        },
      },
    });
    const jobId = randomUUID();
    try {
      const run = runner.run({
        jobId,
        number: 1,
        tag: 'test',
        data: { destination: 'cancel' },
        startedAt: new Date(),
        logger: pino({ level: 'silent' }),
        signal: controller.signal,
        stillOwned: async () => true,
        progress: { advanced() {}, measured() {}, report() {} },
      });
      await expect(run).rejects.toBe(CANCEL_REASON);
    } finally {
      await lockPool.end();
    }

    // Oldest first, and only the first.
    expect((await removedRows('cancel')).map((row) => row.snapshotId)).toEqual([s1.id]);
    expect(existsSync(s1.path)).toBe(false);
    for (const kept of [s2, s3, s4]) expect(existsSync(kept.path)).toBe(true);

    const result = await resultOf(await prune('cancel'));
    expect(result).toMatchObject({ kept: [s4.id], removed: [s3.id, s2.id] });
    expect((await metadataNames('cancel')).filter((name) => name.startsWith('pruning-'))).toEqual([]);
  });
});

describe('failures', () => {
  it('an invalid destination fails at once with INVALID_DESTINATION', async () => {
    const rows = await finalRows(await prune('../escape'));
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'failed']);
    expect(decodeFailure(`${rows.at(-1)?.code}: ${rows.at(-1)?.message}`).code).toBe('INVALID_DESTINATION');
  });
});
