import { Worker } from 'node:worker_threads';
import { deserializeError } from '../copy/thread-failure.js';
import { STOP_FLAG, type RemoveReply, type RemoveRequest, type RemoverData } from './remove-protocol.js';

/** A deletion cut short by `stop()`: what is left is deleted by the destination's next prune. */
export class RemovalStopped extends Error {
  override readonly name = 'RemovalStopped';
  constructor(target: string) {
    super(`deletion of ${target} stopped`);
  }
}

/**
 * Where the thread starts: the compiled module beside this one, or its TypeScript source
 * through tsx when running from the sources (as the tests do), since a thread does not
 * inherit the loader this module was loaded with.
 */
function threadEntry(): URL {
  const extension = new URL(import.meta.url).pathname.endsWith('.ts') ? '.ts' : '.js';
  const entry = new URL(`./remove-thread${extension}`, import.meta.url);
  if (extension === '.js') return entry;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(boot)}`);
}

interface Pending {
  target: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Deletes folder trees on a thread of its own, one after another in the order asked, without
 * following links (see remove-thread.ts). Deleting a hard-linked file only drops that name:
 * the same file in another snapshot stays whole. The thread starts at the first request.
 */
export function createTreeRemover() {
  const state = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  const flag = new Int32Array(state);
  const pending = new Map<number, Pending>();
  let thread: Worker | undefined;
  let nextId = 0;
  let stopped = false;

  const failAll = (reason: (item: Pending) => unknown) => {
    for (const [id, item] of pending) {
      pending.delete(id);
      item.reject(reason(item));
    }
  };

  function start(): Worker {
    const data: RemoverData = { state };
    const started = new Worker(threadEntry(), { workerData: data });
    started.on('message', (reply: RemoveReply) => {
      const item = pending.get(reply.id);
      if (!item) return;
      pending.delete(reply.id);
      if (reply.type === 'done') item.resolve();
      else if (reply.type === 'stopped') item.reject(new RemovalStopped(item.target));
      else item.reject(deserializeError(reply.error));
    });
    started.on('error', (err) => failAll(() => err));
    started.on('exit', (code) => {
      thread = undefined;
      failAll((item) =>
        stopped ? new RemovalStopped(item.target) : new Error(`the remove thread exited (code ${code})`),
      );
    });
    return started;
  }

  function stop(): void {
    stopped = true;
    Atomics.store(flag, STOP_FLAG, 1);
  }

  return {
    /** Deletes `target` (an entry named through an open folder) and everything below it. */
    remove(target: string): Promise<void> {
      if (stopped) return Promise.reject(new RemovalStopped(target));
      thread ??= start();
      const id = (nextId += 1);
      const request: RemoveRequest = { id, target };
      const done = new Promise<void>((resolve, reject) => pending.set(id, { target, resolve, reject }));
      thread.postMessage(request);
      return done;
    },

    /** Stops the deletion under way and every one asked for: they reject with `RemovalStopped`. */
    stop,

    /** Ends the thread; deletions still asked for are stopped. */
    async close(): Promise<void> {
      if (thread === undefined) return;
      stop();
      await thread.terminate();
    },
  };
}

export type TreeRemover = ReturnType<typeof createTreeRemover>;
