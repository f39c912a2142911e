import type { Job } from 'bullmq';
import {
  decodeFailure,
  isTerminal,
  statusFromQueueState,
  type BackupJobData,
  type JobProgress,
  type BackupResult,
  type Failure,
  type JobStatus,
  type LogRow,
} from '@coffer/shared';

/** The public view of a job, as `GET /jobs/:id` answers it. */
export interface JobView {
  id: string;
  status: JobStatus;
  source: string;
  destination: string;
  attempts: number;
  progress: JobProgress;
  result?: BackupResult | Pick<BackupResult, 'path' | 'files' | 'bytes' | 'durationMs'>;
  error?: Failure | { code: string; message: string };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The token that submitted the job; null for jobs from before authentication. */
  actor: string | null;
}

const NO_PROGRESS: JobProgress = { files: 0, filesTotal: 0, bytes: 0, bytesTotal: 0 };

function iso(ms: number | undefined | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

function progressOf(value: unknown): JobProgress {
  if (value && typeof value === 'object' && 'files' in value) return { ...NO_PROGRESS, ...(value as JobProgress) };
  return NO_PROGRESS;
}

function finalProgress(result: { files: number; bytes: number }): JobProgress {
  return { files: result.files, filesTotal: result.files, bytes: result.bytes, bytesTotal: result.bytes };
}

/** The view of a job Redis still holds: live state and progress. */
export function viewFromQueueJob(
  job: Job<BackupJobData, BackupResult>,
  state: Parameters<typeof statusFromQueueState>[0],
): JobView | null {
  const failure = job.failedReason ? decodeFailure(job.failedReason) : null;
  const status = statusFromQueueState(state, job.attemptsMade, failure);
  if (!status || !job.id) return null;
  const view: JobView = {
    id: job.id,
    status,
    source: job.data.source,
    destination: job.data.destination,
    attempts: job.attemptsStarted,
    progress: progressOf(job.progress),
    createdAt: new Date(job.timestamp).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: isTerminal(status) ? iso(job.finishedOn) : null,
    actor: job.data.actor ?? null,
  };
  if (status === 'completed' && job.returnvalue) {
    view.result = job.returnvalue;
    view.progress = finalProgress(job.returnvalue);
  }
  if ((status === 'failed' || status === 'cancelled') && failure) view.error = failure;
  return view;
}

/**
 * The view of a job rebuilt from its log rows (oldest first), for jobs Redis
 * no longer holds. Null when the log has no `queued` row for it.
 */
export function viewFromLog(rows: readonly LogRow[]): JobView | null {
  const queued = rows.find((row) => row.status === 'queued');
  // The terminal row decides, even if a stray row of a dead attempt came after it.
  const last = rows.find((row) => isTerminal(row.status)) ?? rows[rows.length - 1];
  if (!queued || !last || !queued.jobId) return null;
  const started = rows.find((row) => row.status === 'active');
  const status = last.status as JobStatus;
  const view: JobView = {
    id: queued.jobId,
    status,
    source: queued.parameter,
    destination: queued.destination ?? '',
    attempts: rows.filter((row) => row.status === 'active').length,
    progress: NO_PROGRESS,
    createdAt: queued.date.toISOString(),
    startedAt: started ? started.date.toISOString() : null,
    finishedAt: isTerminal(status) ? last.date.toISOString() : null,
    actor: queued.actor,
  };
  if (status === 'completed') {
    const result = {
      path: last.snapshot ?? '',
      files: last.files ?? 0,
      bytes: last.bytes ?? 0,
      durationMs: last.durationMs ?? 0,
    };
    view.result = result;
    view.progress = finalProgress(result);
  }
  if (status === 'failed' || status === 'cancelled') {
    view.error = last.code ? { code: last.code, message: last.message ?? '' } : decodeFailure(last.message);
  }
  return view;
}
