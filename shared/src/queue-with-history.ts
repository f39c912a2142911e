import { jobLogRow } from './job-log-row.js';
import type { JobItem } from './job-contract.js';
import type { LogEntry } from './log-repository.js';

/** Where a job's first rows go and how it reaches the queue: the API's log store, or a worker's outbox. */
export interface QueueingSinks {
  /** Records one log row durably (MySQL, or the outbox that delivers to it in order). */
  record(entry: LogEntry): Promise<void>;
  /** Adds the job to the BullMQ queue under `jobId`. */
  add(item: JobItem, jobId: string): Promise<unknown>;
  /** Told when the `failed` row of a job the queue refused cannot be recorded either. */
  unrecorded(err: unknown): void;
}

/** The queue refused a job whose `queued` row is recorded; its history was closed with a `failed` row. */
export class JobNotQueued extends Error {
  override readonly name = 'JobNotQueued';
}

/**
 * Queues a job the way every job must be: its `queued` row recorded first, so no worker's
 * `active` row can precede it; then the add. If the queue refuses the job, its history is closed
 * with a `failed` QUEUE_UNAVAILABLE row (so it does not look pending forever) and JobNotQueued is
 * thrown, the queue's error as its cause. A `queued` row that cannot be recorded throws as is.
 */
export async function queueWithHistory(
  sinks: QueueingSinks,
  item: JobItem,
  jobId: string,
  worker: string,
  queuedMessage?: string,
): Promise<void> {
  const row = jobLogRow(item, jobId, 1, worker);
  await sinks.record({ ...row, status: 'queued', ...(queuedMessage === undefined ? {} : { message: queuedMessage }) });
  try {
    await sinks.add(item, jobId);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    await sinks
      .record({ ...row, status: 'failed', code: 'QUEUE_UNAVAILABLE', message: `not queued: ${reason}` })
      .catch((recordErr: unknown) => sinks.unrecorded(recordErr));
    throw new JobNotQueued(`job ${jobId} was not queued: ${reason}`, { cause: err });
  }
}
