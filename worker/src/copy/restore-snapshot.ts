import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { JobFailure } from '@coffer/shared/failure';
import { removeTree } from './remove-tree.js';
import { stagingName } from './restore-target.js';
import { STOP_FLAG, type RestoreMessage, type RestoreProgress, type RestoreTask } from './restore-thread.js';
import { deserializeError } from './thread-protocol.js';

export type { RestoreProgress } from './restore-thread.js';

export interface RestoreRequest {
  /** The snapshot folder, `<BACKUP_ROOT>/<destination>/<snapshot name>`. */
  snapshotPath: string;
  /** SHA-256 of its manifest as the catalog recorded it. */
  manifestSha256: string;
  /** Where to restore: a real path, as `resolveRestoreTarget` returned it. */
  target: string;
  /** Only these entries (relative to the snapshot root; a folder with its subtree). Default: all. */
  paths?: string[];
  /** Write into an existing target, replacing entries one by one. Default: the target must be new (or an empty folder). */
  overwrite?: boolean;
  jobId: string;
  /** Tells this attempt of the job from others: `[A-Za-z0-9_-]+`. */
  attempt: string;
  /** Aborting stops the restore within a chunk, removes what a new target had so far, and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called with the running counts at most every 100 ms (and within big files); a throw stops the restore. */
  onProgress?: (progress: Readonly<RestoreProgress>) => void;
}

export interface RestoreReport {
  /** The target. */
  path: string;
  /** Files restored (links and folders not counted). */
  files: number;
  bytes: number;
  durationMs: number;
}

const ATTEMPT_TAG = /^[A-Za-z0-9_-]+$/;
// A job id goes into hidden names beside the target: no separators, nothing to climb with.
const JOB_ID = /^[A-Za-z0-9_.:-]+$/;

/**
 * Restores the snapshot at `snapshotPath` (checked against its manifest, entry by entry) into
 * `target`, on a worker thread of its own. A new target appears complete or not at all; with
 * `overwrite`, each file and link is replaced atomically, and entries the snapshot does not
 * have are left alone. Nothing is ever written through a link. Fails with a `JobFailure`:
 * `TARGET_EXISTS`, `INVALID_TARGET`, `SNAPSHOT_DAMAGED`, `SNAPSHOT_NOT_FOUND`, `RESTORE_FAILED`.
 */
export async function restoreSnapshot(request: RestoreRequest): Promise<RestoreReport> {
  const startedAt = performance.now();
  request.signal?.throwIfAborted();
  if (!ATTEMPT_TAG.test(request.attempt) || !JOB_ID.test(request.jobId)) {
    throw new JobFailure(
      'INVALID_JOB',
      `a restore needs a plain job id and attempt tag, got "${request.jobId}", "${request.attempt}"`,
      true,
    );
  }
  if (!path.isAbsolute(request.target) || path.dirname(request.target) === request.target) {
    throw new JobFailure('INVALID_TARGET', `target must be an absolute path below /, got "${request.target}"`, true);
  }
  const task: RestoreTask = {
    snapshotPath: request.snapshotPath,
    manifestSha256: request.manifestSha256,
    target: request.target,
    paths: request.paths,
    overwrite: request.overwrite === true,
    jobId: request.jobId,
    attempt: request.attempt,
    state: new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT),
  };
  const outcome = await runOnNewThread(task, request);
  if (outcome.type === 'crashed' && !task.overwrite) {
    // The thread could not clean up after itself; a later attempt would, but this one may be the last.
    await removeTree(path.join(path.dirname(task.target), stagingName(task.target, task.jobId, task.attempt)));
  }
  if (request.signal?.aborted) {
    const reason: unknown = request.signal.reason;
    throw reason;
  }
  switch (outcome.type) {
    case 'done':
      return {
        path: request.target,
        files: outcome.progress.files,
        bytes: outcome.progress.bytes,
        durationMs: performance.now() - startedAt,
      };
    case 'failed':
      if ('failure' in outcome) {
        const { code, message, permanent, problems } = outcome.failure;
        throw new JobFailure(code, message, permanent, { problems });
      }
      throw deserializeError(outcome.error);
    case 'stopped': {
      // Only a throw of `onProgress` stops the thread without an abort.
      const thrown: unknown = outcome.error ?? new Error('restore stopped without a reason');
      throw thrown;
    }
    case 'crashed':
      throw outcome.error;
  }
}

/** How a restore thread ended: its last message, or a crash; `stopped` carries why it was asked to. */
type Outcome =
  | Exclude<RestoreMessage, { type: 'progress' } | { type: 'stopped' }>
  | { type: 'stopped'; error?: unknown }
  | { type: 'crashed'; error: Error };

/**
 * Runs `task` on a thread started for it (a restore is rare and long; ~30 ms to start one is
 * nothing), relays its progress, stops it through the shared flag, and ends it.
 */
async function runOnNewThread(task: RestoreTask, { signal, onProgress }: RestoreRequest): Promise<Outcome> {
  const stopFlag = new Int32Array(task.state);
  const requestStop = () => Atomics.store(stopFlag, STOP_FLAG, 1);
  const thread = new Worker(restoreThreadEntry());
  let progressError: { error: unknown } | undefined;
  try {
    return await new Promise<Outcome>((resolve) => {
      thread.on('message', (message: RestoreMessage) => {
        if (message.type !== 'progress') {
          resolve(message.type === 'stopped' && progressError ? { type: 'stopped', ...progressError } : message);
          return;
        }
        if (progressError || signal?.aborted) return;
        try {
          onProgress?.(message.progress);
        } catch (error) {
          progressError = { error };
          requestStop();
        }
      });
      thread.on('error', (error) => resolve({ type: 'crashed', error }));
      thread.on('exit', (code) =>
        resolve({ type: 'crashed', error: new Error(`restore thread exited with code ${code}`) }),
      );
      signal?.addEventListener('abort', requestStop, { once: true });
      thread.postMessage(task);
    });
  } finally {
    signal?.removeEventListener('abort', requestStop);
    await thread.terminate();
  }
}

/** The thread's entry: compiled beside this module, or its TypeScript source loaded through tsx (as in tests). */
function restoreThreadEntry(): URL {
  const compiled = !new URL(import.meta.url).pathname.endsWith('.ts');
  const entry = new URL(compiled ? './restore-thread.js' : './restore-thread.ts', import.meta.url);
  if (compiled) return entry;
  // A thread does not inherit the loader the sources run with: it registers tsx first.
  const loader = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return new URL(
    `data:text/javascript,${encodeURIComponent(`import { register } from ${loader}; register(); await import(${JSON.stringify(entry.href)});`)}`,
  );
}
