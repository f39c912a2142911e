import { promises as fs } from 'node:fs';
import path from 'node:path';
import { JobFailure } from '@coffer/shared/failure';
import { checkDestination } from '@coffer/shared/path-policy';
import { errorCode } from './errno.js';
import { toSnapshotFailure } from './snapshot-failure.js';

/**
 * Creates (when missing) the folder `<backupRoot>/<destination>` and returns its path, after
 * checking on the real file system that no component below `backupRoot` is a link or
 * anything but a folder: the worker itself copies users' links into snapshots, and a
 * destination passing through one of them would write wherever it points.
 *
 * `backupRoot` is configuration and may itself be reached through links. Only the worker
 * writes below it, and it never makes a link outside a snapshot, which no destination can
 * enter (`checkDestination` refuses snapshot and partial names): a folder checked here stays
 * a folder while the snapshot is written.
 */
export async function openDestinationFolder(backupRoot: string, destination: string): Promise<string> {
  const problem = checkDestination(destination);
  if (problem) throw new JobFailure('INVALID_DESTINATION', problem.message, true);
  let folder = backupRoot;
  try {
    await fs.mkdir(backupRoot, { recursive: true });
    for (const segment of destination.split('/')) {
      folder = path.join(folder, segment);
      await fs.mkdir(folder).catch((error: unknown) => {
        if (errorCode(error) !== 'EEXIST') throw error;
      });
      const stats = await fs.lstat(folder);
      if (stats.isSymbolicLink()) {
        throw new JobFailure(
          'INVALID_DESTINATION',
          `destination "${destination}" passes through ${folder}, which is a link; a destination must be a plain folder path under BACKUP_ROOT`,
          true,
        );
      }
      // A file in the way is the store's problem, as when BACKUP_ROOT itself is one: ops may move it.
      if (!stats.isDirectory())
        throw Object.assign(new Error(`${folder} is not a folder`), { code: 'ENOTDIR', path: folder });
    }
  } catch (error) {
    if (error instanceof JobFailure) throw error;
    throw toSnapshotFailure(error, { source: '', backupRoot, folder }, 'destination');
  }
  return folder;
}
