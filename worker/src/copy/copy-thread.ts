// The entry of a copy thread (see copy-threads.ts): runs one task at a time with
// synchronous file system calls, so the main thread's event loop stays free.
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import type { CopyCounts } from './copy-counts.js';
import { CopyStopped, copySubtreeSync, copyTreeSync, type Delegation } from './copy-tree-sync.js';
import { assembleManifestSync } from './manifest-assembly.js';
import { measureTreeSync } from './measure-tree-sync.js';
import { unfinished } from './thread-failure.js';
import { ACTIVE, STOP, type ThreadMessage, type ThreadTask } from './thread-protocol.js';

// Progress is posted at most this often: a message per file would cost more than the copy.
const PROGRESS_INTERVAL_MS = 50;

const port = parentPort;
if (port === null) throw new Error('copy-thread.ts runs only as a worker thread');

port.on('message', (task: ThreadTask) => {
  port.postMessage(run(task));
});

function run(task: ThreadTask): ThreadMessage {
  const state = new Int32Array(task.state);
  const shouldStop = () => Atomics.load(state, STOP) !== 0;
  try {
    if (task.kind === 'measure') {
      return { type: 'done', value: measureTreeSync(task.source, shouldStop, task.exclude) };
    }
    if (task.kind === 'manifest') {
      return { type: 'done', value: assembleManifestSync(task.assembly, shouldStop) };
    }
    let lastReport = performance.now();
    const onEntry = (counts: Readonly<CopyCounts>, current: () => string | null) => {
      const now = performance.now();
      if (now - lastReport < PROGRESS_INTERVAL_MS) return;
      lastReport = now;
      // The entry's name is decoded only here, with the throttled message, never per file.
      port?.postMessage({ type: 'progress', counts: { ...counts }, current: current() } satisfies ThreadMessage);
    };
    const delegation: Delegation = {
      reserve: () => {
        for (let active = Atomics.load(state, ACTIVE); active < task.threads; active = Atomics.load(state, ACTIVE)) {
          if (Atomics.compareExchange(state, ACTIVE, active, active + 1) === active) return true;
        }
        return false;
      },
      hand: (subtree) => port?.postMessage({ type: 'delegate', subtree } satisfies ThreadMessage),
    };
    const options = { shouldStop, onEntry, delegation, manifest: task.manifest, exclude: task.exclude };
    const value =
      task.kind === 'copy'
        ? copyTreeSync(task.source, task.target, { ...options, previous: task.previous })
        : copySubtreeSync(task.source, task.target, task.subtree, options);
    return { type: 'done', value };
  } catch (error) {
    return unfinished(error, error instanceof CopyStopped);
  }
}
