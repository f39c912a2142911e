import { QueueEvents, Worker } from 'bullmq';
import type { Logger } from 'pino';
import {
  QUEUE_NAME,
  cancelChannel,
  createBackupQueue,
  createLogOutbox,
  createLogRepository,
  createMysqlPool,
  createRedis,
  createSubscriber,
  createRetentionStore,
  createSnapshotCatalog,
  isCancelRequested,
  jobLogRow,
  noteCancelled,
  settlesWithin,
  type CofferConfig,
  type JobItem,
  type JobResult,
} from '@coffer/shared';
import {
  CANCEL_REASON,
  LOCK_LOST_REASON,
  SHUTDOWN_REASON,
  createJobProcessor,
  type QueueJob,
} from './jobs/attempt-lifecycle.js';
import { createAutoPrune } from './jobs/auto-prune.js';
import { backupRunner } from './jobs/backup-runner.js';
import { pruneRunner } from './jobs/prune-runner.js';
import { restoreRunner } from './jobs/restore-runner.js';
import { verifyRunner } from './jobs/verify-runner.js';
import type { WorkerMetrics } from './metrics.js';
import { createPruneLocks } from './prune/prune-lock.js';

/** After this long without a ready connection while Redis answers others, the worker is rebuilt. */
const WATCHDOG_INTERVAL_MS = 5000;
const WATCHDOG_LIMIT = 6;
/** Jobs handed back at shutdown must let go within this long. */
const HANDBACK_TIMEOUT_MS = 5000;
// BullMQ's message when a job lost its worker more often than allowed.
const STALLED_TOO_OFTEN = 'stalled more than allowable limit';

export interface RunningWorker {
  /** The current BullMQ worker (the watchdog may replace it). */
  readonly worker: Worker<JobItem['data'], JobResult, string>;
  /** Stops taking jobs, lets running ones finish for `timeoutMs`, hands back the rest, closes everything. */
  close(timeoutMs?: number): Promise<void>;
}

export interface WorkerOptions {
  /** Counts the jobs this worker finishes; closed with the worker. Default none. */
  metrics?: WorkerMetrics;
}

/**
 * A job done within this long records its `active` and final rows in one round trip (see
 * `LifecycleDeps.activeDelayMs`); a longer one has its `active` row this late at most.
 */
const ACTIVE_DELAY_MS = 50;

/** Starts one BullMQ worker with its log outbox, cancel listener and watchdog. */
export function startWorker(config: CofferConfig, logger: Logger, options: WorkerOptions = {}): RunningWorker {
  const { metrics } = options;
  const pool = createMysqlPool(config.mysql, { connectionLimit: 2, limits: config.mysqlLimits });
  // A prune holds a connection for its whole run (its destination's lock): one each, apart.
  const lockPool = createMysqlPool(config.mysql, {
    connectionLimit: config.workerConcurrency,
    limits: config.mysqlLimits,
  });
  const connection = createRedis(config.redis, 'worker');
  // A cancel request is broadcast; the worker that holds the job aborts its signal.
  const channel = cancelChannel(config.queuePrefix);
  const subscriber = createSubscriber(config.redis, channel, {
    failed: (err) => logger.error({ err }, 'cannot subscribe to cancel requests'),
  });
  const eventsConnection = createRedis(config.redis, 'worker');
  for (const redis of [connection, subscriber, eventsConnection]) {
    redis.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
  }

  const outbox = createLogOutbox({
    redis: connection,
    prefix: config.queuePrefix,
    logStore: createLogRepository(pool),
    logger,
  });
  outbox.start();
  const queue = createBackupQueue(config, connection);
  const retention = createRetentionStore(pool);
  const catalog = createSnapshotCatalog(pool);

  const handler = createJobProcessor(
    {
      config,
      outbox,
      logger,
      isCancelRequested: (jobId) => isCancelRequested(connection, config.queuePrefix, jobId),
      noteCancelled: (jobId) => noteCancelled(connection, config.queuePrefix, jobId, config.jobRetentionSeconds),
      afterCompleted: createAutoPrune({ config, retention, catalog, outbox, queue }),
      ...(metrics ? { onFinished: (finished) => metrics.jobFinished(finished) } : {}),
      activeDelayMs: ACTIVE_DELAY_MS,
    },
    {
      backup: backupRunner(config),
      restore: restoreRunner(config),
      verify: verifyRunner(),
      prune: pruneRunner({
        config,
        catalog,
        retention,
        outbox,
        locks: createPruneLocks(lockPool, config.mysql.database),
      }),
    },
  );

  function createWorker(): Worker<JobItem['data'], JobResult, string> {
    const created = new Worker<JobItem['data'], JobResult, string>(QUEUE_NAME, handler, {
      connection,
      prefix: config.queuePrefix,
      concurrency: config.workerConcurrency,
      lockDuration: config.jobLockMs,
      stalledInterval: config.jobStalledCheckMs,
      maxStalledCount: config.jobMaxStalls,
    });
    created.on('error', (err: Error) => logger.error({ err }, 'worker error'));
    created.on('stalled', (jobId) => logger.warn({ jobId }, 'job lost its worker; queued again'));
    // Past its lock another worker may already run the job: this attempt stops at once.
    created.on('lockRenewalFailed', (jobIds) => {
      for (const jobId of jobIds) {
        if (created.cancelJob(jobId, LOCK_LOST_REASON))
          logger.warn({ jobId }, 'lost the lock of a running job; stopping it');
      }
    });
    return created;
  }
  let worker = createWorker();

  // A job that lost its worker too often is failed by BullMQ itself, with no
  // processor left to log it: record its terminal row here (idempotent).
  const events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection, prefix: config.queuePrefix });
  events.on('error', (err: Error) => logger.debug({ err: err.message }, 'queue events error'));
  events.on('failed', ({ jobId, failedReason }) => {
    if (!failedReason.includes(STALLED_TOO_OFTEN)) return;
    void (async () => {
      const job = (await queue.getJob(jobId)) as QueueJob | undefined;
      if (!job) return;
      const message = `the job lost its worker more than ${config.jobMaxStalls} times`;
      const item = { name: job.name, data: job.data } as JobItem;
      const row = jobLogRow(item, jobId, Math.max(1, job.attemptsStarted), config.instanceName);
      await outbox.record([{ ...row, status: 'failed', code: 'WORKER_LOST', message }], {
        code: 'WORKER_LOST',
        message,
      });
    })().catch((err: unknown) => logger.error({ err, jobId }, 'cannot record a job failed by stalling'));
  });

  subscriber.on('message', (from: string, jobId: string) => {
    if (from === channel && worker.cancelJob(jobId, CANCEL_REASON)) logger.info({ jobId }, 'cancelling running job');
  });

  // ioredis reconnects by itself; this catches the rare worker that never does.
  let unhealthyChecks = 0;
  let rebuilding = false;
  const watchdog = setInterval(() => {
    if (rebuilding) return;
    void (async () => {
      const client = await worker.client;
      const healthy = client.status === 'ready' && worker.isRunning();
      if (healthy) {
        unhealthyChecks = 0;
        return;
      }
      const redisAnswers = await subscriber.ping().then(
        () => true,
        () => false,
      );
      unhealthyChecks = redisAnswers ? unhealthyChecks + 1 : 0;
      if (unhealthyChecks < WATCHDOG_LIMIT) return;
      rebuilding = true;
      logger.warn('worker stayed disconnected while Redis answers; rebuilding it');
      await settlesWithin(worker.close(true), HANDBACK_TIMEOUT_MS);
      worker = createWorker();
      unhealthyChecks = 0;
      rebuilding = false;
    })().catch((err: unknown) => logger.warn({ err }, 'watchdog check failed'));
  }, WATCHDOG_INTERVAL_MS);
  watchdog.unref();

  return {
    get worker() {
      return worker;
    },
    async close(timeoutMs = config.shutdownTimeoutMs) {
      clearInterval(watchdog);
      const closing = worker.close();
      if (!(await settlesWithin(closing, timeoutMs))) {
        logger.warn({ timeoutMs }, 'running jobs did not finish in time; handing them back to the queue');
        worker.cancelAllJobs(SHUTDOWN_REASON);
        if (!(await settlesWithin(closing, HANDBACK_TIMEOUT_MS))) logger.error('worker did not close; forcing');
      }
      await outbox.stop();
      await outbox.flush();
      await settlesWithin(events.close(), 1000);
      await settlesWithin(queue.close(), 1000);
      for (const redis of [subscriber, eventsConnection, connection]) redis.disconnect();
      await lockPool.end();
      await pool.end();
      // Last, so the final jobs' counts can still be scraped while the rest closes.
      await metrics?.close();
    },
  };
}
