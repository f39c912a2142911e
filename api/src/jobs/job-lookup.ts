import { isTerminal, type BackupQueue, type LogRepository } from '@coffer/shared';
import { viewFromLog, viewFromQueueJob, type JobView } from './job-view.js';

/** Finds job views: from Redis while it holds the job, else from the log. */
export function createJobLookup(queue: BackupQueue, logStore: LogRepository) {
  async function fromQueue(id: string): Promise<JobView | null> {
    const job = await queue.getJob(id);
    if (!job) return null;
    return viewFromQueueJob(job, await job.getState());
  }

  return {
    async get(id: string): Promise<JobView | null> {
      return (await fromQueue(id)) ?? viewFromLog(await logStore.history(id));
    },

    /** Views for a page of ids; jobs still running get their live state from Redis. */
    async many(ids: readonly string[]): Promise<JobView[]> {
      const histories = await logStore.histories(ids);
      const views = await Promise.all(
        ids.map(async (id) => {
          const fromLog = viewFromLog(histories.get(id) ?? []);
          if (fromLog && isTerminal(fromLog.status)) return fromLog;
          return (await fromQueue(id)) ?? fromLog;
        }),
      );
      return views.filter((view): view is JobView => view !== null);
    },
  };
}

export type JobLookup = ReturnType<typeof createJobLookup>;
