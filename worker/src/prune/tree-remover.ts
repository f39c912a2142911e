import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { threadEntry } from '../copy/thread-entry.js';
import { deserializeError } from '../copy/thread-failure.js';
import { STOP_FLAG, type RemoveReply, type RemoveRequest, type RemoverData } from './remove-protocol.js';

/** A deletion cut short by `stop()`: what is left is deleted by the destination's next prune. */
export class RemovalStopped extends Error {
  override readonly name = 'RemovalStopped';
  constructor(target: string) {
    super(`deletion of ${target} stopped`);
  }
}

interface Pending {
  target: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** A thread and the deletions it was asked for, by request id. */
interface RemoveThread {
  worker: Worker;
  pending: Map<number, Pending>;
}

/**
 * Threads deleting at once: each one's system calls wait on the file system, so two keep
 * deleting while the other waits (and beat one `rm -rf`), without taking every core from the
 * copies running beside a prune.
 */
const DEFAULT_THREADS = 2;

/**
 * Deletes folder trees on threads of its own, without following links (see remove-thread.ts).
 * Deleting a hard-linked file only drops that name: the same file in another snapshot stays
 * whole. Threads start at the first requests.
 */
export function createTreeRemover(threads = Math.min(DEFAULT_THREADS, availableParallelism())) {
  const state = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const flag = new Int32Array(state);
  const running: RemoveThread[] = [];
  let nextId = 0;
  let stopped = false;

  const failAll = (thread: RemoveThread, reason: (item: Pending) => unknown) => {
    for (const [id, item] of thread.pending) {
      thread.pending.delete(id);
      item.reject(reason(item));
    }
  };

  function start(): RemoveThread {
    const data: RemoverData = { state };
    const thread: RemoveThread = {
      worker: new Worker(threadEntry('remove-thread', import.meta.url), { workerData: data }),
      pending: new Map(),
    };
    thread.worker.on('message', (reply: RemoveReply) => {
      const item = thread.pending.get(reply.id);
      if (!item) return;
      thread.pending.delete(reply.id);
      if (reply.type === 'done') item.resolve();
      else if (reply.type === 'stopped') item.reject(new RemovalStopped(item.target));
      else item.reject(deserializeError(reply.error));
    });
    thread.worker.on('error', (err) => failAll(thread, () => err));
    thread.worker.on('exit', (code) => {
      running.splice(running.indexOf(thread), 1);
      failAll(thread, (item) =>
        stopped ? new RemovalStopped(item.target) : new Error(`a remove thread exited (code ${code})`),
      );
    });
    running.push(thread);
    return thread;
  }

  /** The least busy thread, or a new one while there are fewer than `threads`. */
  function pick(): RemoveThread {
    const idle = running.find((thread) => thread.pending.size === 0);
    if (idle) return idle;
    if (running.length < threads) return start();
    return running.reduce((least, thread) => (thread.pending.size < least.pending.size ? thread : least));
  }

  function stop(): void {
    stopped = true;
    Atomics.store(flag, STOP_FLAG, 1);
  }

  return {
    /** Deletes `target` (an entry named through an open folder) and everything below it. */
    remove(target: string): Promise<void> {
      if (stopped) return Promise.reject(new RemovalStopped(target));
      const thread = pick();
      const id = (nextId += 1);
      const request: RemoveRequest = { id, target };
      const done = new Promise<void>((resolve, reject) => thread.pending.set(id, { target, resolve, reject }));
      thread.worker.postMessage(request);
      return done;
    },

    /** Stops the deletions under way and every one asked for: they reject with `RemovalStopped`. */
    stop,

    /** Ends the threads; deletions still asked for are stopped. */
    async close(): Promise<void> {
      if (running.length === 0) return;
      stop();
      await Promise.all(running.map((thread) => thread.worker.terminate()));
    },
  };
}

export type TreeRemover = ReturnType<typeof createTreeRemover>;
