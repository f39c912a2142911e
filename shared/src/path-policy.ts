import { basename, isAbsolute, posix, relative, sep } from 'node:path';

/** Longest source path we accept, in UTF-8 bytes; Linux's PATH_MAX. */
export const MAX_PATH_LENGTH = 4096;
export const MAX_DESTINATION_LENGTH = 1024;
/** Longest name of one path segment, in bytes; Linux's NAME_MAX (ext4, XFS, btrfs). */
export const MAX_SEGMENT_BYTES = 255;

const DESTINATION_SEGMENT = /^[A-Za-z0-9._-]+$/;

/** A snapshot folder's name: `<UTC timestamp>-<job id>`, e.g. `20261127T191045.123Z-6f1c…`. */
export const SNAPSHOT_NAME = /^\d{8}T\d{6}\.\d{3}Z-/;
/** The prefix of the hidden folder a snapshot is copied into before it is renamed into place. */
export const PARTIAL_PREFIX = '.partial-';
/** The hidden folder in each destination where Coffer keeps its own metadata. */
export const METADATA_FOLDER = '.coffer';
/** The file at the top of BACKUP_ROOT that names the backup store the folder is (see the worker's store check). */
export const STORE_MARKER = '.coffer-store';

/** Where the manifest of the snapshot folder `snapshotPath` lives: `<folder>/.coffer/<name>.manifest.ndjson`. */
export function manifestPathOf(snapshotPath: string): string {
  return posix.join(posix.dirname(snapshotPath), METADATA_FOLDER, `${posix.basename(snapshotPath)}.manifest.ndjson`);
}

/** Where the record of the snapshot folder `snapshotPath` lives (its source, read to pick an incremental base): `<folder>/.coffer/<name>.json`. */
export function metadataPathOf(snapshotPath: string): string {
  return posix.join(posix.dirname(snapshotPath), METADATA_FOLDER, `${posix.basename(snapshotPath)}.json`);
}

/**
 * True for a name Coffer itself creates inside a destination folder: a snapshot, a partial copy
 * or the metadata folder. A destination with such a segment would lie inside a snapshot (or
 * inside Coffer's bookkeeping), so a backup could rewrite what another backup made.
 */
export function isReservedSegment(segment: string): boolean {
  return SNAPSHOT_NAME.test(segment) || segment.startsWith(PARTIAL_PREFIX) || segment === METADATA_FOLDER;
}

function longestSegmentBytes(path: string): number {
  return Math.max(0, ...path.split('/').map((segment) => Buffer.byteLength(segment, 'utf8')));
}

/** True when `child` is `root` itself or lies below it, comparing normalised paths only. */
export function isInside(child: string, root: string): boolean {
  const rel = relative(root, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

export function isInsideRoots(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => isInside(path, root));
}

/** True when `source` lies inside `backupRoot` or contains it: backing it up would copy the store into itself. */
export function overlapsBackupRoot(source: string, backupRoot: string): boolean {
  return isInside(source, backupRoot) || isInside(backupRoot, source);
}

export type PathProblem = {
  code: 'INVALID_SOURCE' | 'INVALID_DESTINATION' | 'INVALID_TARGET';
  message: string;
};

/** Checks a requested source path as text: absolute, printable, normalised. */
export function checkSourcePath(source: string): PathProblem | null {
  return checkAbsolutePath(source, 'source', 'INVALID_SOURCE');
}

/** Checks a requested restore target as text, by the same rules as a source. */
export function checkTargetPath(target: string): PathProblem | null {
  return checkAbsolutePath(target, 'target', 'INVALID_TARGET');
}

function checkAbsolutePath(path: string, noun: string, code: PathProblem['code']): PathProblem | null {
  const invalid = (why: string): PathProblem => ({ code, message: `${noun} ${why}` });
  if (path.includes('\0')) return invalid('must not contain NUL bytes');
  if (!isAbsolute(path)) return invalid(`must be an absolute path, got "${path}"`);
  // Limits are the file system's, so they count UTF-8 bytes, not characters.
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_LENGTH)
    return invalid(`is longer than ${MAX_PATH_LENGTH} bytes (UTF-8)`);
  if (longestSegmentBytes(path) > MAX_SEGMENT_BYTES) {
    return invalid(`has a segment longer than ${MAX_SEGMENT_BYTES} bytes (UTF-8); no file system holds such a name`);
  }
  // `..` is refused outright rather than resolved: what a client meant is ambiguous
  // once links are involved, and an honest client never needs it.
  if (path.split('/').includes('..')) return invalid('must not contain ".." segments');
  return null;
}

/**
 * Checks a path inside a snapshot, as `POST /restore` takes them: relative, no `..`, no NUL, no
 * empty segment. Null when fine, else why not.
 */
export function checkSnapshotEntryPath(entry: string): string | null {
  if (entry.includes('\0')) return 'must not contain NUL bytes';
  if (entry.startsWith('/')) return `must be relative to the snapshot, got "${entry}"`;
  if (Buffer.byteLength(entry, 'utf8') > MAX_PATH_LENGTH) return `is longer than ${MAX_PATH_LENGTH} bytes (UTF-8)`;
  const segments = entry.split('/');
  if (segments.includes('..') || segments.includes('.')) return `must not contain "." or ".." segments, got "${entry}"`;
  if (segments.includes('')) return `must not contain empty segments, got "${entry}"`;
  return null;
}

/**
 * Checks a requested destination name: relative, `/`-separated safe segments of at most 255
 * bytes, none of them a name Coffer creates inside a destination (so no destination lies inside
 * a snapshot, a partial copy or `.coffer`). Text only: the worker checks the real folders.
 */
export function checkDestination(destination: string): PathProblem | null {
  const invalid = (why: string): PathProblem => ({ code: 'INVALID_DESTINATION', message: `destination ${why}` });
  if (destination.length === 0) return invalid('must not be empty');
  if (destination.length > MAX_DESTINATION_LENGTH)
    return invalid(`is longer than ${MAX_DESTINATION_LENGTH} characters`);
  if (destination.startsWith('/')) return invalid('must be a relative name, not an absolute path');
  const segments = destination.split('/');
  // The marker and its drafts (`<marker>.<id>.tmp`) sit beside the destinations.
  if (segments[0]?.startsWith(STORE_MARKER)) {
    return invalid(`"${destination}" would take the place of Coffer's store marker ("${STORE_MARKER}…" is reserved)`);
  }
  for (const segment of segments) {
    if (segment === '') return invalid('must not contain empty segments ("//" or a trailing "/")');
    if (segment === '.' || segment === '..') return invalid('must not contain "." or ".." segments');
    if (!DESTINATION_SEGMENT.test(segment)) {
      return invalid(`may contain only letters, digits, ".", "_", "-" and "/" separators, got "${destination}"`);
    }
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) {
      return invalid(`has a segment longer than ${MAX_SEGMENT_BYTES} bytes`);
    }
    if (isReservedSegment(segment)) {
      return invalid(
        `"${destination}" would lie inside a snapshot: "${segment}" is a snapshot, partial copy or metadata folder name`,
      );
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

/**
 * The folders inside both `a` and `b`: for each pair where one holds the other, the inner one.
 * A path is inside the result exactly when it is inside some root of `a` and some root of `b`.
 */
export function intersectRoots(a: readonly string[], b: readonly string[]): string[] {
  const inner = new Set<string>();
  for (const x of a) {
    for (const y of b) {
      if (isInside(x, y)) inner.add(x);
      else if (isInside(y, x)) inner.add(y);
    }
  }
  return [...inner];
}

/** A requested absolute path as it is queued and logged: normalised, without a trailing `/`. */
export function normaliseAbsolutePath(path: string): string {
  const normal = posix.normalize(path);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

// Checks `exclude` patterns for the one shape the matcher cannot afford: two or more `**`
// segments before the last segment (`**/a/**/b`, `a/**/b/**/c`). The `ignore` library turns them
// into expressions that backtrack in time steeply growing with the depth of the path (two of them
// take seconds per entry 2,000 folders deep), and nothing interrupts a thread stuck in one. One
// such segment, a trailing `/**` and `*` inside a name stay linear. Returns the problem, or null.
export function checkExcludePatterns(patterns: readonly string[]): string | null {
  for (const [index, pattern] of patterns.entries()) {
    const segments = pattern.replace(/^!/, '').replace(/\/+$/, '').split('/');
    const inner = segments.slice(0, -1).filter((segment) => segment === '**').length;
    if (inner > 1) {
      return (
        `exclude pattern ${index} "${pattern}" has ${inner} "**" segments before its last one; at most one is ` +
        'allowed (matching more takes time that grows steeply with the depth of the tree)'
      );
    }
  }
  return null;
}
