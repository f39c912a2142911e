import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { JobFailure, isInsideRoots, overlapsBackupRoot } from '@coffer/shared';

/** The real path a folder has, or will have once created: its nearest existing ancestor's real path, then the rest. */
async function realPathOfFolderToBe(folder: string): Promise<string> {
  const missing: string[] = [];
  for (let current = path.resolve(folder); ; current = path.dirname(current)) {
    const real = await realpath(current).catch(() => null);
    if (real !== null) return path.join(real, ...missing);
    if (current === path.dirname(current)) return path.resolve(folder);
    missing.unshift(path.basename(current));
  }
}

async function realRoots(roots: readonly string[]): Promise<string[]> {
  const resolved = await Promise.all(roots.map((root) => realpath(root).catch(() => null)));
  return resolved.filter((root): root is string => root !== null);
}

/**
 * The real path of a job's source, links resolved, checked again against the
 * allowed roots and against the backup store (the API only checked the text; a link may
 * lead elsewhere).
 */
export async function resolveSource(source: string, roots: readonly string[], backupRoot: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(source);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new JobFailure('SOURCE_NOT_FOUND', `source ${source} does not exist`, true, { cause: err });
    }
    if (code === 'EACCES') {
      throw new JobFailure('SOURCE_UNREADABLE', `source ${source} cannot be read (${code})`, true, { cause: err });
    }
    throw err;
  }
  if (!isInsideRoots(real, await realRoots(roots))) {
    throw new JobFailure(
      'SOURCE_OUTSIDE_ROOTS',
      `source ${source} resolves to ${real}, which is outside SOURCE_ROOTS`,
      true,
    );
  }
  const realBackupRoot = await realPathOfFolderToBe(backupRoot);
  if (overlapsBackupRoot(real, realBackupRoot)) {
    throw new JobFailure(
      'SOURCE_OVERLAPS_BACKUP_ROOT',
      `source ${source} resolves to ${real}, which overlaps BACKUP_ROOT (${realBackupRoot}): Coffer never backs up its own backups`,
      true,
    );
  }
  return real;
}
