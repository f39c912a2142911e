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
    await fs.rm(target, { recursive: true, force: true });
  }
}

async function makeDirectoriesWritable(dir: string): Promise<void> {
  const stats = await fs.lstat(dir);
  if (!stats.isDirectory()) return;
  // Before listing: a directory without read or search permission cannot be walked.
  await fs.chmod(dir, 0o700);
  for await (const entry of await fs.opendir(dir)) {
    if (entry.isDirectory()) await makeDirectoriesWritable(path.join(dir, entry.name));
  }
}
