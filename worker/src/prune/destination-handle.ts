// A destination folder held open while a prune works in it: every name the prune touches is
// looked up relative to the open folder (`/proc/<pid>/fd/<fd>/<name>`), so a component of
// the path swapped for a link since it was checked cannot lead the prune elsewhere.
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { JobFailure, METADATA_FOLDER, checkDestination } from '@coffer/shared';
import { errorCode } from '../copy/errno.js';

// Node does not export O_PATH; its value on every architecture Node supports on Linux.
const O_PATH = 0o10000000;
/** A folder looked through, never read: a link or anything but a folder fails to open. */
const LOOKUP_FLAGS = O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW;
// `/proc/<pid>` rather than `/proc/self`, which is itself a link resolved at every call.
const FD_PATHS = `/proc/${process.pid}/fd/`;

export interface DestinationHandle {
  /** `<backupRoot>/<destination>` as text: what catalog paths are compared with. */
  readonly path: string;
  /** The entry `name` of the destination folder, as a path that goes through the open folder. */
  entry(name: string): string;
  /** The entry `name` of its `.coffer` folder, likewise; null when there is no `.coffer` (a dry run makes none). */
  metadata(name: string): string | null;
  /** The names in `.coffer` (none when there is none). */
  metadataNames(): Promise<string[]>;
  close(): Promise<void>;
}

function refused(message: string): JobFailure {
  return new JobFailure('PRUNE_FAILED', message, true);
}

async function openLookup(at: string, shown: string): Promise<FileHandle | null> {
  try {
    return await fs.open(at, LOOKUP_FLAGS);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT') return null;
    // O_DIRECTORY answers ENOTDIR before O_NOFOLLOW can answer ELOOP: both mean "not a plain folder".
    if (code === 'ENOTDIR' || code === 'ELOOP') {
      throw refused(`${shown} is a link or not a folder; a prune never goes through one`);
    }
    throw err;
  }
}

/**
 * Opens `<backupRoot>/<destination>` one component at a time below `backupRoot` (which is
 * configuration and may itself be reached through links), refusing a component that is a link
 * or not a folder. Returns null when the destination folder does not exist. With
 * `createMetadata`, makes its `.coffer` folder when missing (where removed snapshots wait to
 * be deleted).
 */
export async function openDestination(
  backupRoot: string,
  destination: string,
  createMetadata: boolean,
): Promise<DestinationHandle | null> {
  const problem = checkDestination(destination);
  if (problem) throw new JobFailure('INVALID_DESTINATION', problem.message, true);
  const handles: FileHandle[] = [];
  const closeAll = async () => {
    await Promise.all(handles.map((handle) => handle.close().catch(() => undefined)));
  };
  try {
    const root = await fs.open(backupRoot, constants.O_RDONLY | constants.O_DIRECTORY);
    handles.push(root);
    let folder = root;
    let shown = backupRoot;
    for (const segment of destination.split('/')) {
      shown = path.join(shown, segment);
      const next = await openLookup(FD_PATHS + String(folder.fd) + '/' + segment, shown);
      if (next === null) {
        await closeAll();
        return null;
      }
      handles.push(next);
      folder = next;
    }
    const folderAt = FD_PATHS + String(folder.fd) + '/';
    const metadataShown = path.join(shown, METADATA_FOLDER);
    let metadata = await openLookup(folderAt + METADATA_FOLDER, metadataShown);
    if (metadata === null && createMetadata) {
      await fs.mkdir(folderAt + METADATA_FOLDER).catch((err: unknown) => {
        if (errorCode(err) !== 'EEXIST') throw err;
      });
      metadata = await openLookup(folderAt + METADATA_FOLDER, metadataShown);
    }
    if (metadata !== null) handles.push(metadata);
    const metadataAt = metadata === null ? null : FD_PATHS + String(metadata.fd) + '/';
    return {
      path: shown,
      entry: (name) => folderAt + name,
      metadata: (name) => (metadataAt === null ? null : metadataAt + name),
      async metadataNames() {
        return metadataAt === null ? [] : fs.readdir(metadataAt);
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
