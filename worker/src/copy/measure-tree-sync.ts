import fs, { type Dir } from 'node:fs';
import path from 'node:path';
import { CopyStopped } from './copy-tree-sync.js';
import { errorCode } from './errno.js';

export interface TreeSize {
  /** Regular files. */
  files: number;
  /** Their total size. */
  bytes: number;
}

const DIR_BUFFER_SIZE = 128;

/**
 * Counts the regular files under `source` and their bytes, as `copyTreeSync` would copy
 * them: links are not followed, other kinds are not counted, entries that vanish or cannot
 * be listed are left out (this is an estimate for progress; the copy decides what fails).
 * Synchronous, for a worker thread; throws `CopyStopped` once `shouldStop` says so.
 */
export function measureTreeSync(source: string, shouldStop: () => boolean = () => false): TreeSize {
  const stats = fs.lstatSync(source);
  if (stats.isFile()) return { files: 1, bytes: stats.size };
  const size: TreeSize = { files: 0, bytes: 0 };
  if (stats.isDirectory()) measureDirectory(fs.opendirSync(source, { bufferSize: DIR_BUFFER_SIZE }), size, shouldStop);
  return size;
}

function measureDirectory(dir: Dir, size: TreeSize, shouldStop: () => boolean): void {
  try {
    for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
      if (shouldStop()) throw new CopyStopped();
      if (entry.isFIFO() || entry.isSocket() || entry.isCharacterDevice() || entry.isBlockDevice()) continue;
      const entryPath = path.join(dir.path, entry.name);
      const stats = fs.lstatSync(entryPath, { throwIfNoEntry: false });
      if (stats?.isFile()) {
        size.files += 1;
        size.bytes += stats.size;
      } else if (stats?.isDirectory()) {
        const child = openQuietly(entryPath);
        if (child) measureDirectory(child, size, shouldStop);
      }
    }
  } finally {
    dir.closeSync();
  }
}

function openQuietly(dirPath: string): Dir | undefined {
  try {
    return fs.opendirSync(dirPath, { bufferSize: DIR_BUFFER_SIZE });
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}
