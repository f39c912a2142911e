import { randomUUID } from 'node:crypto';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'mysql2/promise';
import { pino } from 'pino';
import {
  countCancelledAmongFailed,
  BACKUP_JOB_NAME,
  createBackupQueue,
  createLogRepository,
  createMysqlPool,
  createRedis,
  requestCancel,
  type BackupQueue,
  type LogRepository,
} from '@coffer/shared';
import { startWorker, type RunningWorker } from '@coffer/worker';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { describeTree } from '../../test/helpers/trees.js';

let env: TestEnvironment;
let pool: Pool;
let logStore: LogRepository;
let queue: BackupQueue;
let producer: ReturnType<typeof createRedis>;
let running: RunningWorker;

beforeAll(async () => {
  env = await createTestEnvironment({ COPY_CONCURRENCY: '2' });
  pool = createMysqlPool(env.config.mysql);
  logStore = createLogRepository(pool);
  producer = createRedis(env.redisUrl, 'worker');
  queue = createBackupQueue(env.config, producer);
  running = startWorker(env.config, pino({ level: 'silent' }));
  await running.worker.waitUntilReady();
});

afterAll(async () => {
  await running.close(5000);
  await queue.close();
  producer.disconnect();
  await pool.end();
  await env.cleanup();
});

/** Submits a job the way the API does: `queued` row first, then the queue. */
async function submit(source: string, destination = 'dest'): Promise<string> {
  const id = randomUUID();
  await logStore.append({
    action: 'backup',
    parameter: source,
    status: 'queued',
    jobId: id,
    attempt: 1,
    worker: 'test',
    destination,
  });
  await queue.add(BACKUP_JOB_NAME, { source, destination }, { jobId: id });
  return id;
}

async function finalRows(id: string) {
  return waitFor(
    async () => {
      const rows = await logStore.history(id);
      const last = rows[rows.length - 1];
      return last && ['completed', 'failed', 'cancelled'].includes(last.status) ? rows : undefined;
    },
    20_000,
    `job ${id} to finish`,
  );
}

describe('backup worker', () => {
  it('copies a folder into an exact snapshot and logs queued → active → completed', async () => {
    const source = join(env.sources, 'project');
    await mkdir(join(source, 'nested/deeper'), { recursive: true });
    await mkdir(join(source, 'empty'));
    await writeFile(join(source, 'a.txt'), 'alpha');
    await writeFile(join(source, 'nested/deeper/b.bin'), Buffer.alloc(70_000, 7));
    await writeFile(join(source, 'zero'), '');
    await symlink('a.txt', join(source, 'link-to-a'));

    const id = await submit(source, 'projects/main');
    const rows = await finalRows(id);
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'completed']);
    const completed = rows[2];
    expect(completed).toMatchObject({ attempt: 1, files: 3, bytes: 70_005, destination: 'projects/main' });
    expect(completed?.snapshot).toMatch(new RegExp(`^${env.backups}/projects/main/\\d{8}T\\d{6}\\.\\d{3}Z-${id}$`));
    expect(await describeTree(completed?.snapshot ?? '')).toEqual(await describeTree(source));

    const job = await waitFor(async () => ((await queue.getJob(id))?.returnvalue ? queue.getJob(id) : undefined));
    expect(job?.returnvalue).toMatchObject({ path: completed?.snapshot, files: 3, bytes: 70_005, links: 1, dirs: 3 });
    expect(job?.progress).toMatchObject({ filesTotal: 3, bytesTotal: 70_005 });
  });

  it('backs up a single file under its own name', async () => {
    const source = join(env.sources, 'report.csv');
    await writeFile(source, 'a,b\n1,2\n');
    const id = await submit(source, 'reports');
    const rows = await finalRows(id);
    const snapshot = rows[rows.length - 1]?.snapshot ?? '';
    expect(await readdir(snapshot)).toEqual(['report.csv']);
  });

  it('fails a missing source at once with SOURCE_NOT_FOUND, naming the path, without retrying', async () => {
    const source = join(env.sources, 'not-there');
    const id = await submit(source);
    const rows = await finalRows(id);
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'failed']);
    expect(rows[2]).toMatchObject({ code: 'SOURCE_NOT_FOUND' });
    expect(rows[2]?.message).toContain(source);
  });

  it('refuses a source whose link leads outside SOURCE_ROOTS', async () => {
    const outside = join(env.dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'x');
    const source = join(env.sources, 'sneaky');
    await symlink(outside, source);
    const id = await submit(source);
    const rows = await finalRows(id);
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'failed']);
    expect(rows[2]?.code).toBe('SOURCE_OUTSIDE_ROOTS');
    expect(await readdir(env.backups)).not.toContain('sneaky');
  });

  it('retries a transient failure with backoff, logging retrying, then fails after the last attempt', async () => {
    // A destination under a regular file cannot be created: a destination error, retried.
    const source = join(env.sources, 'small');
    await mkdir(source);
    await writeFile(join(source, 'f'), 'f');
    await writeFile(join(env.backups, 'blocker'), 'not a folder');
    const id = await submit(source, 'blocker/inside');
    const rows = await finalRows(id);
    expect(rows.map((row) => `${row.status}#${row.attempt}`)).toEqual([
      'queued#1',
      'active#1',
      'retrying#1',
      'active#2',
      'retrying#2',
      'active#3',
      'failed#3',
    ]);
    expect(rows[6]?.code).toBe('DESTINATION_NOT_WRITABLE');
  });

  it('cancels a running copy on request: one cancelled row, no snapshot, no partial folder', async () => {
    const source = join(env.sources, 'many');
    for (let d = 0; d < 20; d++) {
      await mkdir(join(source, `d${d}`), { recursive: true });
      await Promise.all(
        Array.from({ length: 150 }, (_, f) => writeFile(join(source, `d${d}`, `f${f}`), Buffer.alloc(8192, f))),
      );
    }
    const id = await submit(source, 'cancel-me');
    await waitFor(async () => ((await logStore.history(id)).some((row) => row.status === 'active') ? true : undefined));
    await requestCancel(producer, env.config.queuePrefix, id);
    const rows = await finalRows(id);
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'cancelled']);
    expect(rows[2]?.code).toBe('CANCELLED');
    expect(await readdir(join(env.backups, 'cancel-me'))).toEqual([]);
    const job = await queue.getJob(id);
    expect(await job?.getState()).toBe('failed');
    // In BullMQ's failed set, yet counted apart from the failed jobs.
    expect(await countCancelledAmongFailed(producer, env.config.queuePrefix, queue.keys.failed ?? '')).toBe(1);
  });
});
