import { Queue, type ConnectionOptions, type DefaultJobOptions } from 'bullmq';
import type { CofferConfig } from './config.js';
import { BACKUP_JOB_NAME, QUEUE_NAME, type BackupJobData, type BackupResult } from './job.js';

export type BackupQueue = Queue<BackupJobData, BackupResult, typeof BACKUP_JOB_NAME>;

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
  return new Queue<BackupJobData, BackupResult, typeof BACKUP_JOB_NAME>(QUEUE_NAME, {
    connection,
    prefix: config.queuePrefix,
    defaultJobOptions: backupJobOptions(config),
  });
}
