import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errorCode } from './errno.js';

/**
 * Removes `target` and everything below it; a missing target is fine. Snapshots keep
 * their sources' modes, so when not running as root a read-only directory inside has
 * to be made writable again before its entries can be unlinked.
 */
export async function removeTree(target: string): Promise<void> {
  try {
    await fs.rm(target, { recursive: true, force: true });
  } catch (error) {
    const code = errorCode(error);
    if (code !== 'EACCES' && code !== 'EPERM') throw error;
    await makeDirectoriesWritable(target);
    // The failed rm may still be deleting siblings in the background (it rejects on
    // the first error without waiting for the rest); both tolerate each other's
    // deletions, and the retries cover a directory emptied a moment late.
    await fs.rm(target, { recursive: true, force: true, maxRetries: 3 });
  }
}

async function makeDirectoriesWritable(dir: string): Promise<void> {
  try {
    const stats = await fs.lstat(dir);
    if (!stats.isDirectory()) return;
    // Before listing: a directory without read or search permission cannot be walked.
    await fs.chmod(dir, 0o700);
    for await (const entry of await fs.opendir(dir)) {
      if (entry.isDirectory()) await makeDirectoriesWritable(path.join(dir, entry.name));
    }
  } catch (error) {
    // Already deleted by the failed rm, which may still be running.
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}
