import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface TreeSize {
  /** Regular files. */
  files: number;
  /** Their total size. */
  bytes: number;
}

// Files whose size is read at once; bounds memory and thread-pool pressure.
const STAT_BATCH = 64;
const DIR_BUFFER_SIZE = 128;

/**
 * Counts the regular files under `source` and their bytes, as `copyTree` would copy
 * them: links are not followed, other kinds are not counted. Used for progress totals.
 */
export async function measureTree(source: string, signal?: AbortSignal): Promise<TreeSize> {
  signal?.throwIfAborted();
  const stats = await fs.lstat(source);
  if (stats.isFile()) return { files: 1, bytes: stats.size };
  const size: TreeSize = { files: 0, bytes: 0 };
  if (stats.isDirectory()) await measureDirectory(source, size, signal);
  return size;
}

async function measureDirectory(dir: string, size: TreeSize, signal: AbortSignal | undefined): Promise<void> {
  const files: string[] = [];
  const handle = await fs.opendir(dir, { bufferSize: DIR_BUFFER_SIZE });
  for await (const entry of handle) {
    signal?.throwIfAborted();
    const entryPath = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      await measureDirectory(entryPath, size, signal);
    } else if (entry.isFile()) {
      files.push(entryPath);
      if (files.length >= STAT_BATCH) await addSizes(files.splice(0), size);
    }
  }
  await addSizes(files, size);
}

async function addSizes(files: readonly string[], size: TreeSize): Promise<void> {
  const all = await Promise.all(files.map((file) => fs.lstat(file)));
  for (const stats of all) {
    // Checked again: the listing may be stale.
    if (!stats.isFile()) continue;
    size.files += 1;
    size.bytes += stats.size;
  }
}
