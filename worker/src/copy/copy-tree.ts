import { lstatSync, promises as fs, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  MAX_LISTED_WARNINGS,
  emptyCounts,
  type CopyCounts,
  type CopyReport,
  type CopyWarnings,
} from './copy-counts.js';
import { runInline, runOnThread } from './copy-threads.js';
import type { ManifestOutput } from './copy-tree-sync.js';
import { linkRegistryOf } from './hard-links.js';
import { manifestPartsOf } from './manifest-parts.js';
import type { TreeSize } from './measure-tree-sync.js';
import type { PreviousIndex } from './previous-index.js';
import { removeTree } from './remove-tree.js';
import { ACTIVE, STOP, sharedState, type ThreadTask } from './thread-protocol.js';

export type { CopyCounts, CopyReport, CopyWarning, CopyWarnings } from './copy-counts.js';
export { PathTooLongError } from './path-too-long.js';
export { UnsupportedSourceError } from './unsupported-source.js';

export interface CopyOptions {
  /**
   * A complete earlier copy of the same source (the previous snapshot). Every regular file
   * unchanged since (same size, mode and mtime, and owner when owners are kept) is hard-linked
   * from it instead of copied. It is looked up in step with the source, never through a link.
   * Default: none, everything is copied.
   */
  previous?: string;
  /** Aborting stops the copy at its next entry or chunk of a file, and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Called with the running counts as the copy advances (at most every 50 ms per thread), with
   * `current` the entry one of its threads has in flight (or just did), relative to the source
   * as display text; and once more with the final counts and `current` null before the copy
   * resolves. A throw stops the copy and is its rejection.
   */
  onProgress?: (counts: Readonly<CopyCounts>, current: string | null) => void;
  /**
   * Worker threads one copy uses (each walks and copies with synchronous calls, which cost
   * less per file than concurrent async copies). Default: one per core.
   */
  threads?: number;
  /** Write the copy's manifest. Default: none. */
  manifest?: ManifestOptions;
  /**
   * `.gitignore` patterns relative to a folder source (`node_modules/`, `*.tmp`, `/cache`,
   * `!keep.tmp`; see `ExcludeMatcher`). Entries below the source that match are left out of the
   * copy and its manifest, an excluded folder without being walked, and counted in `excluded`.
   * A file source is copied whatever they say: the patterns are about what lies below a folder.
   * Default: none, and the report has no `excluded`.
   */
  exclude?: readonly string[];
  /**
   * Run every step on the caller's thread, synchronously, rather than on pooled threads: for a
   * small source only (the event loop waits for the whole copy; see `createSnapshot`). Same
   * copy, manifest, report and errors; `signal` is checked before each entry, `onProgress`
   * called after each. Default: false.
   */
  inline?: boolean;
  /**
   * Called once the source's files and bytes are counted, on a thread beside the copy's (see
   * `measureTree`), for progress totals: with the previous copy's manifest, files it lists are
   * counted at the size it gives, without a stat (an estimate). Not called when the count
   * fails, nor with `inline` (the caller counted). Default: nothing counted.
   */
  onMeasured?: (size: TreeSize) => void;
}

export interface ManifestOptions {
  /**
   * The new file to write the manifest to: one line per entry below the target (see
   * `ManifestEntry`), in no particular order, each file with the SHA-256 of its contents.
   */
  file: string;
  /**
   * The manifest of `previous`: files linked from there take their checksums from it rather
   * than being read, and whether they are unchanged is decided from it (see
   * `SyncCopyOptions.index`). Default (or when the file is missing or damaged): the previous
   * copy's files are looked at, and linked files are read.
   */
  previous?: string;
  /** When the copy `previous` started (ms), if known (see `PreviousIndex.startedMs`). Default: unknown. */
  previousStartedMs?: number;
}

export interface CopyResult extends CopyReport {
  /** With `manifest`: the SHA-256 (hex) of the manifest file as written. */
  manifestSha256?: string;
}

/** A copy's manifest as its tasks write it, each into its own part. */
type ManifestParts = Omit<ManifestOutput, 'part'>;

/**
 * Copies `source` (a real path: a directory or a regular file) into `target`, which
 * must not exist yet. A directory's contents land directly in `target`; a file lands
 * in `target` under its base name. What `cp -a` keeps is kept: names as bytes, contents
 * with their holes, modes and times, links' target text (never followed), hard links
 * within the source, and when running as root owners and groups (setuid and setgid
 * bits only along with them); FIFOs, sockets and devices are skipped and counted, never
 * opened. Nothing is opened through a link: an entry below the source that vanishes or
 * changes kind during the copy (a folder swapped for a link), or a file that cannot be
 * opened for reading, is left out and listed in `warnings`; the source itself missing
 * is an error, and so is an entry whose copy's path would be too long (`PathTooLongError`).
 *
 * The walk and the copies run on pooled worker threads with synchronous calls (see
 * `copyTreeSync`), so the event loop stays free for the queue's lock renewals: one thread
 * per core, a thread handing a folder to another whenever one is free (the per-file cost is
 * mostly kernel work, which then overlaps). Memory does not grow with the number of files.
 *
 * Every file copied is read once, each chunk hashed (SHA-256) and written, and `bytes` moves
 * between chunks, so progress shows inside a large file. With `manifest`, the threads write
 * their entries' lines to parts beside the target, `${target}.lines`, assembled into the
 * manifest file at the end (see `assembleManifestSync`).
 *
 * Rejects with the first error met, once every thread has stopped, and leaves the partial
 * target (and a partial manifest file) in place: removing them is the caller's decision. An
 * abort takes effect before the next entry or chunk of a file. The copy's record of hard
 * links, `${target}.links`, and the manifest's parts are removed either way.
 */
export async function copyTree(source: string, target: string, options: CopyOptions = {}): Promise<CopyResult> {
  options.signal?.throwIfAborted();
  const links = linkRegistryOf(target);
  const parts = manifestPartsOf(target);
  const removeScratch = async () => {
    if (options.inline === true) {
      // A small copy's scratch is a few files of ours: removed at once, without two thread hops.
      for (const scratch of [links, parts]) rmSync(scratch, { recursive: true, force: true });
      return;
    }
    await removeTree(links);
    await removeTree(parts);
  };
  // Left by a copy into the same target that died: its entries lead to files of that copy.
  // Looked for first (two lstat calls), as removing what is not there costs more.
  if ([links, parts].some((scratch) => lstatSync(scratch, { throwIfNoEntry: false }) !== undefined)) {
    await removeScratch();
  }
  let result: CopyResult;
  try {
    result = await copyWithManifest(source, target, options, { links, parts });
  } catch (error) {
    // The copy's own error is the one to report.
    await removeScratch().catch(() => undefined);
    throw error;
  }
  await removeScratch();
  return result;
}

async function copyWithManifest(
  source: string,
  target: string,
  options: CopyOptions,
  scratch: { links: string; parts: string },
): Promise<CopyResult> {
  const { manifest, signal } = options;
  const run = options.inline === true ? runInline : runOnThread;
  if (!manifest) {
    measure(source, options, undefined);
    return copyOnThreads(source, target, options, undefined, undefined);
  }
  await fs.mkdir(scratch.parts, { mode: 0o700 });
  const previousManifest = options.previous === undefined ? undefined : manifest.previous;
  // Read once, before the copy: its tasks decide from it and take linked files' checksums from
  // it, so the previous copy's files are not looked at, nor its manifest read again at the end.
  const index =
    previousManifest === undefined
      ? undefined
      : await run<PreviousIndex | undefined>(
          {
            kind: 'index',
            manifest: previousManifest,
            startedMs: manifest.previousStartedMs ?? 0,
            state: sharedState(),
          },
          { signal },
        );
  measure(source, options, index);
  const report = await copyOnThreads(
    source,
    target,
    options,
    { parts: scratch.parts, previousChecksums: false },
    index,
  );
  const assembly = { parts: scratch.parts, output: manifest.file, target, links: scratch.links };
  const manifestSha256 = await run<string>({ kind: 'manifest', assembly, state: sharedState() }, { signal });
  return { ...report, manifestSha256 };
}

/** Counts the source beside the copy, for `onMeasured` (see `CopyOptions.onMeasured`). */
function measure(source: string, options: CopyOptions, index: PreviousIndex | undefined): void {
  const { onMeasured, signal, exclude, inline } = options;
  if (onMeasured === undefined || inline === true) return;
  runOnThread<TreeSize>({ kind: 'measure', source, exclude, index, state: sharedState() }, { signal }).then(
    onMeasured,
    () => undefined,
  );
}

async function copyOnThreads(
  source: string,
  target: string,
  options: CopyOptions,
  manifest: ManifestParts | undefined,
  index: PreviousIndex | undefined,
): Promise<CopyReport> {
  const { previous, signal, onProgress, exclude } = options;
  const run = options.inline === true ? runInline : runOnThread;
  // Inline, one task does everything: nothing to hand folders to.
  const threads = options.inline === true ? 1 : Math.max(1, options.threads ?? availableParallelism());
  const state = sharedState();
  const flags = new Int32Array(state);
  // The first task counts as running from the start; a task reserves the next ones' places.
  Atomics.store(flags, ACTIVE, 1);
  const running = new Set<Promise<void>>();
  const reports: CopyReport[] = [];
  const live = new Map<number, Readonly<CopyCounts>>();
  let failure: { error: unknown } | undefined;
  const stopAll = (error: unknown) => {
    failure ??= { error };
    Atomics.store(flags, STOP, 1);
  };

  let nextId = 0;
  const partOf = (id: number): ManifestOutput | undefined => manifest && { ...manifest, part: id };
  const start = (task: ThreadTask, id: number) => {
    const work = run<CopyReport>(task, {
      signal,
      onProgress: (counts, current) => {
        live.set(id, counts);
        if (!failure && onProgress) {
          try {
            onProgress(sum([...live.values()]), current);
          } catch (error) {
            stopAll(error);
          }
        }
      },
      onDelegate: (subtree) => {
        nextId += 1;
        const task = { source, target, subtree, manifest: partOf(nextId), exclude, index, state, threads };
        start({ kind: 'subtree', ...task }, nextId);
      },
    }).then(
      (report) => {
        reports.push(report);
        live.set(id, report);
      },
      (error: unknown) => stopAll(error),
    );
    const tracked = work.finally(() => {
      Atomics.sub(flags, ACTIVE, 1);
      running.delete(tracked);
    });
    running.add(tracked);
  };
  start({ kind: 'copy', source, target, previous, manifest: partOf(nextId), exclude, index, state, threads }, nextId);
  // Tasks start more tasks: wait until none is left.
  while (running.size > 0) await Promise.all(running);

  // An abort wins over whatever the tasks were doing when they saw it.
  signal?.throwIfAborted();
  if (failure) throw failure.error;
  const counts = sum(reports);
  // A copy aborted by its last progress report does not count as finished.
  onProgress?.(counts, null);
  signal?.throwIfAborted();
  const excluded =
    exclude === undefined ? {} : { excluded: reports.reduce((total, { excluded = 0 }) => total + excluded, 0) };
  return { ...counts, warnings: mergeWarnings(reports), ...excluded };
}

function sum(parts: readonly Readonly<CopyCounts>[]): CopyCounts {
  const total = emptyCounts();
  for (const part of parts) {
    total.files += part.files;
    total.bytes += part.bytes;
    total.filesLinked += part.filesLinked;
    total.bytesLinked += part.bytesLinked;
    total.dirs += part.dirs;
    total.links += part.links;
    total.skipped += part.skipped;
  }
  return total;
}

function mergeWarnings(reports: readonly CopyReport[]): CopyWarnings {
  const merged: CopyWarnings = { count: 0, items: [] };
  for (const { warnings } of reports) {
    merged.count += warnings.count;
    merged.items.push(...warnings.items.slice(0, MAX_LISTED_WARNINGS - merged.items.length));
  }
  return merged;
}
