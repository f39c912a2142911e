import type { JobState } from 'bullmq';
import type { Failure } from './failure.js';

export const QUEUE_NAME = 'backup';
export const BACKUP_JOB_NAME = 'backup';

/** What the API puts on the queue and the worker trusts (the API validated it). */
export interface BackupJobData {
  source: string;
  destination: string;
  /** Name of the API token that submitted the job; every log row of the job records it as `actor`. */
  actor?: string;
  /** The submitting token's own roots when it is limited to part of SOURCE_ROOTS; the worker checks the real path against them. */
  sourceRoots?: string[];
  /** Hard-link files unchanged since the destination's previous snapshot instead of copying them. Default true. */
  incremental?: boolean;
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
  /** Of `files`, those hard-linked from the previous snapshot because they had not changed (absent before incremental snapshots). */
  filesLinked?: number;
  /** Their bytes, stored once for both snapshots. */
  bytesLinked?: number;
  /** Entries that vanished (`ENOENT`) or could not be opened (`EACCES`) during the copy and were left out. */
  warnings?: BackupWarnings;
}

export interface BackupWarnings {
  /** How many entries were left out. */
  count: number;
  /** The first of them (at most 100): path relative to the source, and the error code. */
  items: {
    /** Relative to the source, decoded as UTF-8 for display (bytes that are not UTF-8 become U+FFFD). */
    path: string;
    /**
     * The relative path's raw bytes in base64, present only when they are not valid UTF-8 (so
     * `path` lost some): names on Linux are bytes, and this one can still be found exactly.
     */
    pathBase64?: string;
    /** `ENOENT` (vanished), `EACCES` (could not be read) or `ECHANGED` (changed kind, say swapped for a link, while copied). */
    code: string;
  }[];
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
