import type { JobItem, JobKind } from './job-contract.js';
import type { LogEntry } from './log-repository.js';

/** What every log row of one job says about the job, whoever writes it: all but the status. */
export type JobRow = Omit<LogEntry, 'status'>;

/** What a job's `parameter` column names, by kind: what the job acts on. */
export function jobParameter(
  kind: JobKind,
  job: { source?: string | null; target?: string | null; destination?: string | null },
): string {
  const value = kind === 'restore' ? job.target : kind === 'prune' ? job.destination : job.source;
  return value ?? '';
}

/**
 * The log row of a job, before its status: the one place that says which fields of each
 * kind's data a row records. `parameter` is a backup's or verify's source, a restore's target,
 * a prune's destination.
 */
export function jobLogRow(item: JobItem, jobId: string, attempt: number, worker: string): JobRow {
  const { data } = item;
  return {
    action: item.name,
    parameter: jobParameter(item.name, data),
    jobId,
    attempt,
    worker,
    destination: data.destination,
    snapshotId: 'snapshot' in data ? data.snapshot : null,
    actor: data.actor ?? null,
    schedule: 'schedule' in data ? (data.schedule ?? null) : null,
  };
}
