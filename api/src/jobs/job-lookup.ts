import { type BackupQueue, type LogRepository } from '@coffer/shared';
import { QueueUnavailable } from '../errors.js';
import { viewFromLog, viewFromQueueJob, type JobView } from './job-view.js';

/**
 * Finds job views: from Redis while it holds the job (live state, progress, the
 * full result), else from the log. Either one answers while the other is away;
 * only a job neither can describe is a 503.
 */
export function createJobLookup(queue: BackupQueue, logStore: LogRepository) {
  async function fromQueue(id: string): Promise<JobView | null> {
    // State first, then the job: a job read before it completed and a state read after
    // would give a completed view without its result; this way round it can only lag.
    const state = await queue.getJobState(id);
    if (state === 'unknown') return null;
    const job = await queue.getJob(id);
    if (!job) return null;
    return viewFromQueueJob(job, state);
  }

  async function live(id: string, fromLog: JobView | null): Promise<JobView | null> {
    try {
      return (await fromQueue(id)) ?? fromLog;
    } catch (err) {
      if (fromLog) return fromLog;
      throw new QueueUnavailable({ cause: err });
    }
  }

  return {
    async get(id: string): Promise<JobView | null> {
      let queueError: unknown = null;
      const queued = await fromQueue(id).catch((err: unknown) => {
        queueError = err;
        return null;
      });
      if (queued) return queued;
      const logged = viewFromLog(await logStore.history(id));
      if (!logged && queueError) throw new QueueUnavailable({ cause: queueError });
      return logged;
    },

    /** Views for a page of ids, in the given order. */
    async many(ids: readonly string[]): Promise<JobView[]> {
      const histories = await logStore.histories(ids);
      const views = await Promise.all(ids.map((id) => live(id, viewFromLog(histories.get(id) ?? []))));
      return views.filter((view): view is JobView => view !== null);
    },
  };
}

export type JobLookup = ReturnType<typeof createJobLookup>;
