import { Queue, type ConnectionOptions, type DefaultJobOptions } from 'bullmq';
import type { CofferConfig } from './config.js';
import { QUEUE_NAME, type JobItem, type JobKind, type JobResult } from './job.js';

/** The queue every kind of job goes through; a job's name is its kind. */
export type BackupQueue = Queue<JobItem['data'], JobResult, JobKind>;

/** Retries with exponential backoff; finished jobs leave Redis after the retention window. */
export function backupJobOptions(config: CofferConfig): DefaultJobOptions {
  const retention = { age: config.jobRetentionSeconds, count: config.jobRetentionCount };
  return {
    attempts: config.jobAttempts,
    backoff: { type: 'exponential', delay: config.jobBackoffMs },
    removeOnComplete: retention,
    removeOnFail: retention,
  };
}

export function createBackupQueue(config: CofferConfig, connection: ConnectionOptions): BackupQueue {
  return new Queue<JobItem['data'], JobResult, JobKind>(QUEUE_NAME, {
    connection,
    prefix: config.queuePrefix,
    defaultJobOptions: backupJobOptions(config),
  });
}
