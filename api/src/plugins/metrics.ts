import fp from 'fastify-plugin';
import { QueueEvents } from 'bullmq';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { QUEUE_NAME, countCancelledAmongFailed, createRedis, decodeFailure, type CofferConfig } from '@coffer/shared';
import { ANY_ROLE } from '../auth/roles.js';

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'] as const;
const CLOSE_TIMEOUT_MS = 1000;

/**
 * Prometheus metrics on GET /metrics: HTTP latency, queue depth by state (read
 * at scrape time), and jobs finished and bytes copied, counted from the
 * queue's events as this API process sees them.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'coffer_api_' });

    const httpDuration = new Histogram({
      name: 'coffer_http_request_duration_seconds',
      help: 'HTTP request latency by route and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    new Gauge({
      name: 'coffer_queue_jobs',
      help: "Jobs in the queue by BullMQ state; cancelled jobs (in BullMQ's failed set) apart from failed ones",
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        // Without Redis the other metrics still matter; this one is left out of the scrape.
        this.reset();
        try {
          const counts = await app.backupQueue.getJobCounts(...QUEUE_STATES);
          const failedKey = app.backupQueue.keys.failed ?? '';
          const cancelled = await countCancelledAmongFailed(app.redis, config.queuePrefix, failedKey);
          counts.failed = Math.max(0, (counts.failed ?? 0) - cancelled);
          counts.cancelled = cancelled;
          for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
        } catch (err) {
          app.log.warn({ err: (err as Error).message }, 'cannot read queue depth for metrics');
        }
      },
    });
    const finished = new Counter({
      name: 'coffer_jobs_finished_total',
      help: 'Jobs that reached a final status, as seen by this API process',
      labelNames: ['status'],
      registers: [registry],
    });
    const copiedBytes = new Counter({
      name: 'coffer_copy_bytes_total',
      help: 'Bytes copied into snapshots by completed jobs, as seen by this API process',
      registers: [registry],
    });

    // QueueEvents blocks on a stream read, so it needs a connection of its own.
    const eventsConnection = createRedis(config.redisUrl, 'worker');
    eventsConnection.on('error', (err) => app.log.debug({ err: err.message }, 'queue events connection error'));
    const events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection, prefix: config.queuePrefix });
    events.on('error', (err) => app.log.warn({ err: err.message }, 'queue events error'));
    events.on('completed', ({ returnvalue }) => {
      finished.inc({ status: 'completed' });
      const bytes = (returnvalue as unknown as { bytes?: unknown } | null)?.bytes;
      if (typeof bytes === 'number') copiedBytes.inc(bytes);
    });
    events.on('failed', ({ failedReason }) => {
      finished.inc({ status: decodeFailure(failedReason).code === 'CANCELLED' ? 'cancelled' : 'failed' });
    });

    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      httpDuration.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000);
    });

    app.get(
      '/metrics',
      {
        // Queue depth and traffic say little, but only to whom METRICS_PUBLIC allows.
        config: { access: config.metricsPublic ? 'public' : ANY_ROLE },
        schema: {
          operationId: 'getMetrics',
          summary: 'Prometheus metrics',
          description:
            'HTTP latency by route and status, queue depth by state, jobs finished and bytes copied as this API ' +
            'process saw them, in the Prometheus text format. Public when METRICS_PUBLIC is set.',
          tags: ['health'],
          produces: ['text/plain'],
        },
      },
      async (_request, reply) => {
        reply.header('content-type', registry.contentType);
        return registry.metrics();
      },
    );

    app.addHook('onClose', async () => {
      // close() never settles if the connection never became ready (Redis down since start).
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      });
      await Promise.race([events.close().catch(() => undefined), timeout]);
      clearTimeout(timer);
      eventsConnection.disconnect();
    });
  },
  { name: 'metrics', dependencies: ['queue'] },
);
