import { isTerminal, type BackupQueue, type LogRepository, type LogRow } from '@coffer/shared';
import { QueueUnavailable } from '../errors.js';
import { viewFromLog, viewFromQueueJob, type JobView } from './job-view.js';

/**
 * A view Redis calls finished while the log has no terminal row yet (the worker's row is still
 * on its way through the outbox): shown as still running, so that once a view is terminal,
 * `GET /logs` already holds the row that made it so.
 */
function catchingUp(view: JobView, history: readonly LogRow[]): JobView {
  if (!isTerminal(view.status) || history.some((row) => isTerminal(row.status))) return view;
  const running: JobView = { ...view, status: 'active', finishedAt: null };
  delete running.result;
  delete running.error;
  return running;
}

/**
 * Finds job views: from Redis while it holds the job (live state, progress, the
 * full result), else from the log. Either one answers while the other is away;
 * only a job neither can describe is a 503. A terminal view from Redis is given only once the
 * log has its terminal row (read your writes); while MySQL is away it may run ahead.
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

  async function live(id: string, history: readonly LogRow[]): Promise<JobView | null> {
    const fromLog = viewFromLog(history);
    try {
      const queued = await fromQueue(id);
      return queued ? catchingUp(queued, history) : fromLog;
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
      if (queued && !isTerminal(queued.status)) return queued;
      let history: LogRow[];
      try {
        history = await logStore.history(id);
      } catch (err) {
        // MySQL is away: Redis's word is the best there is (the README says the view may run ahead).
        if (queued) return queued;
        throw err;
      }
      if (queued) return catchingUp(queued, history);
      const logged = viewFromLog(history);
      if (!logged && queueError) throw new QueueUnavailable({ cause: queueError });
      return logged;
    },

    /** Views for a page of ids, in the given order. */
    async many(ids: readonly string[]): Promise<JobView[]> {
      const histories = await logStore.histories(ids);
      const views = await Promise.all(ids.map((id) => live(id, histories.get(id) ?? [])));
      return views.filter((view): view is JobView => view !== null);
    },
  };
}

export type JobLookup = ReturnType<typeof createJobLookup>;
