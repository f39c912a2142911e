import type { CopyCounts, CopyReport } from './copy-counts.js';
import { runOnThread } from './copy-threads.js';

export type { CopyCounts, CopyReport, CopyWarning, CopyWarnings } from './copy-counts.js';
export { UnsupportedSourceError } from './unsupported-source.js';

export interface CopyOptions {
  /**
   * A complete earlier copy of the same source (the previous snapshot). Every regular file
   * unchanged since (same size, mode and mtime) is hard-linked from it instead of copied.
   * Default: none, everything is copied.
   */
  previous?: string;
  /** Aborting stops the copy at its next entry and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Called with the running counts as the copy advances (at most every 50 ms) and once more
   * with the final counts before the copy resolves. A throw stops the copy and is its rejection.
   */
  onProgress?: (counts: Readonly<CopyCounts>) => void;
  /**
   * @deprecated No effect: a copy runs on one worker thread with synchronous calls, which
   * costs less per file than any number of concurrent async copies did. Kept so callers compile.
   */
  concurrency?: number;
}

/** Kept for callers of the former async engine; it no longer has an effect (see `CopyOptions.concurrency`). */
export const DEFAULT_COPY_CONCURRENCY = 16;

/**
 * Copies `source` (a real path: a directory or a regular file) into `target`, which
 * must not exist yet. A directory's contents land directly in `target`; a file lands
 * in `target` under its base name. Files keep their mode and times, directories
 * their mode and times, links their target text (never followed) and times; FIFOs,
 * sockets and devices are skipped and counted, never opened. An entry below the
 * source that vanishes during the copy, or a file that cannot be opened for reading,
 * is left out and listed in `warnings`; the source itself missing is an error.
 *
 * The walk and the copies run on a pooled worker thread with synchronous calls (see
 * `copyTreeSync`), so the event loop stays free for the queue's lock renewals; memory
 * does not grow with the number of files.
 *
 * Rejects with the first error met, once the thread has stopped, and leaves the
 * partial target in place: removing it is the caller's decision. An abort takes
 * effect before the next entry, so within the time one file takes to copy.
 */
export async function copyTree(source: string, target: string, options: CopyOptions = {}): Promise<CopyReport> {
  const { previous, signal, onProgress } = options;
  const report = await runOnThread<CopyReport>({ kind: 'copy', source, target, previous }, { signal, onProgress });
  if (onProgress) {
    const { files, bytes, filesLinked, bytesLinked, dirs, links, skipped } = report;
    onProgress({ files, bytes, filesLinked, bytesLinked, dirs, links, skipped });
  }
  // A copy aborted by its last progress report does not count as finished.
  signal?.throwIfAborted();
  return report;
}
