import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { CopyCounts } from './copy-counts.js';
import type { Subtree } from './copy-tree-sync.js';
import { runTask } from './task-runner.js';
import { threadEntry } from './thread-entry.js';
import { deserializeError } from './thread-failure.js';
import { STOP, discardTask, type ThreadMessage, type ThreadTask } from './thread-protocol.js';

export interface RunOptions {
  /** Aborting stops the task (and every task sharing its state) at its next entry; the call then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Called with the running counts of a copy and the entry in flight (relative to the source,
   * display text), at most every 50 ms. A throw stops the task and is the rejection.
   */
  onProgress?: (counts: Readonly<CopyCounts>, current: string | null) => void;
  /** Called when the task hands a folder over; the caller runs it as a task of its own. */
  onDelegate?: (subtree: Subtree) => void;
}

// Threads at once over all jobs of the process; more tasks wait for a free one. A job uses
// one per core for its copy and one for its measurement. The work is CPU and file system
// bound, so threads beyond twice the cores only add memory (~25 MB each) and contention.
const MAX_THREADS = Math.max(2, 2 * availableParallelism());
// An idle thread is kept this long for the next job (starting one costs ~30 ms), then ended.
const IDLE_MS = 30_000;

/**
 * Runs `task` on a pooled worker thread. The pool's threads do not keep the process alive
 * while idle.
 */
export async function runOnThread<T>(task: ThreadTask, options: RunOptions = {}): Promise<T> {
  let thread: PooledThread;
  try {
    options.signal?.throwIfAborted();
    thread = await pool.acquire(options.signal);
  } catch (error) {
    // Aborted before any thread took the task: the open folders it carries are closed here.
    discardTask(task);
    throw error;
  }
  let outcome: Outcome;
  try {
    outcome = await thread.run(task, options);
  } finally {
    pool.release(thread);
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value as T;
}

/**
 * Runs `task` on the caller's own thread with synchronous calls, the event loop waiting: for a
 * small job, whose whole copy costs less than handing it to a thread. Ends as `runOnThread` would
 * (same result, same errors). `signal` is checked before each entry, as a thread checks its stop
 * flag; `onProgress` is called after every entry (nothing to cross, so nothing to throttle).
 */
export async function runInline<T>(task: ThreadTask, options: RunOptions = {}): Promise<T> {
  const { signal, onProgress, onDelegate } = options;
  try {
    signal?.throwIfAborted();
  } catch (error) {
    discardTask(task);
    throw error;
  }
  const state = new Int32Array(task.state);
  let failure: { error: unknown } | undefined;
  const last = runTask(task, {
    progressIntervalMs: 0,
    shouldStop: () => signal?.aborted === true,
    post: (message) => {
      if (message.type === 'delegate') onDelegate?.(message.subtree);
      else if (message.type === 'progress' && !failure && !signal?.aborted) {
        try {
          onProgress?.(message.counts, message.current);
        } catch (error) {
          failure = { error };
          Atomics.store(state, STOP, 1);
        }
      }
    },
  });
  // An abort wins over whatever the task was doing when it saw it.
  signal?.throwIfAborted();
  if (failure) throw failure.error;
  switch (last.type) {
    case 'done':
      return last.value as T;
    case 'failed':
      throw deserializeError(last.error);
    default:
      throw new Error('copy task stopped without a reason');
  }
}

/** How a task ended; errors travel as values, since an abort's reason may be anything. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Running {
  onMessage(message: ThreadMessage): void;
  onCrash(error: Error): void;
}

class PooledThread {
  readonly #worker: Worker;
  #running: Running | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #alive = true;

  constructor(entry: URL, onExit: (thread: PooledThread) => void) {
    // A folder opened on one thread may be handed to another, which closes it. Node's tracking
    // of a thread's fds would close it again when the first thread exits (the idle timeout, a
    // crash): by then its number may belong to another file or socket of the process. Each
    // task closes what it opens (or `discardTask` does), so nothing is left for that tracking.
    this.#worker = new Worker(entry, { trackUnmanagedFds: false });
    this.#worker.on('message', (message: ThreadMessage) => this.#running?.onMessage(message));
    this.#worker.on('error', (error) => {
      this.#alive = false;
      this.#running?.onCrash(error);
    });
    this.#worker.on('exit', (code) => {
      this.#alive = false;
      this.#running?.onCrash(new Error(`copy thread exited with code ${code}`));
      onExit(this);
    });
  }

  get alive(): boolean {
    return this.#alive;
  }

  run(task: ThreadTask, { signal, onProgress, onDelegate }: RunOptions): Promise<Outcome> {
    const state = new Int32Array(task.state);
    const requestStop = () => Atomics.store(state, STOP, 1);
    return new Promise((resolve) => {
      // The first error met (a progress callback that threw), reported once the thread has stopped.
      let failure: { error: unknown } | undefined;
      const settle = (outcome: Outcome) => {
        signal?.removeEventListener('abort', requestStop);
        this.#running = undefined;
        // An abort wins over whatever the thread was doing when it saw it.
        if (signal?.aborted) resolve({ ok: false, error: signal.reason });
        else if (failure) resolve({ ok: false, error: failure.error });
        else resolve(outcome);
      };
      this.#running = {
        onMessage: (message) => {
          switch (message.type) {
            case 'progress':
              if (failure || signal?.aborted) return;
              try {
                onProgress?.(message.counts, message.current);
              } catch (error) {
                failure = { error };
                requestStop();
              }
              return;
            case 'delegate':
              onDelegate?.(message.subtree);
              return;
            case 'done':
              settle({ ok: true, value: message.value });
              return;
            case 'stopped':
              settle({ ok: false, error: new Error('copy thread stopped without a reason') });
              return;
            case 'failed':
              settle({ ok: false, error: deserializeError(message.error) });
              return;
          }
        },
        onCrash: (error) => settle({ ok: false, error }),
      };
      signal?.addEventListener('abort', requestStop, { once: true });
      if (signal?.aborted) requestStop();
      this.#worker.postMessage(task);
    });
  }

  /** Busy threads keep the process alive (a copy is awaited); idle ones do not, and end after a while. */
  busy(): void {
    clearTimeout(this.#idleTimer);
    this.#worker.ref();
  }

  idle(): void {
    this.#worker.unref();
    this.#idleTimer = setTimeout(() => {
      this.#alive = false;
      void this.#worker.terminate();
    }, IDLE_MS);
    this.#idleTimer.unref();
  }
}

class ThreadPool {
  readonly #idle: PooledThread[] = [];
  readonly #waiting: Array<(thread: PooledThread) => void> = [];
  #size = 0;
  #entry: URL | undefined;

  async acquire(signal: AbortSignal | undefined): Promise<PooledThread> {
    for (let thread = this.#idle.pop(); thread; thread = this.#idle.pop()) {
      if (!thread.alive) continue;
      thread.busy();
      return thread;
    }
    if (this.#size < MAX_THREADS) return this.#spawn();
    const thread = await new Promise<PooledThread | undefined>((resolve) => {
      const take = (free: PooledThread) => {
        signal?.removeEventListener('abort', giveUp);
        resolve(free);
      };
      const giveUp = () => {
        this.#waiting.splice(this.#waiting.indexOf(take), 1);
        resolve(undefined);
      };
      signal?.addEventListener('abort', giveUp, { once: true });
      this.#waiting.push(take);
    });
    if (thread === undefined) {
      // Only an abort ends the wait without a thread.
      signal?.throwIfAborted();
      throw new Error('gave up waiting for a copy thread');
    }
    return thread;
  }

  release(thread: PooledThread): void {
    if (!thread.alive) return;
    const next = this.#waiting.shift();
    if (next) next(thread);
    else {
      thread.idle();
      this.#idle.push(thread);
    }
  }

  #forget(thread: PooledThread): void {
    this.#size -= 1;
    const index = this.#idle.indexOf(thread);
    if (index >= 0) this.#idle.splice(index, 1);
    // A waiter can now start a thread of its own.
    this.#waiting.shift()?.(this.#spawn());
  }

  #spawn(): PooledThread {
    this.#size += 1;
    this.#entry ??= threadEntry('copy-thread');
    const thread = new PooledThread(this.#entry, (exited) => this.#forget(exited));
    thread.busy();
    return thread;
  }
}

const pool = new ThreadPool();
