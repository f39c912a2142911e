import path from 'node:path';
import { JobFailure } from '@coffer/shared/failure';
import { UnsupportedSourceError } from './unsupported-source.js';
import { errorDest, isErrnoException } from './errno.js';
import { PathTooLongError, pathTooLongMessage } from './path-too-long.js';

export interface SnapshotPaths {
  source: string;
  backupRoot: string;
  /** `<backupRoot>/<destination>`, the folder the snapshot is written in. */
  folder: string;
}

/** Which side of the copy an error came from. */
export type CopySide = 'source' | 'destination';

/**
 * Turns an error met while writing a snapshot into a `JobFailure` with a stable
 * code when its cause is known; any other error is returned unchanged and counts as
 * transient (the job is retried). `side` forces the side when the caller knows it
 * (preparing the destination folder); otherwise the error's path tells.
 */
export function toSnapshotFailure(error: unknown, paths: SnapshotPaths, side?: CopySide): unknown {
  if (error instanceof UnsupportedSourceError) {
    return new JobFailure('SOURCE_UNREADABLE', error.message, true, { cause: error });
  }
  // Permanent: the source would have to change, and a snapshot that ordinary tools cannot read is no backup.
  if (error instanceof PathTooLongError) return new JobFailure('PATH_TOO_LONG', error.message, true, { cause: error });
  if (!isErrnoException(error) || error.code === undefined) return error;
  const code = error.code;
  const blamed = side ?? sideOf(error.path, paths);
  switch (code) {
    case 'ENAMETOOLONG':
      return new JobFailure('PATH_TOO_LONG', `${pathTooLongMessage(error.path ?? paths.source)} (${code})`, true, {
        cause: error,
      });
    case 'ENOSPC':
    case 'EDQUOT':
      // Not permanent: space may be freed (or old snapshots pruned) before a retry.
      return new JobFailure(
        'DESTINATION_FULL',
        `no space left to write ${written(error, paths)} under ${paths.backupRoot} (${code})`,
        false,
        { cause: error },
      );
    case 'ENOENT':
    case 'ENOTDIR':
      if (blamed === 'source' && error.path === paths.source) {
        return new JobFailure('SOURCE_NOT_FOUND', `source ${paths.source} does not exist (${code})`, true, {
          cause: error,
        });
      }
      // ENOTDIR on our side: a path component of the backup root is a file.
      return code === 'ENOTDIR' && blamed === 'destination' ? notWritable(error, code, paths) : error;
    case 'EACCES':
    case 'EPERM':
      if (blamed === 'source') {
        return new JobFailure('SOURCE_UNREADABLE', `cannot read ${error.path ?? paths.source} (${code})`, true, {
          cause: error,
        });
      }
      return blamed === 'destination' ? notWritable(error, code, paths) : error;
    case 'EROFS':
      // Only writes meet a read-only file system, and Coffer writes only on its side.
      return notWritable(error, code, paths);
    default:
      return error;
  }
}

// Not permanent: permissions or mounts of the backup store are fixed by ops, and
// the job should then succeed on its next attempt.
function notWritable(error: NodeJS.ErrnoException, code: string, paths: SnapshotPaths): JobFailure {
  return new JobFailure(
    'DESTINATION_NOT_WRITABLE',
    `cannot write ${written(error, paths)} under the backup root ${paths.backupRoot} (${code})`,
    false,
    { cause: error },
  );
}

/** The path being written when `error` happened: copyFile names its target `dest`. */
function written(error: NodeJS.ErrnoException, paths: SnapshotPaths): string {
  return errorDest(error) ?? error.path ?? paths.folder;
}

// copyFile reports the source as its `path`, so a copyFile EACCES counts against the
// source: the folders it writes into were created by this process, owner-writable.
function sideOf(errorPath: string | undefined, paths: SnapshotPaths): CopySide | undefined {
  if (errorPath === undefined) return undefined;
  if (isWithin(errorPath, paths.folder)) return 'destination';
  if (isWithin(errorPath, paths.source)) return 'source';
  if (isWithin(errorPath, paths.backupRoot)) return 'destination';
  return undefined;
}

function isWithin(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}
