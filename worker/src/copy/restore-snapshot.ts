import { promises as fsp } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { JobFailure } from '@coffer/shared/failure';
import { manifestPathOf } from './manifest-file.js';
import { removeTree } from './remove-tree.js';
import { AttemptSuperseded } from './snapshot.js';
import { stagingName } from './restore-target.js';
import {
  RESTORE_THREAD_DATA,
  STOP_FLAG,
  type PartProgress,
  type RestoreCommand,
  type RestoreMessage,
  type RestoreProgress,
  type RestoreTask,
  type StepResult,
} from './restore-thread.js';
import { threadEntry } from './thread-entry.js';
import { deserializeError } from './thread-failure.js';

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
  /**
   * Asked just before a complete restore is put in place: false means another attempt owns the
   * job now, and this one removes its staging folder and rejects with `AttemptSuperseded`.
   * Default: always true.
   */
  stillOwned?: () => Promise<boolean>;
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
  const progress = await new RestoreRun(task, request).run();
  return {
    path: request.target,
    files: progress.files,
    bytes: progress.bytes,
    durationMs: Math.round(performance.now() - startedAt),
  };
}

// Threads for one restore: the main cost per file is system calls, which scale with cores.
const MAX_THREADS = Math.max(1, Math.min(4, availableParallelism()));
// Below this many files (or bytes), a second thread costs more to start than it saves.
const PARALLEL_MIN_FILES = 2000;
const PARALLEL_MIN_BYTES = 256 * 1024 * 1024;
// A manifest line takes about 150 bytes: this many stand for about PARALLEL_MIN_FILES entries.
const PARALLEL_MIN_MANIFEST_BYTES = 300 * 1024;

/** The size of a snapshot's manifest file; 0 when it cannot be seen (loading it will say why). */
async function manifestBytes(snapshotPath: string): Promise<number> {
  return fsp.stat(manifestPathOf(snapshotPath)).then(
    (stats) => stats.size,
    () => 0,
  );
}

/** How a step ended on one thread: its last message, or the thread's crash. */
type Outcome = Exclude<RestoreMessage, { type: 'progress' }> | { type: 'crashed'; error: Error };

/**
 * One restore, step by step over its threads (see `RestoreCommand`): a first thread loads the
 * task and prepares the target while the others (for a large restore) load it, all fill their
 * parts, the first finishes. After a failure or a stop, the first discards a new target's
 * staging folder before the restore rejects.
 */
class RestoreRun {
  readonly #task: RestoreTask;
  readonly #signal: AbortSignal | undefined;
  readonly #onProgress: ((progress: Readonly<RestoreProgress>) => void) | undefined;
  readonly #stillOwned: () => Promise<boolean>;
  readonly #threads: RestoreThread[] = [];
  readonly #counts: PartProgress[] = [];
  readonly #stopFlag: Int32Array;
  #totals = { filesTotal: 0, bytesTotal: 0 };
  /** The entry the latest progress message named. */
  #current: string | null = null;
  /** The first reason the restore ends early: a failure, a throw of `onProgress`. */
  #failure: { error: unknown } | undefined;

  constructor(task: RestoreTask, request: RestoreRequest) {
    this.#task = task;
    this.#signal = request.signal;
    this.#onProgress = request.onProgress;
    this.#stillOwned = request.stillOwned ?? (async () => true);
    this.#stopFlag = new Int32Array(task.state);
  }

  async run(): Promise<PartProgress> {
    const stop = () => Atomics.store(this.#stopFlag, STOP_FLAG, 1);
    this.#signal?.addEventListener('abort', stop, { once: true });
    try {
      return await this.#steps();
    } catch (error) {
      this.#failure ??= { error };
      // The restore's own failure matters more than one met cleaning up after it.
      await this.#discard().catch(() => undefined);
      if (this.#signal?.aborted) {
        const reason: unknown = this.#signal.reason;
        throw reason;
      }
      throw this.#failure.error;
    } finally {
      this.#signal?.removeEventListener('abort', stop);
      await Promise.all(this.#threads.map((thread) => thread.end()));
    }
  }

  async #steps(): Promise<PartProgress> {
    // Each thread loads the manifest itself, which is a good part of a small-file restore: for
    // a manifest that promises a large restore they all start and load it at once.
    const likely = (await manifestBytes(this.#task.snapshotPath)) >= PARALLEL_MIN_MANIFEST_BYTES ? MAX_THREADS : 1;
    const first = this.#startThread();
    const early = Array.from({ length: likely - 1 }, () => this.#startThread());
    const load: RestoreCommand = { kind: 'load', task: this.#task };
    const [loaded] = await Promise.all([first, ...early].map((thread) => this.#step(thread, load)));
    this.#totals = loaded?.totals ?? this.#totals;
    this.#report();
    const { filesTotal, bytesTotal } = this.#totals;
    const parallel = filesTotal >= PARALLEL_MIN_FILES || bytesTotal >= PARALLEL_MIN_BYTES ? MAX_THREADS : 1;
    const others = Array.from({ length: Math.max(0, parallel - this.#threads.length) }, () => this.#startThread());
    await Promise.all([
      this.#step(first, { kind: 'prepare' }),
      ...others.map((thread) => this.#step(thread, { kind: 'load', task: this.#task })),
    ]);
    const filled = await Promise.all(
      this.#threads.map((thread, part) => this.#step(thread, { kind: 'fill', part, parts: this.#threads.length })),
    );
    const created = [...new Set(filled.flatMap((result) => result.created ?? []))];
    // The target gets its name only while this attempt still owns the job: an attempt paused
    // past its lock must not put a restore in place that the job's new owner is making too.
    if (!(await this.#stillOwned())) throw new AttemptSuperseded(this.#task.jobId);
    await this.#step(first, { kind: 'finish', created });
    return filled.reduce<PartProgress>(
      (sum, result) => ({
        files: sum.files + (result.progress?.files ?? 0),
        bytes: sum.bytes + (result.progress?.bytes ?? 0),
      }),
      { files: 0, bytes: 0 },
    );
  }

  /** Runs one step on `thread`; a failure stops every other thread at once, and is the restore's. */
  async #step(thread: RestoreThread, command: RestoreCommand): Promise<StepResult> {
    const outcome = await thread.run(command);
    if (outcome.type === 'done') return outcome.result;
    const error = errorOf(outcome);
    this.#failure ??= { error };
    Atomics.store(this.#stopFlag, STOP_FLAG, 1);
    throw error;
  }

  /** Leaves no staging folder of a new target behind, once every thread has stopped. */
  async #discard(): Promise<void> {
    if (this.#task.overwrite) return;
    await Promise.all(this.#threads.map((thread) => thread.idle()));
    const first = this.#threads[0];
    const outcome = first?.alive ? await first.run({ kind: 'discard' }) : undefined;
    if (outcome?.type !== 'done') {
      // No thread to do it (one crashed): by path, which names only this attempt's folder.
      await removeTree(
        path.join(
          path.dirname(this.#task.target),
          stagingName(this.#task.target, this.#task.jobId, this.#task.attempt),
        ),
      );
    }
  }

  #startThread(): RestoreThread {
    const part = this.#threads.length;
    this.#counts.push({ files: 0, bytes: 0 });
    const thread = new RestoreThread((progress, current) => {
      this.#counts[part] = progress;
      this.#current = current;
      this.#report();
    });
    this.#threads.push(thread);
    return thread;
  }

  #report(): void {
    if (this.#failure || this.#signal?.aborted || !this.#onProgress) return;
    const files = this.#counts.reduce((sum, counts) => sum + counts.files, 0);
    const bytes = this.#counts.reduce((sum, counts) => sum + counts.bytes, 0);
    try {
      this.#onProgress({ files, bytes, ...this.#totals, current: this.#current });
    } catch (error) {
      this.#failure = { error };
      Atomics.store(this.#stopFlag, STOP_FLAG, 1);
    }
  }
}

/** The error a step that did not finish stands for. */
function errorOf(outcome: Exclude<Outcome, { type: 'done' }>): unknown {
  switch (outcome.type) {
    case 'failed':
      return deserializeError(outcome.error);
    case 'stopped':
      return new Error('restore stopped');
    case 'crashed':
      return outcome.error;
  }
}

/** A worker thread started for one restore, running one step at a time. */
class RestoreThread {
  readonly #worker = new Worker(threadEntry('restore-thread'), { workerData: RESTORE_THREAD_DATA });
  #running: ((outcome: Outcome) => void) | undefined;
  #settled: Promise<unknown> = Promise.resolve();
  #alive = true;

  constructor(onProgress: (progress: PartProgress, current: string | null) => void) {
    this.#worker.on('message', (message: RestoreMessage) => {
      if (message.type === 'progress') onProgress(message.progress, message.current);
      else this.#end(message);
    });
    this.#worker.on('error', (error) => {
      this.#alive = false;
      this.#end({ type: 'crashed', error });
    });
    this.#worker.on('exit', (code) => {
      this.#alive = false;
      this.#end({ type: 'crashed', error: new Error(`restore thread exited with code ${code}`) });
    });
  }

  get alive(): boolean {
    return this.#alive;
  }

  run(command: RestoreCommand): Promise<Outcome> {
    if (!this.#alive) return Promise.resolve({ type: 'crashed', error: new Error('restore thread is gone') });
    const outcome = new Promise<Outcome>((resolve) => {
      this.#running = resolve;
    });
    this.#settled = outcome;
    this.#worker.postMessage(command);
    return outcome;
  }

  /** Resolves once the step running (if any) has ended. */
  async idle(): Promise<void> {
    await this.#settled;
  }

  async end(): Promise<void> {
    this.#alive = false;
    await this.#worker.terminate();
  }

  #end(outcome: Outcome): void {
    const running = this.#running;
    this.#running = undefined;
    running?.(outcome);
  }
}
