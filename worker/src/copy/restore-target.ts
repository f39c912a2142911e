// Where a restore may write, checked on the real file system, and the target's parent opened
// without following links: target folders are users' folders, which they may change meanwhile.
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { JobFailure } from '@coffer/shared/failure';
import { isInsideRoots, overlapsBackupRoot } from '@coffer/shared/path-policy';
import { errorCode } from './errno.js';
import { FOLDER_FLAGS, LOOKUP_FLAGS, entryPath, folderPrefix, listFolder } from './open-at.js';

/** What a staging folder's name adds to the target's: `.<base>.coffer-restore-<jobId>+<attempt>`. */
const STAGING_MARK = '.coffer-restore-';
// A folder made on the way to the target: what `mkdir -p` would give it.
const NEW_PARENT_MODE = 0o777;

/**
 * The real path `target` stands for, checked against `roots` and `backupRoot` as they really
 * are (the API checked only the text; a link on the way may lead elsewhere). A target that does
 * not exist yet gets the real path of its deepest existing ancestor with the rest appended.
 * Throws a permanent `JobFailure`: `TARGET_OUTSIDE_ROOTS` outside every root, `INVALID_TARGET`
 * for a target that is not an absolute path, cannot be resolved, or overlaps the backup store.
 */
export async function resolveRestoreTarget(
  target: string,
  roots: readonly string[],
  backupRoot: string,
): Promise<string> {
  if (!path.isAbsolute(target) || target.includes('\0')) {
    throw new JobFailure('INVALID_TARGET', `target must be an absolute path without NUL bytes, got "${target}"`, true);
  }
  const real = await realPathToBe(target);
  // A root that does not exist (yet) holds nothing a target could resolve into.
  const realRoots = (await Promise.all(roots.map((root) => fsp.realpath(root).catch(() => undefined)))).filter(
    (root): root is string => root !== undefined,
  );
  if (!isInsideRoots(real, realRoots)) {
    throw new JobFailure(
      'TARGET_OUTSIDE_ROOTS',
      `target ${target} resolves to ${real}, which is outside the roots a restore may write to`,
      true,
    );
  }
  const realBackupRoot = await realPathToBe(backupRoot);
  if (overlapsBackupRoot(real, realBackupRoot)) {
    throw new JobFailure(
      'INVALID_TARGET',
      `target ${target} resolves to ${real}, which overlaps BACKUP_ROOT (${realBackupRoot}): a restore never writes into the backup store`,
      true,
    );
  }
  return real;
}

/** The real path of `folder`, or of its deepest existing ancestor followed by the missing names. */
async function realPathToBe(folder: string): Promise<string> {
  const missing: string[] = [];
  let current = path.resolve(folder);
  for (;;) {
    const real = await realPathIfThere(current);
    if (real !== undefined) {
      if (missing.length > 0 && !(await fsp.stat(real)).isDirectory()) {
        throw new JobFailure('INVALID_TARGET', `target ${folder} cannot be made: ${current} is not a folder`, true);
      }
      return path.join(real, ...missing);
    }
    // Something is there that realpath cannot resolve: a link leading nowhere, or through a file.
    const there = await fsp.lstat(current).catch(() => undefined);
    if (there !== undefined) {
      throw new JobFailure('INVALID_TARGET', `target ${folder} cannot be resolved: ${current} leads nowhere`, true);
    }
    const parent = path.dirname(current);
    if (parent === current) return path.resolve(folder);
    missing.unshift(path.basename(current));
    current = parent;
  }
}

async function realPathIfThere(file: string): Promise<string | undefined> {
  try {
    return await fsp.realpath(file);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP' || code === 'EACCES') {
      throw new JobFailure('INVALID_TARGET', `${file} cannot be resolved (${code})`, true, { cause: error });
    }
    throw error;
  }
}

/** The hidden folder beside the target that a new target is written into, then renamed from. */
export function stagingName(target: string, jobId: string, attempt: string): string {
  return `.${path.basename(target)}${STAGING_MARK}${jobId}+${attempt}`;
}

/** A permanent `INVALID_TARGET` for a link or non-folder found where a folder must be. */
export function notAFolder(where: string): JobFailure {
  return new JobFailure(
    'INVALID_TARGET',
    `${where} is a link or not a folder where the restore needs a folder; nothing is written through it`,
    true,
  );
}

/**
 * Opens the folder `folder` (an absolute real path) one component at a time from `/`, never
 * following a link, creating the components that are missing. The folder is opened with
 * `FOLDER_FLAGS`, the ones on the way only looked through. A link or anything but a folder on
 * the way fails with `INVALID_TARGET`.
 */
export function openFolderPath(folder: string): number {
  let fd = fs.openSync('/', LOOKUP_FLAGS);
  const names = folder.split('/').filter((name) => name !== '');
  try {
    names.forEach((name, index) => {
      const next = openOrMakeFolder(fd, Buffer.from(name), index === names.length - 1 ? FOLDER_FLAGS : LOOKUP_FLAGS);
      if (next === undefined) throw notAFolder(`/${names.slice(0, index + 1).join('/')}`);
      fs.closeSync(fd);
      fd = next.fd;
    });
    if (names.length === 0) {
      const root = fs.openSync('/', FOLDER_FLAGS);
      fs.closeSync(fd);
      fd = root;
    }
    return fd;
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/**
 * Opens the folder `name` of the open folder `parent` with `flags` (no link followed), creating
 * it first with `mode` when missing and `make` allows; tells whether it was created. Undefined
 * when a link or something else but a folder is there.
 */
export function openOrMakeFolder(
  parent: number,
  name: Buffer,
  flags: number,
  mode = NEW_PARENT_MODE,
  make = true,
): { fd: number; created: boolean } | undefined {
  const at = entryPath(folderPrefix(parent), name);
  let created = false;
  if (make) {
    try {
      fs.mkdirSync(at, { mode });
      created = true;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  }
  try {
    return { fd: fs.openSync(at, flags), created };
  } catch (error) {
    // O_DIRECTORY with O_NOFOLLOW: ENOTDIR for a link or a file, ELOOP for some links.
    const code = errorCode(error);
    if (code === 'ENOTDIR' || code === 'ELOOP') return undefined;
    throw error;
  }
}

/**
 * Whether the entry `name` of the open folder `parent` may be replaced by a new target: it is
 * missing or an empty folder (which rename(2) replaces). Never follows a link.
 */
export function isFreeForTarget(parent: number, name: Buffer): boolean {
  const at = entryPath(folderPrefix(parent), name);
  const stats = fs.lstatSync(at, { throwIfNoEntry: false });
  if (stats === undefined) return true;
  if (!stats.isDirectory()) return false;
  const fd = fs.openSync(at, FOLDER_FLAGS);
  try {
    const listing = listFolder(fd);
    try {
      return listing.readSync() === null;
    } finally {
      listing.closeSync();
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Names in the open folder `folder` left by earlier attempts of job `jobId`: staging folders
 * of a target named `base`, or (with no `base`) temporary files of an overwrite.
 */
export function leftoversOf(folder: number, jobId: string, base?: string): Buffer[] {
  const prefix = Buffer.from(base === undefined ? `${STAGING_MARK}${jobId}+` : `.${base}${STAGING_MARK}${jobId}+`);
  const found: Buffer[] = [];
  const listing = listFolder(folder);
  try {
    for (let entry = listing.readSync(); entry !== null; entry = listing.readSync()) {
      if (entry.name.subarray(0, prefix.length).equals(prefix)) found.push(entry.name);
    }
  } finally {
    listing.closeSync();
  }
  return found;
}

/** The temporary name a file or link is written under before it is renamed over an existing entry. */
export function temporaryName(jobId: string, attempt: string): Buffer {
  return Buffer.from(`${STAGING_MARK}${jobId}+${attempt}`);
}
