import { performance } from 'node:perf_hooks';
import type { CopyCounts } from './copy-counts.js';
import { CopyStopped, copySubtreeSync, copyTreeSync, type Delegation } from './copy-tree-sync.js';
import { assembleManifestSync } from './manifest-assembly.js';
import { measureTreeSync } from './measure-tree-sync.js';
import { buildPreviousIndex } from './previous-index.js';
import { unfinished } from './thread-failure.js';
import { ACTIVE, STOP, type ThreadMessage, type ThreadTask } from './thread-protocol.js';

/** How a task runs: on a copy thread (copy-thread.ts) or, for a small job, on the caller's (see `runInline`). */
export interface TaskHost {
  /** Posts a `progress` or `delegate` message to whoever awaits the task. */
  post(message: ThreadMessage): void;
  /** Progress is posted at most this often. */
  progressIntervalMs: number;
  /** Another reason to stop than the task's `STOP` flag, checked with it. Default: none. */
  shouldStop?: () => boolean;
}

/** Runs one task with synchronous calls; answers its last message (`done`, `stopped` or `failed`). */
export function runTask(task: ThreadTask, host: TaskHost): ThreadMessage {
  const state = new Int32Array(task.state);
  const other = host.shouldStop;
  const shouldStop = other ? () => Atomics.load(state, STOP) !== 0 || other() : () => Atomics.load(state, STOP) !== 0;
  try {
    if (task.kind === 'measure') {
      return { type: 'done', value: measureTreeSync(task.source, shouldStop, task.exclude, task.index) };
    }
    if (task.kind === 'manifest') {
      return { type: 'done', value: assembleManifestSync(task.assembly, shouldStop) };
    }
    if (task.kind === 'index') {
      const checkStop = () => {
        if (shouldStop()) throw new CopyStopped();
      };
      return { type: 'done', value: buildPreviousIndex(task.manifest, task.startedMs, checkStop) };
    }
    const interval = host.progressIntervalMs;
    let lastReport = performance.now();
    const onEntry = (counts: Readonly<CopyCounts>, current: () => string | null) => {
      if (interval > 0) {
        const now = performance.now();
        if (now - lastReport < interval) return;
        lastReport = now;
      }
      // The entry's name is decoded only here, with the throttled message, never per file.
      host.post({ type: 'progress', counts: { ...counts }, current: current() });
    };
    const delegation: Delegation = {
      reserve: () => {
        for (let active = Atomics.load(state, ACTIVE); active < task.threads; active = Atomics.load(state, ACTIVE)) {
          if (Atomics.compareExchange(state, ACTIVE, active, active + 1) === active) return true;
        }
        return false;
      },
      hand: (subtree) => host.post({ type: 'delegate', subtree }),
    };
    const options = {
      shouldStop,
      onEntry,
      delegation,
      manifest: task.manifest,
      exclude: task.exclude,
      index: task.index,
    };
    const value =
      task.kind === 'copy'
        ? copyTreeSync(task.source, task.target, { ...options, previous: task.previous })
        : copySubtreeSync(task.source, task.target, task.subtree, options);
    return { type: 'done', value };
  } catch (error) {
    return unfinished(error, error instanceof CopyStopped);
  }
}
