import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'mysql2/promise';
import { pino } from 'pino';
import {
  BACKUP_JOB_NAME,
  createBackupQueue,
  createLogRepository,
  createMysqlPool,
  createRedis,
  type BackupQueue,
  type LogRepository,
} from '@coffer/shared';
import { startWorker, type RunningWorker } from '@coffer/worker';
import { serveWorkerMetrics, type WorkerMetrics } from '../src/metrics.js';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

const logger = pino({ level: 'silent' });

let env: TestEnvironment;
let pool: Pool;
let logStore: LogRepository;
let queue: BackupQueue;
let producer: ReturnType<typeof createRedis>;
let metrics: WorkerMetrics;
let running: RunningWorker;

beforeAll(async () => {
  env = await createTestEnvironment({ WORKER_METRICS_PORT: String(await freePort()) });
  pool = createMysqlPool(env.config.mysql);
  logStore = createLogRepository(pool);
  producer = createRedis(env.redisUrl, 'worker');
  queue = createBackupQueue(env.config, producer);
  // What main.ts does when WORKER_METRICS_PORT is set.
  metrics = await serveWorkerMetrics(env.config.host, env.config.workerMetricsPort ?? 0, logger);
  running = startWorker(env.config, logger, { metrics });
  await running.worker.waitUntilReady();
});

afterAll(async () => {
  await running?.close(5000);
  await queue?.close();
  producer?.disconnect();
  await pool?.end();
  await env?.cleanup();
});

/** Submits a backup the way the API does and waits for its final row. */
async function backUp(source: string): Promise<string> {
  const id = randomUUID();
  await logStore.append({
    action: 'backup',
    parameter: source,
    status: 'queued',
    jobId: id,
    attempt: 1,
    worker: 'test',
    destination: 'metrics',
  });
  await queue.add(BACKUP_JOB_NAME, { source, destination: 'metrics' }, { jobId: id, attempts: 1 });
  return waitFor(
    async () => {
      const rows = await logStore.history(id);
      const last = rows[rows.length - 1];
      return last && ['completed', 'failed', 'cancelled'].includes(last.status) ? last.status : undefined;
    },
    20_000,
    `job ${id} to finish`,
  );
}

async function scrape(path = '/metrics'): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://${env.config.host}:${env.config.workerMetricsPort ?? 0}${path}`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

function valueOf(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('worker metrics on WORKER_METRICS_PORT', () => {
  it('listens on HOST at WORKER_METRICS_PORT, serving only GET /metrics', async () => {
    expect(metrics.address).toMatchObject({ address: '127.0.0.1', port: env.config.workerMetricsPort });

    const res = await scrape();

    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain/);
    expect(res.body).toContain('# TYPE coffer_worker_copied_bytes_total counter');
    expect(res.body).toContain('# TYPE coffer_worker_job_duration_seconds histogram');
    expect(res.body).toMatch(/^coffer_worker_process_cpu_user_seconds_total /m);
    expect(res.body).toMatch(/^coffer_worker_nodejs_heap_size_used_bytes /m);
    expect((await scrape('/other')).status).toBe(404);
  });

  it('counts the bytes backups copy, not those they hard-link, and times jobs by kind and status', async () => {
    const source = join(env.sources, 'metered');
    await mkdir(source, { recursive: true });
    await writeFile(join(source, 'a.bin'), Buffer.alloc(3000, 1));
    await writeFile(join(source, 'b.bin'), Buffer.alloc(500, 2));
    const before = valueOf((await scrape()).body, 'coffer_worker_copied_bytes_total') ?? 0;

    expect(await backUp(source)).toBe('completed');
    const first = (await scrape()).body;
    expect(valueOf(first, 'coffer_worker_copied_bytes_total')).toBe(before + 3500);

    // Unchanged files of the next snapshot are hard links: nothing new is copied but the new file.
    await writeFile(join(source, 'c.bin'), Buffer.alloc(200, 3));
    expect(await backUp(source)).toBe('completed');
    expect(await backUp(join(env.sources, 'missing'))).toBe('failed');
    const body = (await scrape()).body;

    expect(valueOf(body, 'coffer_worker_copied_bytes_total')).toBe(before + 3700);
    expect(valueOf(body, 'coffer_worker_job_duration_seconds_count{kind="backup",status="completed"}')).toBe(2);
    expect(valueOf(body, 'coffer_worker_job_duration_seconds_count{kind="backup",status="failed"}')).toBe(1);
    expect(valueOf(body, 'coffer_worker_job_duration_seconds_bucket{le="+Inf",kind="backup",status="completed"}')).toBe(
      2,
    );
  });

  it('refuses to start on a port already taken', async () => {
    const taken = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const address = taken.address();
    try {
      const port = typeof address === 'object' && address ? address.port : 0;
      await expect(serveWorkerMetrics('127.0.0.1', port, logger)).rejects.toThrow(/EADDRINUSE/);
    } finally {
      taken.close();
    }
  });
});
