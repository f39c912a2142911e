import { setTimeout as sleep } from 'node:timers/promises';
import fp from 'fastify-plugin';
import { isTerminal, type LogRow } from '@coffer/shared';
import { createJobLookup } from '../jobs/job-lookup.js';
import type { JobView } from '../jobs/job-view.js';

/** What one job did, as the hub tells every stream. */
export type JobEvent =
  /** The progress the worker last wrote to the BullMQ job. */
  | { type: 'progress'; jobId: string; progress: unknown }
  /** The job's log (every row, oldest first) after a transition, and its view then (null if none). */
  | { type: 'log'; jobId: string; history: readonly LogRow[]; view: JobView | null };

export interface JobEventListener {
  onEvent(event: JobEvent): void;
  /** Ends the listener's stream: the app is closing. */
  close(): void;
}

export interface JobEventHub {
  /** Calls `listener` for every job event until the returned function is called. */
  subscribe(listener: JobEventListener): () => void;
  /** How many listeners are subscribed. */
  readonly listeners: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    jobEvents: JobEventHub;
  }
}

/** The rows a transition of each BullMQ event leads to; the worker writes them shortly after (or before). */
const EXPECTED: Readonly<Record<string, readonly string[]>> = {
  active: ['active'],
  completed: ['completed'],
  failed: ['failed', 'cancelled', 'retrying'],
  waiting: ['queued', 'retrying'],
  delayed: ['retrying'],
  removed: ['cancelled'],
};
/** How long a BullMQ event waits for its log row before the log is fanned out as it is. */
const ROW_WAIT_MS = 5000;
const ROW_POLL_MS = 100;
/**
 * After that, the row is still awaited, less often, for this long: the log lags behind Redis while
 * the outbox waits for MySQL, and a stream must not miss a transition that lands late.
 */
const LATE_ROW_WAIT_MS = 120_000;
const LATE_ROW_POLL_MS = 1000;

/** Job status rows of the log; `queued` is where a job starts, not a transition. */
export function isTransition(row: LogRow): boolean {
  return row.jobId !== null && ['active', 'retrying', 'completed', 'failed', 'cancelled'].includes(row.status);
}

/**
 * The API process's queue events (so any replica streams any worker's jobs), fanned out to
 * the event streams and webhooks. A transition is told with the job's log, since log
 * row ids are what a client resumes from: each BullMQ event makes the hub read the job's log
 * (waiting briefly for the row the event implies) once for every stream.
 */
export default fp(
  async (app) => {
    const { queueEvents } = app;
    const lookup = createJobLookup(app.backupQueue, app.logStore);
    const listeners = new Set<JobEventListener>();
    // Jobs whose log is being read, with the statuses of events that came meanwhile.
    const reading = new Map<string, string[]>();
    let closing = false;

    function fanOut(event: JobEvent): void {
      for (const listener of [...listeners]) {
        try {
          listener.onEvent(event);
        } catch (err) {
          app.log.error({ err, jobId: event.jobId }, 'job event listener failed');
        }
      }
    }

    async function readLog(jobId: string, expected: readonly string[]): Promise<void> {
      const started = Date.now();
      let toldLate = false;
      while (!closing) {
        const history = await app.logStore.history(jobId);
        // `queued` counts here (a `waiting` event expects it) though streams do not tell it.
        const last = history
          .filter((row) => isTransition(row) || (row.jobId !== null && row.status === 'queued'))
          .at(-1);
        const settled = expected.length === 0 || (last && (isTerminal(last.status) || expected.includes(last.status)));
        const waited = Date.now() - started;
        // Told as it is once the row is late, and again when it lands (streams skip rows they told).
        if (settled || waited > LATE_ROW_WAIT_MS || (waited > ROW_WAIT_MS && !toldLate)) {
          const view = await lookup.get(jobId).catch(() => null);
          if (closing) return;
          fanOut({ type: 'log', jobId, history, view });
          if (settled || waited > LATE_ROW_WAIT_MS) return;
          toldLate = true;
        }
        // A newer event of the job takes over the wait (its read sees the late row too).
        if (toldLate && (reading.get(jobId)?.length ?? 0) > 0) return;
        await sleep(waited > ROW_WAIT_MS ? LATE_ROW_POLL_MS : ROW_POLL_MS);
      }
    }

    function transitioned(jobId: string, eventName: string): void {
      if (listeners.size === 0 || closing) return;
      const expected = EXPECTED[eventName] ?? [];
      const waiting = reading.get(jobId);
      if (waiting) {
        waiting.push(...expected);
        return;
      }
      reading.set(jobId, []);
      void (async () => {
        let next: readonly string[] | undefined = expected;
        while (next) {
          await readLog(jobId, next).catch((err: unknown) =>
            app.log.warn({ err, jobId }, 'cannot read the log of a job for its event streams'),
          );
          const more = reading.get(jobId) ?? [];
          next = more.length > 0 && !closing ? more : undefined;
          reading.set(jobId, []);
        }
        reading.delete(jobId);
      })();
    }

    for (const eventName of Object.keys(EXPECTED)) {
      queueEvents.on(eventName as 'active', ({ jobId }: { jobId: string }) => transitioned(jobId, eventName));
    }
    queueEvents.on('progress', ({ jobId, data }) => {
      if (listeners.size > 0) fanOut({ type: 'progress', jobId, progress: data });
    });

    app.decorate<JobEventHub>('jobEvents', {
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      get listeners() {
        return listeners.size;
      },
    });

    // Open streams would hold the server's close forever: end them first.
    app.addHook('preClose', async () => {
      closing = true;
      for (const listener of [...listeners]) listener.close();
      listeners.clear();
    });
  },
  { name: 'job-events', dependencies: ['queue', 'queue-events', 'log-store'] },
);
