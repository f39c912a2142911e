import type { LogEntry } from '@coffer/shared';

type Append = (entries: LogEntry | readonly LogEntry[]) => Promise<void>;

interface Waiting {
  entries: readonly LogEntry[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Rows in one INSERT at most. */
const MAX_BATCH_ROWS = 500;
/** INSERTs in flight at once; later calls wait and go together in the next one. */
const MAX_IN_FLIGHT = 2;

/**
 * Group commit for log rows: concurrent appends go to MySQL together in one
 * multi-row INSERT (one round trip, one commit) instead of one each. Nothing
 * waits on a timer: an idle writer flushes at the next turn of the event loop,
 * a busy one collects calls while its INSERTs are in flight. Each call still
 * resolves only once its rows are written, and fails if they were not.
 */
export function batchAppends(append: Append): Append {
  const waiting: Waiting[] = [];
  let inFlight = 0;
  let scheduled = false;

  function schedule(): void {
    if (scheduled || inFlight >= MAX_IN_FLIGHT || waiting.length === 0) return;
    scheduled = true;
    setImmediate(() => void flush());
  }

  async function flush(): Promise<void> {
    scheduled = false;
    let take = 0;
    for (let rows = 0; take < waiting.length && rows < MAX_BATCH_ROWS; take++)
      rows += waiting[take]?.entries.length ?? 0;
    const batch = waiting.splice(0, take);
    inFlight += 1;
    try {
      await append(batch.flatMap((call) => call.entries));
      for (const call of batch) call.resolve();
    } catch (err) {
      for (const call of batch) call.reject(err);
    } finally {
      inFlight -= 1;
      schedule();
    }
  }

  return (entries) =>
    new Promise<void>((resolve, reject) => {
      const list = Array.isArray(entries) ? (entries as readonly LogEntry[]) : [entries as LogEntry];
      waiting.push({ entries: list, resolve, reject });
      schedule();
    });
}
