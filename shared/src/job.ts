import type { JobState } from 'bullmq';
import type { Failure } from './failure.js';

export const QUEUE_NAME = 'backup';
export const BACKUP_JOB_NAME = 'backup';

/** What the API puts on the queue and the worker trusts (the API validated it). */
export interface BackupJobData {
  source: string;
  destination: string;
}

/** What a completed job returns; BullMQ stores it as the job's return value. */
export interface BackupResult {
  path: string;
  files: number;
  bytes: number;
  durationMs: number;
  dirs: number;
  links: number;
  /** Sockets, FIFOs and devices found in the source and not copied. */
  skipped: number;
}

export interface BackupProgress {
  files: number;
  filesTotal: number;
  bytes: number;
  bytesTotal: number;
}

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
