import { basename, isAbsolute, posix, relative, sep } from 'node:path';

/** Longest source path we accept; Linux's PATH_MAX. */
export const MAX_PATH_LENGTH = 4096;
export const MAX_DESTINATION_LENGTH = 1024;

const DESTINATION_SEGMENT = /^[A-Za-z0-9._-]+$/;

/** True when `child` is `root` itself or lies below it, comparing normalised paths only. */
export function isInside(child: string, root: string): boolean {
  const rel = relative(root, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

export function isInsideRoots(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => isInside(path, root));
}

export type PathProblem = { code: 'INVALID_SOURCE' | 'INVALID_DESTINATION'; message: string };

/** Checks a requested source path as text: absolute, printable, normalised. */
export function checkSourcePath(source: string): PathProblem | null {
  if (source.includes('\0')) return { code: 'INVALID_SOURCE', message: 'source must not contain NUL bytes' };
  if (!isAbsolute(source))
    return { code: 'INVALID_SOURCE', message: `source must be an absolute path, got "${source}"` };
  if (source.length > MAX_PATH_LENGTH) {
    return { code: 'INVALID_SOURCE', message: `source is longer than ${MAX_PATH_LENGTH} characters` };
  }
  // `..` is refused outright rather than resolved: what a client meant is ambiguous
  // once links are involved, and an honest client never needs it.
  if (source.split('/').includes('..')) {
    return { code: 'INVALID_SOURCE', message: 'source must not contain ".." segments' };
  }
  return null;
}

/** Checks a requested destination name: relative, `/`-separated safe segments. */
export function checkDestination(destination: string): PathProblem | null {
  const invalid = (why: string): PathProblem => ({ code: 'INVALID_DESTINATION', message: `destination ${why}` });
  if (destination.length === 0) return invalid('must not be empty');
  if (destination.length > MAX_DESTINATION_LENGTH)
    return invalid(`is longer than ${MAX_DESTINATION_LENGTH} characters`);
  if (destination.startsWith('/')) return invalid('must be a relative name, not an absolute path');
  for (const segment of destination.split('/')) {
    if (segment === '') return invalid('must not contain empty segments ("//" or a trailing "/")');
    if (segment === '.' || segment === '..') return invalid('must not contain "." or ".." segments');
    if (!DESTINATION_SEGMENT.test(segment)) {
      return invalid(`may contain only letters, digits, ".", "_", "-" and "/" separators, got "${destination}"`);
    }
  }
  return null;
}

/** The destination used when a request names none: the source's base name, made safe. */
export function defaultDestination(source: string): string {
  const name = basename(posix.normalize(source)).replace(/[^A-Za-z0-9._-]/g, '_');
  if (name === '' || name === '.' || name === '..' || /^_+$/.test(name)) return 'root';
  return name.slice(0, 255);
}

/**
 * The roots a request may read from: SOURCE_ROOTS, narrowed to a token's own roots when it
 * has some. A token root outside SOURCE_ROOTS grants nothing: the configuration always wins.
 */
export function effectiveRoots(
  sourceRoots: readonly string[],
  tokenRoots?: readonly string[] | null,
): readonly string[] {
  if (!tokenRoots) return sourceRoots;
  return tokenRoots.filter((root) => isAbsolute(root) && isInsideRoots(posix.normalize(root), sourceRoots));
}
