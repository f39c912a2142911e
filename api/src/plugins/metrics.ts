import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RowDataPacket } from 'mysql2/promise';
import { JOB_KINDS, countCancelledAmongFailed, decodeFailure, type CofferConfig } from '@coffer/shared';
import { ANY_ROLE } from '../auth/roles.js';

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'] as const;
/** Kinds of jobs added and not yet finished kept in memory at most (the oldest dropped first: ~100 B each). */
const MAX_TRACKED_KINDS = 100_000;

/** One destination's snapshots, as a scrape reads them from the catalog. */
interface DestinationSnapshots {
  destination: string;
  /** Unix seconds of its newest snapshot, deleted ones included: its last successful backup. */
  lastSuccess: number;
  kept: number;
  damaged: number;
}

// One pass over the catalog in destination order (its KEY (destination, seq)), no temporary table.
const SNAPSHOTS_BY_DESTINATION = `
  SELECT destination,
         UNIX_TIMESTAMP(MAX(created_at)) AS last_success,
         SUM(deleted_at IS NULL) AS kept,
         SUM(deleted_at IS NULL AND verify = 'damaged') AS damaged
  FROM snapshot
  GROUP BY destination`;

/**
 * Prometheus metrics on GET /metrics: HTTP latency, queue depth by state and snapshots per
 * destination (read at scrape time), and jobs finished and bytes copied, counted from the
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

    // The workers' log outbox (shared/src/log-outbox.ts): transitions wait in this list until MySQL
    // takes them, so a backlog that keeps growing means MySQL does not.
    const outboxKey = `${config.queuePrefix}:log-outbox`;
    new Gauge({
      name: 'coffer_log_outbox_rows',
      help: 'Log rows waiting in Redis (the log outbox) to be written to MySQL',
      registers: [registry],
      async collect() {
        try {
          this.set(await app.redis.llen(outboxKey));
        } catch (err) {
          // Without Redis the other metrics still matter; this one is left out of the scrape (a gauge
          // without labels would otherwise report its last value, or 0 after a reset).
          this.remove();
          app.log.warn({ err: (err as Error).message }, 'cannot read the log outbox backlog for metrics');
        }
      },
    });

    // The three snapshot gauges are collected together within one scrape: they share one query.
    let reading: Promise<DestinationSnapshots[] | undefined> | undefined;
    function snapshotsByDestination(): Promise<DestinationSnapshots[] | undefined> {
      reading ??= app.mysql
        .query<RowDataPacket[]>(SNAPSHOTS_BY_DESTINATION)
        .then(([rows]) =>
          rows.map((row) => ({
            destination: String(row.destination),
            lastSuccess: Number(row.last_success),
            kept: Number(row.kept),
            damaged: Number(row.damaged),
          })),
        )
        .catch((err: unknown) => {
          // Without MySQL the other metrics still matter; these are left out of the scrape.
          app.log.warn({ err: (err as Error).message }, 'cannot read snapshots for metrics');
          return undefined;
        })
        .finally(() => {
          reading = undefined;
        });
      return reading;
    }
    const snapshotGauge = (name: string, help: string, value: (facts: DestinationSnapshots) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['destination'],
        registers: [registry],
        async collect() {
          this.reset();
          for (const facts of (await snapshotsByDestination()) ?? []) {
            this.set({ destination: facts.destination }, value(facts));
          }
        },
      });
    snapshotGauge(
      'coffer_last_success_timestamp_seconds',
      "Unix time of the destination's newest completed backup, pruned snapshots included",
      (facts) => facts.lastSuccess,
    );
    snapshotGauge('coffer_snapshots', 'Snapshots the destination keeps (not pruned)', (facts) => facts.kept);
    snapshotGauge(
      'coffer_snapshots_damaged',
      'Kept snapshots of the destination whose last verify found them damaged',
      (facts) => facts.damaged,
    );

    const finished = new Counter({
      name: 'coffer_jobs_finished_total',
      help: 'Jobs that reached a final status, by kind, as seen by this API process',
      labelNames: ['kind', 'status'],
      registers: [registry],
    });
    const copiedBytes = new Counter({
      name: 'coffer_copy_bytes_total',
      help:
        'Bytes of the snapshots completed backups made, hard-linked files included (the workers count what they ' +
        'copied), as seen by this API process',
      registers: [registry],
    });

    // Finished events name the job, not its kind: that comes from its `added` event (the same
    // stream, read in order), or for a job added before this process started, its hash.
    const kinds = new Map<string, string>();
    const events = app.queueEvents;
    events.on('added', ({ jobId, name }) => {
      if (kinds.size >= MAX_TRACKED_KINDS) kinds.delete(kinds.keys().next().value as string);
      kinds.set(jobId, name);
    });
    events.on('removed', ({ jobId }) => kinds.delete(jobId));
    async function kindOf(jobId: string): Promise<string> {
      const known = kinds.get(jobId);
      kinds.delete(jobId);
      const name = known ?? (await app.redis.hget(app.backupQueue.toKey(jobId), 'name').catch(() => null));
      return name !== null && (JOB_KINDS as readonly string[]).includes(name) ? name : 'unknown';
    }

    events.on('completed', ({ jobId, returnvalue }) => {
      void kindOf(jobId).then((kind) => {
        finished.inc({ kind, status: 'completed' });
        const bytes = (returnvalue as unknown as { bytes?: unknown } | null)?.bytes;
        if (kind === 'backup' && typeof bytes === 'number') copiedBytes.inc(bytes);
      });
    });
    events.on('failed', ({ jobId, failedReason }) => {
      const status = decodeFailure(failedReason).code === 'CANCELLED' ? 'cancelled' : 'failed';
      void kindOf(jobId).then((kind) => finished.inc({ kind, status }));
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
  },
  { name: 'metrics', dependencies: ['queue', 'queue-events'] },
);
