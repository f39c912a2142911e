import { Worker } from 'bullmq';
import type { Logger } from 'pino';
import {
  QUEUE_NAME,
  cancelChannel,
  createLogRepository,
  createMysqlPool,
  createRedis,
  isCancelRequested,
  type BackupJobData,
  type BackupResult,
  type CofferConfig,
} from '@coffer/shared';
import { createBackupHandler } from './backup-handler.js';

export interface RunningWorker {
  worker: Worker<BackupJobData, BackupResult>;
  /** Stops taking jobs, waits for running ones (bounded), closes every connection. */
  close(timeoutMs?: number): Promise<void>;
}

/** Starts one BullMQ worker with its MySQL pool and the cancel listener. */
export function startWorker(config: CofferConfig, logger: Logger): RunningWorker {
  const pool = createMysqlPool(config.mysql, { connectionLimit: Math.max(2, config.workerConcurrency) });
  const logStore = createLogRepository(pool);
  const connection = createRedis(config.redisUrl, 'worker');
  const subscriber = createRedis(config.redisUrl, 'worker');

  const handler = createBackupHandler({
    config,
    logStore,
    logger,
    isCancelRequested: (jobId) => isCancelRequested(connection, config.queuePrefix, jobId),
  });
  const worker = new Worker<BackupJobData, BackupResult>(QUEUE_NAME, handler, {
    connection,
    prefix: config.queuePrefix,
    concurrency: config.workerConcurrency,
  });
  worker.on('error', (err) => logger.error({ err }, 'worker error'));
  worker.on('failed', (job, err) => logger.debug({ jobId: job?.id, err: err.message }, 'job failed'));

  // A cancel request is broadcast; the worker that holds the job aborts its signal.
  const channel = cancelChannel(config.queuePrefix);
  subscriber.on('message', (from, jobId) => {
    if (from === channel && worker.cancelJob(jobId, 'cancelled by request')) {
      logger.info({ jobId }, 'cancelling running job');
    }
  });
  subscriber.subscribe(channel).catch((err: unknown) => logger.error({ err }, 'cannot subscribe to cancel requests'));

  return {
    worker,
    async close(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      // close() waits for running jobs and can hang while Redis is away; bound it.
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          logger.warn({ timeoutMs }, 'worker did not close in time; forcing');
          resolve();
        }, timeoutMs);
      });
      await Promise.race([worker.close(), timeout]);
      clearTimeout(timer);
      subscriber.disconnect();
      connection.disconnect();
      await pool.end();
    },
  };
}
