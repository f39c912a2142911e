// Checks a snapshot against its manifest on worker threads of its own (see verify-thread.ts):
// reading and hashing every file with synchronous calls there keeps this thread's event loop,
// which renews the job's queue lock, free.
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { FailureProblem } from '@coffer/shared/failure';
import type { JobProgress } from '@coffer/shared/job-contract';
import { threadEntry } from './thread-entry.js';
import { deserializeError, type Unfinished } from './thread-failure.js';

export interface VerifyRequest {
  /** The snapshot folder; its manifest lies beside it (see `manifestPathOf`). */
  snapshotPath: string;
  /** SHA-256 of the manifest as the catalog recorded it. */
  manifestSha256: string;
  /** Aborting stops the check within a second, even inside a huge file; the call then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Called with the running counts at least every 250 ms; the totals come from the manifest, and
   * `current` names the entry a thread has in flight (or just checked), relative to the snapshot
   * as display text (null in the last call). A throw stops the check and is the rejection.
   */
  onProgress?: (progress: JobProgress) => void;
}

export interface VerifyProblems {
  /** Every entry that does not match the manifest. */
  count: number;
  /** The first of them, at most `MAX_LISTED_PROBLEMS`. */
  items: FailureProblem[];
}

export interface VerifyReport {
  /** Regular files checked: read and hashed, or (those holding no data) checked by size and blocks. */
  files: number;
  /** Bytes read and hashed. */
  bytes: number;
  durationMs: number;
  problems: VerifyProblems;
}

export const MAX_LISTED_PROBLEMS = 100;

/** What a thread is given (as its `workerData`). */
export interface VerifyTask {
  snapshotPath: string;
  manifestSha256: string;
  /** The entries this thread checks: those whose path hashes to `part` of `parts`. */
  part: number;
  parts: number;
  /** Int32 `STOP_FLAG` set to 1 asks every thread of the verification to stop at its next entry or chunk. */
  state: SharedArrayBuffer;
}

export const STOP_FLAG = 0;

/** What the thread posts; exactly one `done`, `stopped` or `failed` ends it. */
export type VerifyMessage =
  { type: 'progress'; progress: JobProgress } | { type: 'done'; report: Omit<VerifyReport, 'durationMs'> } | Unfinished;

// Threads sharing one verification: a small file costs more in system calls than in hashing,
// which threads make side by side. At most four, so that a verification leaves cores to the
// copies running beside it.
const MAX_THREADS = 4;
// A thread that has not seen the stop flag by then (still parsing a huge manifest, say) is terminated.
const STOP_GRACE_MS = 500;
// The threads' progress, summed, is handed on at most this often.
const PROGRESS_INTERVAL_MS = 100;

/**
 * Verifies the snapshot `snapshotPath` against its manifest: every entry is opened relative to
 * its open parent and never through a link, and compared with the manifest line of the same
 * path (type, size, mode, mtime; a file's SHA-256 read now; a link's target). Entries that do
 * not match are reported as problems (`missing`, `changed`, `extra`, `unreadable`), not thrown.
 * A manifest that is missing or does not match `manifestSha256` throws `SNAPSHOT_DAMAGED`, a
 * snapshot folder that is not there `SNAPSHOT_NOT_FOUND`.
 *
 * Runs on up to `MAX_THREADS` worker threads of its own, which share out the entries by path.
 */
export async function verifySnapshot(request: VerifyRequest): Promise<VerifyReport> {
  const { snapshotPath, manifestSha256, signal, onProgress } = request;
  signal?.throwIfAborted();
  const started = performance.now();
  const parts = Math.min(MAX_THREADS, availableParallelism());
  const state = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const stop = new GroupStop(state);
  const progress = new ProgressSum(parts, onProgress, stop);
  const stopOnAbort = () => stop.stop();
  signal?.addEventListener('abort', stopOnAbort, { once: true });
  // Every thread has ended when this settles, whatever happened: nothing reads on behind it.
  const outcomes = await Promise.allSettled(
    Array.from({ length: parts }, (_, part) =>
      runVerifyThread({ snapshotPath, manifestSha256, state, part, parts }, stop, (counts) =>
        progress.update(part, counts),
      ),
    ),
  );
  signal?.removeEventListener('abort', stopOnAbort);
  // An abort wins over whatever a thread was doing when it saw it; then the first failure.
  signal?.throwIfAborted();
  // A progress callback may have thrown after the last thread had looked at the stop flag.
  if (stop.failure) throw stop.failure.error;
  const reports = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  const report = combined(reports);
  progress.finish(report);
  return { ...report, durationMs: Math.round(performance.now() - started) };
}

/** The stop flag of a verification's threads, and the first failure that set it. */
class GroupStop {
  readonly #flag: Int32Array;
  readonly #listeners: Array<() => void> = [];
  #failure: { error: unknown } | undefined;
  #stopped = false;

  constructor(state: SharedArrayBuffer) {
    this.#flag = new Int32Array(state);
  }

  get failure(): { error: unknown } | undefined {
    return this.#failure;
  }

  /** Records `error` when it is the first failure, and stops every thread. */
  fail(error: unknown): void {
    this.#failure ??= { error };
    this.stop();
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    Atomics.store(this.#flag, STOP_FLAG, 1);
    for (const listener of this.#listeners) listener();
  }

  onStop(listener: () => void): void {
    this.#listeners.push(listener);
  }
}

/** Sums the threads' progress for `onProgress`, once every thread has told its totals. */
class ProgressSum {
  readonly #latest: Array<JobProgress | undefined>;
  readonly #onProgress: VerifyRequest['onProgress'];
  readonly #stop: GroupStop;
  #lastReport: number | undefined;

  constructor(parts: number, onProgress: VerifyRequest['onProgress'], stop: GroupStop) {
    this.#latest = Array.from({ length: parts }, () => undefined);
    this.#onProgress = onProgress;
    this.#stop = stop;
  }

  update(part: number, progress: JobProgress): void {
    this.#latest[part] = progress;
    const now = performance.now();
    if (this.#lastReport !== undefined && now - this.#lastReport < PROGRESS_INTERVAL_MS) return;
    const parts = this.#latest.filter((latest) => latest !== undefined);
    if (parts.length < this.#latest.length) return;
    this.#lastReport = now;
    this.#report({ ...sum(parts), current: progress.current ?? null });
  }

  /** The last report, with the final counts, once the threads have ended: a throw is the rejection. */
  finish({ files, bytes }: Pick<JobProgress, 'files' | 'bytes'>): void {
    const parts = this.#latest.filter((latest) => latest !== undefined);
    this.#onProgress?.({ ...sum(parts), files, bytes, current: null });
  }

  #report(progress: JobProgress): void {
    try {
      this.#onProgress?.(progress);
    } catch (error) {
      // A throw stops the threads and is the rejection.
      this.#stop.fail(error);
    }
  }
}

function sum(parts: JobProgress[]): JobProgress {
  const total: JobProgress = { files: 0, filesTotal: 0, bytes: 0, bytesTotal: 0 };
  for (const part of parts) {
    total.files += part.files;
    total.filesTotal += part.filesTotal;
    total.bytes += part.bytes;
    total.bytesTotal += part.bytesTotal;
  }
  return total;
}

function combined(reports: Array<Omit<VerifyReport, 'durationMs'>>): Omit<VerifyReport, 'durationMs'> {
  const total: Omit<VerifyReport, 'durationMs'> = { files: 0, bytes: 0, problems: { count: 0, items: [] } };
  for (const report of reports) {
    total.files += report.files;
    total.bytes += report.bytes;
    total.problems.count += report.problems.count;
    total.problems.items.push(...report.problems.items);
  }
  total.problems.items.length = Math.min(total.problems.items.length, MAX_LISTED_PROBLEMS);
  return total;
}

/** Runs one part on a thread of its own; a failure is handed to `stop` (which stops the others) and rejects. */
function runVerifyThread(
  task: VerifyTask,
  stop: GroupStop,
  onProgress: (progress: JobProgress) => void,
): Promise<Omit<VerifyReport, 'durationMs'>> {
  // Node closes the fds a thread opened when it ends, so a terminated thread leaves none open.
  const thread = new Worker(threadEntry('verify-thread'), { workerData: task });
  let terminateTimer: NodeJS.Timeout | undefined;
  let settled = false;
  stop.onStop(() => {
    if (!settled) terminateTimer = setTimeout(() => void thread.terminate(), STOP_GRACE_MS);
  });
  return new Promise((resolve, reject) => {
    const settle = (outcome: { report: Omit<VerifyReport, 'durationMs'> } | { error: unknown }) => {
      if (settled) return;
      settled = true;
      clearTimeout(terminateTimer);
      if ('report' in outcome) {
        resolve(outcome.report);
        return;
      }
      stop.fail(outcome.error);
      reject(new Error('verify thread failed', { cause: outcome.error }));
    };
    thread.on('message', (message: VerifyMessage) => {
      switch (message.type) {
        case 'progress':
          onProgress(message.progress);
          return;
        case 'done':
          settle({ report: message.report });
          return;
        case 'stopped':
          settle({ error: new Error('verify thread stopped without a reason') });
          return;
        case 'failed':
          settle({ error: deserializeError(message.error) });
          return;
      }
    });
    thread.on('error', (error) => settle({ error }));
    thread.on('exit', (code) => settle({ error: new Error(`verify thread exited with code ${code}`) }));
  });
}
