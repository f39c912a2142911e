import { realpath } from 'node:fs/promises';
import { JobFailure, isInsideRoots } from '@coffer/shared';

async function realRoots(roots: readonly string[]): Promise<string[]> {
  const resolved = await Promise.all(roots.map((root) => realpath(root).catch(() => null)));
  return resolved.filter((root): root is string => root !== null);
}

/**
 * The real path of a job's source, links resolved, checked again against the
 * allowed roots (the API only checked the text; a link may lead elsewhere).
 */
export async function resolveSource(source: string, roots: readonly string[]): Promise<string> {
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
  return real;
}
