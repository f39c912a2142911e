import fs from 'node:fs';
import type { CopyCounts, CopyReport } from './copy-counts.js';
import type { ManifestOutput, Subtree } from './copy-tree-sync.js';
import { errorDest, isErrnoException } from './errno.js';
import type { ManifestAssembly } from './manifest-assembly.js';
import type { TreeSize } from './measure-tree-sync.js';
import { PathTooLongError } from './path-too-long.js';
import { UnsupportedSourceError } from './unsupported-source.js';

/**
 * Work for a copy thread. `state` is shared by every task of one copy: Int32 `STOP` set to 1
 * stops them at their next entry; `ACTIVE` counts the copy's running tasks, which hand
 * folders to new ones (`delegate`) while fewer than `threads` run. A `subtree` task carries
 * open folders, which the thread that runs it closes. A `manifest` task assembles the lines the
 * copy tasks wrote (`manifest`) once they are all done, and answers the manifest's SHA-256.
 */
export type ThreadTask =
  | {
      kind: 'copy';
      source: string;
      target: string;
      previous?: string;
      manifest?: ManifestOutput;
      state: SharedArrayBuffer;
      threads: number;
    }
  | {
      kind: 'subtree';
      source: string;
      target: string;
      subtree: Subtree;
      manifest?: ManifestOutput;
      state: SharedArrayBuffer;
      threads: number;
    }
  | { kind: 'measure'; source: string; state: SharedArrayBuffer }
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
  | { type: 'progress'; counts: CopyCounts }
  | { type: 'delegate'; subtree: Subtree }
  | { type: 'done'; value: CopyReport | TreeSize | string }
  | { type: 'stopped' }
  | { type: 'failed'; error: SerializedError };

/**
 * An error as it crosses the thread boundary. Structured cloning keeps an Error's message
 * but drops `code`, `path` and the like, which callers match on (`toSnapshotFailure`).
 */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  dest?: string;
  /** Set when the error is an `UnsupportedSourceError` for this path. */
  unsupportedSource?: string;
  /** Set when the error is a `PathTooLongError` for this path. */
  pathTooLong?: string;
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof UnsupportedSourceError) {
    return { name: error.name, message: error.message, unsupportedSource: error.path };
  }
  if (error instanceof PathTooLongError) {
    return { name: error.name, message: error.message, stack: error.stack, pathTooLong: error.path };
  }
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const serialized: SerializedError = { name: error.name, message: error.message, stack: error.stack };
  if (isErrnoException(error)) {
    serialized.code = error.code;
    serialized.errno = error.errno;
    serialized.syscall = error.syscall;
    serialized.path = error.path;
    serialized.dest = errorDest(error);
  }
  return serialized;
}

export function deserializeError(serialized: SerializedError): Error {
  if (serialized.unsupportedSource !== undefined) return new UnsupportedSourceError(serialized.unsupportedSource);
  if (serialized.pathTooLong !== undefined) return new PathTooLongError(serialized.pathTooLong);
  const error: NodeJS.ErrnoException = new Error(serialized.message);
  error.name = serialized.name;
  if (serialized.stack !== undefined) error.stack = serialized.stack;
  if (serialized.code !== undefined) error.code = serialized.code;
  if (serialized.errno !== undefined) error.errno = serialized.errno;
  if (serialized.syscall !== undefined) error.syscall = serialized.syscall;
  if (serialized.path !== undefined) error.path = serialized.path;
  if (serialized.dest !== undefined) Object.assign(error, { dest: serialized.dest });
  return error;
}
