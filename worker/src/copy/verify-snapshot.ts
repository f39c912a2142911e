// Checks a snapshot against its manifest on a worker thread of its own (see verify-thread.ts):
// reading and hashing every file with synchronous calls there keeps this thread's event loop,
// which renews the job's queue lock, free.
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { JobFailure, type FailureCode, type FailureProblem } from '@coffer/shared/failure';
import type { JobProgress } from '@coffer/shared/job-contract';
import { deserializeError, type SerializedError } from './thread-protocol.js';

export interface VerifyRequest {
  /** The snapshot folder; its manifest lies beside it (see `manifestPathOf`). */
  snapshotPath: string;
  /** SHA-256 of the manifest as the catalog recorded it. */
  manifestSha256: string;
  /** Aborting stops the check within a second, even inside a huge file; the call then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called with the running counts at least every 250 ms; the totals come from the manifest. A throw stops the check and is the rejection. */
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

/** What the thread is given (as its `workerData`). */
export interface VerifyTask {
  snapshotPath: string;
  manifestSha256: string;
  /** Int32 `STOP_FLAG` set to 1 asks the thread to stop at its next entry or chunk. */
  state: SharedArrayBuffer;
}

export const STOP_FLAG = 0;

/** A `JobFailure` as it crosses the thread boundary (structured cloning keeps only an Error's message). */
export interface SerializedJobFailure {
  code: FailureCode;
  message: string;
  permanent: boolean;
  problems?: FailureProblem[];
}

/** What the thread posts; exactly one `done`, `stopped` or `failed` ends it. */
export type VerifyMessage =
  | { type: 'progress'; progress: JobProgress }
  | { type: 'done'; report: Omit<VerifyReport, 'durationMs'> }
  | { type: 'stopped' }
  | { type: 'failed'; error: SerializedError }
  | { type: 'failed'; jobFailure: SerializedJobFailure };

// A thread that has not seen the stop flag by then (still parsing a huge manifest, say) is terminated.
const STOP_GRACE_MS = 500;

/**
 * Verifies the snapshot `snapshotPath` against its manifest: every entry is opened relative to
 * its open parent and never through a link, and compared with the manifest line of the same
 * path (type, size, mode, mtime; a file's SHA-256 read now; a link's target). Entries that do
 * not match are reported as problems (`missing`, `changed`, `extra`, `unreadable`), not thrown.
 * A manifest that is missing or does not match `manifestSha256` throws `SNAPSHOT_DAMAGED`, a
 * snapshot folder that is not there `SNAPSHOT_NOT_FOUND`.
 */
export async function verifySnapshot(request: VerifyRequest): Promise<VerifyReport> {
  const { snapshotPath, manifestSha256, signal, onProgress } = request;
  signal?.throwIfAborted();
  const started = performance.now();
  const task: VerifyTask = {
    snapshotPath,
    manifestSha256,
    state: new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT),
  };
  const outcome = await runVerifyThread(task, signal, onProgress);
  if (!outcome.ok) throw outcome.error;
  return { ...outcome.report, durationMs: Math.round(performance.now() - started) };
}

/** How the thread ended; errors travel as values, since an abort's reason may be anything. */
type Outcome = { ok: true; report: Omit<VerifyReport, 'durationMs'> } | { ok: false; error: unknown };

function runVerifyThread(
  task: VerifyTask,
  signal: AbortSignal | undefined,
  onProgress: VerifyRequest['onProgress'],
): Promise<Outcome> {
  const stopFlag = new Int32Array(task.state);
  // Node closes the fds a thread opened when it ends, so a terminated thread leaves none open.
  const thread = new Worker(threadEntry(), { workerData: task });
  let terminateTimer: NodeJS.Timeout | undefined;
  // The first error met (a progress callback that threw), reported once the thread has stopped.
  let failure: { error: unknown } | undefined;
  const requestStop = () => {
    Atomics.store(stopFlag, STOP_FLAG, 1);
    terminateTimer ??= setTimeout(() => void thread.terminate(), STOP_GRACE_MS);
  };
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(terminateTimer);
      signal?.removeEventListener('abort', requestStop);
      // An abort wins over whatever the thread was doing when it saw it.
      if (signal?.aborted) resolve({ ok: false, error: signal.reason });
      else if (failure) resolve({ ok: false, error: failure.error });
      else resolve(outcome);
    };
    thread.on('message', (message: VerifyMessage) => {
      switch (message.type) {
        case 'progress':
          if (failure || signal?.aborted) return;
          try {
            onProgress?.(message.progress);
          } catch (error) {
            failure = { error };
            requestStop();
          }
          return;
        case 'done':
          settle({ ok: true, report: message.report });
          return;
        case 'stopped':
          settle({ ok: false, error: new Error('verify thread stopped without a reason') });
          return;
        case 'failed':
          settle({
            ok: false,
            error:
              'jobFailure' in message ? deserializeJobFailure(message.jobFailure) : deserializeError(message.error),
          });
          return;
      }
    });
    thread.on('error', (error) => settle({ ok: false, error }));
    thread.on('exit', (code) => settle({ ok: false, error: new Error(`verify thread exited with code ${code}`) }));
    signal?.addEventListener('abort', requestStop, { once: true });
  });
}

export function serializeJobFailure(failure: JobFailure): SerializedJobFailure {
  const { code, message, permanent, problems } = failure;
  return problems === undefined ? { code, message, permanent } : { code, message, permanent, problems };
}

function deserializeJobFailure({ code, message, permanent, problems }: SerializedJobFailure): JobFailure {
  return new JobFailure(code, message, permanent, { problems });
}

/** Where the thread starts: the compiled entry beside this module, or its TypeScript source through tsx. */
function threadEntry(): URL {
  const extension = new URL(import.meta.url).pathname.endsWith('.ts') ? '.ts' : '.js';
  const entry = new URL(`./verify-thread${extension}`, import.meta.url);
  if (extension === '.js') return entry;
  // From the TypeScript sources (tests): a thread does not inherit the loader of its parent.
  const register = `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))}; register();`;
  return new URL(
    `data:text/javascript,${encodeURIComponent(`${register} await import(${JSON.stringify(entry.href)});`)}`,
  );
}
