import type { Job } from 'bullmq';
import {
  JOB_KINDS,
  decodeFailure,
  isTerminal,
  statusFromQueueState,
  type Failure,
  type JobItem,
  type JobKind,
  type JobProgress,
  type JobResult,
  type JobStatus,
  type LogRow,
} from '@coffer/shared';

/** The public view of a job, as `GET /jobs/:id` answers it. */
export interface JobView {
  id: string;
  kind: JobKind;
  status: JobStatus;
  /** What a backup copies, or what the snapshot a restore or verify reads was copied from (when known). */
  source?: string;
  destination: string;
  /** The snapshot a restore or verify reads. */
  snapshot?: string;
  /** Where a restore writes. */
  target?: string;
  attempts: number;
  progress: JobProgress;
  result?: JobResult | { path: string; files: number; bytes: number; durationMs: number };
  error?: Failure | { code: string; message: string };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The token that submitted the job; null for jobs from before authentication. */
  actor: string | null;
  /** The schedule that queued the job; null for a job queued by a request. */
  schedule: string | null;
}

const NO_PROGRESS: JobProgress = { files: 0, filesTotal: 0, bytes: 0, bytesTotal: 0 };
/** What a job Redis holds shows when nothing moves: not started, or ended. */
const AT_REST = { bytesPerSecond: 0, etaSeconds: null, current: null } satisfies Partial<JobProgress>;

function iso(ms: number | undefined | null): string | null {
  return ms ? new Date(ms).toISOString() : null;
}

/**
 * The progress the worker last wrote, with the live fields always present (progress written
 * before they existed has none); a job that has ended moves no more and is in no entry.
 */
function progressOf(value: unknown, ended: boolean): JobProgress {
  if (!value || typeof value !== 'object' || !('files' in value)) return { ...NO_PROGRESS, ...AT_REST };
  const { files, filesTotal, bytes, bytesTotal, bytesPerSecond, etaSeconds, current } = {
    ...NO_PROGRESS,
    ...AT_REST,
    ...(value as JobProgress),
  };
  const counts = { files, filesTotal, bytes, bytesTotal };
  return ended ? { ...counts, ...AT_REST } : { ...counts, bytesPerSecond, etaSeconds, current };
}

function finalProgress(result: { files: number; bytes: number }): JobProgress {
  return { files: result.files, filesTotal: result.files, bytes: result.bytes, bytesTotal: result.bytes };
}

/** The view of a job Redis still holds: live state and progress. */
export function viewFromQueueJob(
  job: Job<JobItem['data'], JobResult, string>,
  state: Parameters<typeof statusFromQueueState>[0],
): JobView | null {
  const failure = job.failedReason ? decodeFailure(job.failedReason) : null;
  const status = statusFromQueueState(state, job.attemptsMade, failure);
  if (!status || !job.id) return null;
  const data = job.data as Partial<Record<'source' | 'snapshot' | 'target', string>> & JobItem['data'];
  const view: JobView = {
    id: job.id,
    kind: kindOf(job.name),
    status,
    ...defined({ source: data.source, snapshot: data.snapshot, target: data.target }),
    destination: data.destination,
    attempts: job.attemptsStarted,
    progress: progressOf(job.progress, isTerminal(status)),
    createdAt: new Date(job.timestamp).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: isTerminal(status) ? iso(job.finishedOn) : null,
    actor: job.data.actor ?? null,
    schedule: 'schedule' in job.data ? (job.data.schedule ?? null) : null,
  };
  if (status === 'completed' && job.returnvalue) {
    view.result = job.returnvalue;
    if ('files' in job.returnvalue) view.progress = { ...finalProgress(job.returnvalue), ...AT_REST };
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
  const kind = kindOf(queued.action);
  const view: JobView = {
    id: queued.jobId,
    kind,
    status,
    // A restore's parameter is its target; a backup's and a verify's, the source.
    ...defined(
      kind === 'restore'
        ? { target: queued.parameter, snapshot: queued.snapshotId }
        : { source: queued.parameter, snapshot: queued.snapshotId },
    ),
    destination: queued.destination ?? '',
    attempts: rows.filter((row) => row.status === 'active').length,
    // The log keeps no live progress: the rate, ETA and entry in flight are left out, not made up.
    progress: NO_PROGRESS,
    createdAt: queued.date.toISOString(),
    startedAt: started ? started.date.toISOString() : null,
    finishedAt: isTerminal(status) ? last.date.toISOString() : null,
    actor: queued.actor,
    schedule: queued.schedule ?? null,
  };
  if (status === 'completed') {
    const totals = { files: last.files ?? 0, bytes: last.bytes ?? 0, durationMs: last.durationMs ?? 0 };
    view.result = resultFromLog(kind, totals, kind === 'restore' ? queued.parameter : (last.snapshot ?? ''));
    view.progress = finalProgress(totals);
  }
  if (status === 'failed' || status === 'cancelled') {
    view.error = last.code ? { code: last.code, message: last.message ?? '' } : decodeFailure(last.message);
  }
  return view;
}

function kindOf(name: string | null | undefined): JobKind {
  return (JOB_KINDS as readonly (string | null | undefined)[]).includes(name) ? (name as JobKind) : 'backup';
}

/** What the log keeps of a result: the totals, and the path a backup wrote or a restore filled. */
function resultFromLog(
  kind: JobKind,
  totals: { files: number; bytes: number; durationMs: number },
  path: string,
): JobView['result'] {
  if (kind === 'verify') return { ...totals, damaged: 0 };
  if (kind === 'prune') return { kept: [], removed: [] };
  return { path, ...totals };
}

/** The fields of `values` that have a value (the view leaves out what a kind does not have). */
function defined<T extends Record<string, string | null | undefined>>(values: T): Partial<Record<keyof T, string>> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => typeof value === 'string')) as Partial<
    Record<keyof T, string>
  >;
}
