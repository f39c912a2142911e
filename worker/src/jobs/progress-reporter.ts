import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import type { JobProgress } from '@coffer/shared';

/** Progress is written to Redis at most this often per job. */
const PROGRESS_INTERVAL_MS = 250;

export interface ProgressReporter {
  /** Running counts; written when the last write is old enough. */
  advanced(files: number, bytes: number): void;
  /** Totals, once known; written at once. */
  measured(filesTotal: number, bytesTotal: number): void;
  /** Counts and totals together (a kind that knows its totals up front); throttled like `advanced`. */
  report(progress: JobProgress): void;
}

/** Writes a job's progress to the queue, throttled, whichever kind the job is. */
export function createProgressReporter(job: Pick<Job, 'updateProgress'>, logger: Logger): ProgressReporter {
  const progress: JobProgress = { files: 0, filesTotal: 0, bytes: 0, bytesTotal: 0 };
  let lastSent = 0;
  const send = () => {
    lastSent = Date.now();
    job.updateProgress({ ...progress }).catch((err: unknown) => logger.warn({ err }, 'cannot update progress'));
  };
  const sendIfDue = () => {
    if (Date.now() - lastSent >= PROGRESS_INTERVAL_MS) send();
  };
  return {
    advanced(files, bytes) {
      progress.files = files;
      progress.bytes = bytes;
      sendIfDue();
    },
    measured(filesTotal, bytesTotal) {
      progress.filesTotal = filesTotal;
      progress.bytesTotal = bytesTotal;
      send();
    },
    report(next) {
      Object.assign(progress, next);
      sendIfDue();
    },
  };
}
