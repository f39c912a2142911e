import type { JobState } from 'bullmq';
import type { Failure } from './failure.js';
export * from './job-contract.js';

/** The one queue every kind of job goes through (its name predates the other kinds). */
export const QUEUE_NAME = 'backup';
export const BACKUP_JOB_NAME = 'backup';

export const JOB_STATUSES = ['queued', 'active', 'retrying', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export function isTerminal(status: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/**
 * Maps a BullMQ state to the public status. A delayed job that has already run
 * is waiting for its retry; a failed one with code CANCELLED was cancelled.
 */
export function statusFromQueueState(
  state: JobState | 'unknown',
  attemptsMade: number,
  failure: Failure | null,
): JobStatus | null {
  switch (state) {
    case 'waiting':
    case 'waiting-children':
    case 'prioritized':
    case 'delayed':
      return attemptsMade > 0 ? 'retrying' : 'queued';
    case 'active':
      return 'active';
    case 'completed':
      return 'completed';
    case 'failed':
      return failure?.code === 'CANCELLED' ? 'cancelled' : 'failed';
    default:
      return null;
  }
}
