import fs from 'node:fs';
import type { CopyCounts, CopyReport } from './copy-counts.js';
import type { ManifestOutput, Subtree } from './copy-tree-sync.js';
import type { ManifestAssembly } from './manifest-assembly.js';
import type { TreeSize } from './measure-tree-sync.js';
import type { PreviousIndex } from './previous-index.js';
import type { Unfinished } from './thread-failure.js';

/**
 * Work for a copy thread. `state` is shared by every task of one copy: Int32 `STOP` set to 1
 * stops them at their next entry; `ACTIVE` counts the copy's running tasks, which hand
 * folders to new ones (`delegate`) while fewer than `threads` run. A `subtree` task carries
 * open folders, which the thread that runs it closes. `exclude` is the copy's patterns, which
 * every task of it (and its measurement) applies to the entries it meets. A `manifest` task assembles the lines the
 * copy tasks wrote (`manifest`) once they are all done, and answers the manifest's SHA-256. An
 * `index` task reads the previous copy's manifest into a `PreviousIndex` (shared memory, which
 * the copy's tasks and its measurement then read), or answers undefined when there is none.
 */
export type ThreadTask =
  | {
      kind: 'copy';
      source: string;
      target: string;
      previous?: string;
      manifest?: ManifestOutput;
      exclude?: readonly string[];
      index?: PreviousIndex;
      state: SharedArrayBuffer;
      threads: number;
    }
  | {
      kind: 'subtree';
      source: string;
      target: string;
      subtree: Subtree;
      manifest?: ManifestOutput;
      exclude?: readonly string[];
      index?: PreviousIndex;
      state: SharedArrayBuffer;
      threads: number;
    }
  | { kind: 'measure'; source: string; exclude?: readonly string[]; index?: PreviousIndex; state: SharedArrayBuffer }
  | { kind: 'index'; manifest: string; startedMs: number; state: SharedArrayBuffer }
  | { kind: 'manifest'; assembly: ManifestAssembly; state: SharedArrayBuffer };

/** Closes the open folders of a task that no thread will run. */
export function discardTask(task: ThreadTask): void {
  if (task.kind !== 'subtree') return;
  fs.closeSync(task.subtree.fd);
  if (task.subtree.previousFd !== undefined) fs.closeSync(task.subtree.previousFd);
}

export const STOP = 0;
export const ACTIVE = 1;

export function sharedState(): SharedArrayBuffer {
  return new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
}

/** What a thread posts back while it runs a task; exactly one `done`, `stopped` or `failed` ends it. */
export type ThreadMessage =
  /** `current`: the entry in flight (or just done), relative to the copy's source, as display text. */
  | { type: 'progress'; counts: CopyCounts; current: string | null }
  | { type: 'delegate'; subtree: Subtree }
  | { type: 'done'; value: CopyReport | TreeSize | string | PreviousIndex | undefined }
  | Unfinished;
