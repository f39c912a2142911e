import fs from 'node:fs';
import { CopyStopped } from './copy-tree-sync.js';
import { excludeMatcher, type ExcludeMatcher } from './exclude-matcher.js';
import {
  FOLDER_FLAGS,
  childPath,
  entryPath,
  folderPrefix,
  isSpecial,
  listFolder,
  namedAfter,
  openIfThere,
  openSourceRoot,
} from './open-at.js';
import { PreviousIndexReader, type PreviousIndex } from './previous-index.js';
import { UnsupportedSourceError } from './unsupported-source.js';

export interface TreeSize {
  /** Regular files. */
  files: number;
  /** Their total size. */
  bytes: number;
}

// A folder that vanished, cannot be listed or is no longer a folder is left out of the estimate.
const UNLISTED_CODES = new Set(['ENOENT', 'EACCES', 'ENOTDIR', 'ELOOP']);

/**
 * Counts the regular files under `source` and their bytes, as `copyTreeSync` would copy
 * them: walked the same way (names as bytes, each entry relative to its open folder, links
 * never followed), other kinds not counted, entries that vanish or cannot be listed left out
 * (this is an estimate for progress; the copy decides what fails). What `exclude` leaves out is
 * left out here too, and an excluded folder is not walked (see `ExcludeMatcher`).
 * Synchronous, for a worker thread; throws `CopyStopped` once `shouldStop` says so.
 */
export function measureTreeSync(
  source: string,
  shouldStop: () => boolean = () => false,
  exclude?: readonly string[],
  index?: PreviousIndex,
): TreeSize {
  return measure(source, shouldStop, exclude, index, undefined) ?? { files: 0, bytes: 0 };
}

/** How much a job may hold to be copied on the worker's own thread (see `copyTree`'s `inline`). */
export interface SmallLimits {
  /** Entries of any kind below the source (excluded ones not counted). */
  entries: number;
  /** Bytes of its files. */
  bytes: number;
}

/**
 * The size of `source` when it is a regular file of at most `limits.bytes`, or a folder holding
 * at most `limits.entries` entries and `limits.bytes` bytes (its walk stops at the first entry
 * past them); undefined otherwise, or when it is neither. Synchronous, on the caller's thread:
 * it looks at most `limits.entries` entries.
 */
export function measureIfSmall(source: string, limits: SmallLimits, exclude?: readonly string[]): TreeSize | undefined {
  try {
    return measure(source, () => false, exclude, undefined, { ...limits });
  } catch (error) {
    if (error instanceof TooLarge) return undefined;
    throw error;
  }
}

class TooLarge extends Error {}

function measure(
  source: string,
  shouldStop: () => boolean,
  exclude: readonly string[] | undefined,
  index: PreviousIndex | undefined,
  budget: SmallLimits | undefined,
): TreeSize | undefined {
  let root;
  try {
    root = openSourceRoot(source);
  } catch (error) {
    // Neither file nor folder: the copy refuses it, nothing to count.
    if (error instanceof UnsupportedSourceError) return budget ? undefined : { files: 0, bytes: 0 };
    throw error;
  }
  const size: TreeSize = { files: 0, bytes: 0 };
  if (root.stats.isFile()) {
    fs.closeSync(root.fd);
    if (budget && root.stats.size > budget.bytes) return undefined;
    return { files: 1, bytes: root.stats.size };
  }
  const previous = index && new PreviousIndexReader(index);
  try {
    measureFolder(root.fd, Buffer.alloc(0), { size, shouldStop, exclude: excludeMatcher(exclude), previous, budget });
  } catch (error) {
    if (error instanceof TooLarge) throw error;
    throw namedAfter(error, source);
  }
  return size;
}

interface Measure {
  size: TreeSize;
  shouldStop: () => boolean;
  exclude: ExcludeMatcher | undefined;
  /** The previous copy's manifest: files listed there are counted at their size then, without a stat. */
  previous: PreviousIndexReader | undefined;
  /** What is left of the limits of `measureIfSmall`; `TooLarge` once spent. */
  budget: SmallLimits | undefined;
}

/** Adds the files below the open folder `fd` (at `relative` below the source) to the size, then closes it. */
function measureFolder(fd: number, relative: Buffer, measure: Measure): void {
  const { size, shouldStop, exclude, previous, budget } = measure;
  const prefix = folderPrefix(fd);
  try {
    const dir = listFolder(fd);
    try {
      for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
        if (shouldStop()) throw new CopyStopped();
        // Every entry listed counts, excluded ones too: the copy lists them as well.
        if (budget && (budget.entries -= 1) < 0) throw new TooLarge();
        if (isSpecial(entry) || entry.isSymbolicLink()) continue;
        // A path below the source is needed only to match patterns and look files up.
        const child = exclude || previous ? childPath(relative, entry.name) : relative;
        const listed = entry.isFile() || entry.isDirectory();
        // Matched before any stat when the listing tells the kind, as the copy does.
        if (exclude && listed && exclude.excludes(child, entry.isDirectory())) continue;
        if (previous && entry.isFile()) {
          // An estimate: a file the previous copy has is most likely unchanged, and its size known.
          const record = previous.find(child);
          if (record >= 0) {
            size.files += 1;
            size.bytes += previous.size(record);
            continue;
          }
        }
        const path = entryPath(prefix, entry.name);
        // The listing's kind spares a stat per folder; files need one for their size.
        const stats = entry.isDirectory() ? undefined : fs.lstatSync(path, { throwIfNoEntry: false });
        if (exclude && !listed && stats && exclude.excludes(child, stats.isDirectory())) continue;
        if (stats?.isFile()) {
          size.files += 1;
          size.bytes += stats.size;
          if (budget && (budget.bytes -= stats.size) < 0) throw new TooLarge();
        } else if (entry.isDirectory() || stats?.isDirectory()) {
          const folder = openIfThere(path, FOLDER_FLAGS, UNLISTED_CODES);
          if (folder !== undefined) measureFolder(folder, child, measure);
        }
      }
    } finally {
      dir.closeSync();
    }
  } finally {
    fs.closeSync(fd);
  }
}
