import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BackupResult } from '@coffer/shared';
import type { FinishedJob } from './jobs/attempt-lifecycle.js';

/** Seconds: jobs last from a moment (a small verify) to hours (a first large backup). */
const DURATION_BUCKETS = [1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21_600, 86_400];

/** One worker process's own metrics, served on GET /metrics. */
export interface WorkerMetrics {
  /** Counts a job this worker brought to its final status (the job processor's `onFinished`). */
  jobFinished(finished: FinishedJob): void;
  /** Where the server listens. */
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * Serves the worker's metrics (bytes copied, job durations by kind and status, process
 * metrics) on `host:port` until closed. Rejects when it cannot listen (the port is taken).
 */
export async function serveWorkerMetrics(host: string, port: number, logger: Logger): Promise<WorkerMetrics> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'coffer_worker_' });
  const copiedBytes = new Counter({
    name: 'coffer_worker_copied_bytes_total',
    help: 'Bytes this worker copied into snapshots: completed backups, without what they hard-linked',
    registers: [registry],
  });
  const durations = new Histogram({
    name: 'coffer_worker_job_duration_seconds',
    help: "Jobs this worker finished, by kind and final status: from the job's first start to its end",
    labelNames: ['kind', 'status'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });

  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        logger.warn({ err }, 'cannot collect metrics');
        response.writeHead(500, { 'content-type': 'text/plain' }).end('cannot collect metrics\n');
      },
    );
  });
  // A scraper that keeps its connection open must not hold up the worker's shutdown.
  server.keepAliveTimeout = 5000;
  server.listen(port, host);
  // Rejects with the server's error (say EADDRINUSE) if that comes first.
  await once(server, 'listening');
  server.on('error', (err) => logger.error({ err }, 'metrics server error'));
  const address = server.address() as AddressInfo;
  logger.info({ host: address.address, port: address.port }, 'serving worker metrics on /metrics');

  return {
    address,
    jobFinished({ kind, status, durationSeconds, result }) {
      durations.observe({ kind, status }, durationSeconds);
      if (kind === 'backup' && status === 'completed' && result) {
        const { bytes, bytesLinked = 0 } = result as BackupResult;
        copiedBytes.inc(Math.max(0, bytes - bytesLinked));
      }
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
