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
): TreeSize {
  let root;
  try {
    root = openSourceRoot(source);
  } catch (error) {
    // Neither file nor folder: the copy refuses it, nothing to count.
    if (error instanceof UnsupportedSourceError) return { files: 0, bytes: 0 };
    throw error;
  }
  const size: TreeSize = { files: 0, bytes: 0 };
  if (root.stats.isFile()) {
    fs.closeSync(root.fd);
    return { files: 1, bytes: root.stats.size };
  }
  try {
    measureFolder(root.fd, Buffer.alloc(0), { size, shouldStop, exclude: excludeMatcher(exclude) });
  } catch (error) {
    throw namedAfter(error, source);
  }
  return size;
}

interface Measure {
  size: TreeSize;
  shouldStop: () => boolean;
  exclude: ExcludeMatcher | undefined;
}

/** Adds the files below the open folder `fd` (at `relative` below the source) to the size, then closes it. */
function measureFolder(fd: number, relative: Buffer, measure: Measure): void {
  const { size, shouldStop, exclude } = measure;
  const prefix = folderPrefix(fd);
  try {
    const dir = listFolder(fd);
    try {
      for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
        if (shouldStop()) throw new CopyStopped();
        if (isSpecial(entry) || entry.isSymbolicLink()) continue;
        // A path below the source is needed only to match patterns.
        const child = exclude ? childPath(relative, entry.name) : relative;
        const listed = entry.isFile() || entry.isDirectory();
        // Matched before any stat when the listing tells the kind, as the copy does.
        if (exclude && listed && exclude.excludes(child, entry.isDirectory())) continue;
        const path = entryPath(prefix, entry.name);
        // The listing's kind spares a stat per folder; files need one for their size.
        const stats = entry.isDirectory() ? undefined : fs.lstatSync(path, { throwIfNoEntry: false });
        if (exclude && !listed && stats && exclude.excludes(child, stats.isDirectory())) continue;
        if (stats?.isFile()) {
          size.files += 1;
          size.bytes += stats.size;
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
