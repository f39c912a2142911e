// A restore as it runs on its own worker thread (started by restore-snapshot.ts): synchronous
// file system calls, which cost about half their async forms per file, off the main thread's
// event loop. Every entry of the snapshot and of the target is reached relative to its open
// parent folder (open-at.ts), never through a link.
import fs, { constants, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import { JobFailure, type FailureCode, type FailureProblem } from '@coffer/shared/failure';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { errorCode } from './errno.js';
import { CHUNK_SIZE, looksSparse } from './file-data.js';
import { entryPathBytes, linkTargetBytes, readManifest } from './manifest-file.js';
import { FILE_FLAGS, FOLDER_FLAGS, entryPath, fdPath, folderPrefix, namedAfter } from './open-at.js';
import { copyMode, keepsOwners, tryChown } from './owners.js';
import { removeTree } from './remove-tree.js';
import {
  isFreeForTarget,
  leftoversOf,
  notAFolder,
  openFolderPath,
  openOrMakeFolder,
  stagingName,
  temporaryName,
} from './restore-target.js';
import { serializeError, type SerializedError } from './thread-protocol.js';

/** What the main thread asks for; `state` holds Int32 `STOP_FLAG`, set to 1 to stop. */
export interface RestoreTask {
  snapshotPath: string;
  manifestSha256: string;
  /** A real path, checked by `resolveRestoreTarget`. */
  target: string;
  paths?: string[];
  overwrite: boolean;
  jobId: string;
  attempt: string;
  state: SharedArrayBuffer;
}

export const STOP_FLAG = 0;

/** How far a restore is: files and bytes written, of the totals the manifest gives for the selection. */
export interface RestoreProgress {
  files: number;
  filesTotal: number;
  bytes: number;
  bytesTotal: number;
}

/** A failure that keeps its code across the thread boundary. */
export interface SerializedFailure {
  code: FailureCode;
  message: string;
  permanent: boolean;
  problems?: FailureProblem[];
}

/** What the thread posts; exactly one `done`, `stopped` or `failed` ends the task. */
export type RestoreMessage =
  | { type: 'progress'; progress: RestoreProgress }
  | { type: 'done'; progress: RestoreProgress }
  | { type: 'stopped' }
  | { type: 'failed'; failure: SerializedFailure }
  | { type: 'failed'; error: SerializedError };

// Progress is posted at most this often; within a big file it moves every chunk.
const PROGRESS_INTERVAL_MS = 100;
// Folders are filled while private and owner-writable; they get their mode once complete.
const FILLING_MODE = 0o700;
const NEW_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
// Opening a snapshot entry: missing, or not the kind the manifest says (a link: ELOOP; ENXIO: a socket).
const SNAPSHOT_MISSING_CODES = new Set(['ENOENT']);
const SNAPSHOT_CHANGED_CODES = new Set(['ELOOP', 'ENOTDIR', 'ENXIO', 'EISDIR']);
// rename(2) over a folder: the target holds a folder where the snapshot has a file or link.
const FOLDER_IN_THE_WAY_CODES = new Set(['EISDIR', 'ENOTEMPTY', 'EEXIST']);
// Errors that a retry would meet again.
const PERMANENT_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENAMETOOLONG', 'ENOTDIR', 'ELOOP']);
const ZEROS = Buffer.alloc(CHUNK_SIZE);
const SEPARATOR = Buffer.from('/');

class RestoreStopped extends Error {
  override readonly name = 'RestoreStopped';
}

/** A folder of the restore: created in (or found in) the target, then filled. */
interface PlannedFolder {
  name: Buffer;
  relative: Buffer;
  /** Its manifest entry; none for the root (or a folder the manifest leaves out). */
  entry: ManifestEntry | undefined;
  /** Selected by the request (gets its mode and mtime even when it exists); else only on the way. */
  selected: boolean;
  folders: PlannedFolder[];
  leaves: PlannedLeaf[];
}

/** A file or link to restore. */
interface PlannedLeaf {
  name: Buffer;
  relative: Buffer;
  entry: ManifestEntry;
}

interface Plan {
  root: PlannedFolder;
  filesTotal: number;
  bytesTotal: number;
}

/**
 * The tree of what to restore: every entry of the manifest, or only those at or below one of
 * `paths`, with the folders on their way. Fails with `RESTORE_FAILED` for a path the snapshot
 * does not hold, and `SNAPSHOT_DAMAGED` for a manifest that contradicts itself.
 */
export function planRestore(
  entries: readonly ManifestEntry[],
  paths: readonly string[] | undefined,
  snapshotPath: string,
): Plan {
  const byKey = new Map<string, ManifestEntry>();
  for (const entry of entries) {
    const relative = entryPathBytes(entry);
    const key = keyOf(relative);
    if (!isPlainRelative(key) || byKey.has(key)) {
      throw damaged(snapshotPath, relative, 'changed', 'its manifest lists it twice or by an unsafe path');
    }
    byKey.set(key, entry);
  }
  const requested = requestedKeys(paths, byKey, snapshotPath);
  const root: PlannedFolder = newFolder(Buffer.alloc(0), undefined, requested === undefined);
  const folders = new Map<string, PlannedFolder>([['', root]]);
  const folderAt = (key: string): PlannedFolder => {
    const known = folders.get(key);
    if (known) return known;
    const entry = byKey.get(key);
    if (entry !== undefined && entry.type !== 'dir') {
      throw damaged(
        snapshotPath,
        Buffer.from(key, 'latin1'),
        'changed',
        'its manifest lists entries below a non-folder',
      );
    }
    const folder = newFolder(Buffer.from(key, 'latin1'), entry, false);
    folderAt(parentKey(key)).folders.push(folder);
    folders.set(key, folder);
    return folder;
  };
  let filesTotal = 0;
  let bytesTotal = 0;
  for (const [key, entry] of byKey) {
    if (requested !== undefined && !isSelected(key, requested)) continue;
    if (entry.type === 'dir') {
      folderAt(key).selected = true;
      continue;
    }
    const relative = Buffer.from(key, 'latin1');
    folderAt(parentKey(key)).leaves.push({ name: baseName(relative), relative, entry });
    if (entry.type === 'file') {
      filesTotal += 1;
      bytesTotal += entry.size;
    }
  }
  return { root, filesTotal, bytesTotal };
}

/** The manifest keys the request names, or undefined for the whole snapshot. */
function requestedKeys(
  paths: readonly string[] | undefined,
  byKey: ReadonlyMap<string, ManifestEntry>,
  snapshotPath: string,
): Set<string> | undefined {
  if (paths === undefined) return undefined;
  const keys = new Set<string>();
  for (const requested of paths) {
    const segments = requested.split('/').filter((segment) => segment !== '' && segment !== '.');
    // The snapshot root itself: everything.
    if (segments.length === 0) return undefined;
    const key = keyOf(Buffer.from(segments.join('/')));
    if (segments.includes('..') || !byKey.has(key)) {
      throw new JobFailure('RESTORE_FAILED', `path ${requested} is not in snapshot ${snapshotPath}`, true);
    }
    keys.add(key);
  }
  return keys;
}

/** Whether `key` is one of `requested` or lies below one. */
function isSelected(key: string, requested: ReadonlySet<string>): boolean {
  if (requested.has(key)) return true;
  for (let at = key.lastIndexOf('/'); at > 0; at = key.lastIndexOf('/', at - 1)) {
    if (requested.has(key.slice(0, at))) return true;
  }
  return false;
}

function newFolder(relative: Buffer, entry: ManifestEntry | undefined, selected: boolean): PlannedFolder {
  return { name: baseName(relative), relative, entry, selected, folders: [], leaves: [] };
}

/** Bytes as a map key, one character per byte, so names that are not UTF-8 stay exact. */
function keyOf(bytes: Buffer): string {
  return bytes.toString('latin1');
}

function parentKey(key: string): string {
  const at = key.lastIndexOf('/');
  return at < 0 ? '' : key.slice(0, at);
}

function baseName(relative: Buffer): Buffer {
  return relative.subarray(relative.lastIndexOf(SEPARATOR) + 1);
}

/** No empty, `.` or `..` segment, no leading `/`: each name stays inside its folder. */
function isPlainRelative(key: string): boolean {
  return key.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

/** A permanent `SNAPSHOT_DAMAGED` naming the entry `relative` of the snapshot. */
function damaged(snapshotPath: string, relative: Buffer, problem: FailureProblem['problem'], why: string): JobFailure {
  const shown = relative.toString();
  const listed: FailureProblem = isUtf8(relative)
    ? { path: shown, problem }
    : { path: shown, pathBase64: relative.toString('base64'), problem };
  return new JobFailure(
    'SNAPSHOT_DAMAGED',
    `${shown} in snapshot ${snapshotPath} does not match its manifest: ${why}`,
    true,
    {
      problems: [listed],
    },
  );
}

interface Hooks {
  shouldStop: () => boolean;
  onProgress: (progress: Readonly<RestoreProgress>) => void;
}

/**
 * Restores the snapshot as `task` says. A new target is written into a staging folder beside
 * it and renamed into place once complete, or removed; an overwrite replaces each entry by a
 * rename of a complete new one. Throws `RestoreStopped` once `shouldStop` said so.
 */
async function restore(task: RestoreTask, hooks: Hooks): Promise<RestoreProgress> {
  const entries = await readManifest(task.snapshotPath, task.manifestSha256);
  const plan = planRestore(entries, task.paths, task.snapshotPath);
  const restorer = new SyncRestorer(task, plan, hooks);
  const snapshot = openSnapshotRoot(task.snapshotPath);
  try {
    const parent = openFolderPath(path.dirname(task.target));
    try {
      for (const leftover of leftoversOf(parent, task.jobId, path.basename(task.target))) {
        await removeTree(childOf(parent, leftover));
      }
      if (task.overwrite) restorer.overwrite(snapshot, parent);
      else await intoNewTarget(task, restorer, snapshot, parent);
    } finally {
      fs.closeSync(parent);
    }
  } finally {
    fs.closeSync(snapshot);
  }
  return restorer.progress;
}

/** A new target: staged beside it, then renamed into place; nothing is left when it fails. */
async function intoNewTarget(
  task: RestoreTask,
  restorer: SyncRestorer,
  snapshot: number,
  parent: number,
): Promise<void> {
  const base = Buffer.from(path.basename(task.target));
  if (!isFreeForTarget(parent, base)) throw targetExists(task.target);
  const staging = Buffer.from(stagingName(task.target, task.jobId, task.attempt));
  try {
    restorer.intoStaging(snapshot, parent, staging);
    try {
      fs.renameSync(entryPath(folderPrefix(parent), staging), entryPath(folderPrefix(parent), base));
    } catch (error) {
      // Something took the target's place meanwhile (rename(2) replaces only an empty folder).
      if (['ENOTEMPTY', 'EEXIST', 'ENOTDIR', 'EISDIR'].includes(errorCode(error) ?? ''))
        throw targetExists(task.target);
      throw error;
    }
  } catch (error) {
    await removeTree(childOf(parent, staging));
    throw error;
  }
}

function targetExists(target: string): JobFailure {
  return new JobFailure(
    'TARGET_EXISTS',
    `target ${target} already exists and is not an empty folder; restore with overwrite to write into it`,
    true,
  );
}

/** The entry `name` of the open folder `folder`, as a path string for tools that take one. */
function childOf(folder: number, name: Buffer): string {
  return `${fdPath(folder)}/${name.toString()}`;
}

function openSnapshotRoot(snapshotPath: string): number {
  try {
    return fs.openSync(snapshotPath, FOLDER_FLAGS);
  } catch (error) {
    throw new JobFailure(
      'SNAPSHOT_NOT_FOUND',
      `snapshot ${snapshotPath} cannot be opened (${errorCode(error)})`,
      true,
      {
        cause: error,
      },
    );
  }
}

class SyncRestorer {
  readonly progress: RestoreProgress;
  readonly #task: RestoreTask;
  readonly #plan: Plan;
  readonly #hooks: Hooks;
  readonly #keepOwners = keepsOwners();
  readonly #chunk = Buffer.allocUnsafe(CHUNK_SIZE);
  readonly #temporary: Buffer;
  #lastReport = 0;

  constructor(task: RestoreTask, plan: Plan, hooks: Hooks) {
    this.#task = task;
    this.#plan = plan;
    this.#hooks = hooks;
    this.#temporary = temporaryName(task.jobId, task.attempt);
    this.progress = { files: 0, filesTotal: plan.filesTotal, bytes: 0, bytesTotal: plan.bytesTotal };
    hooks.onProgress(this.progress);
  }

  /** Fills the new folder `staging` of `parent`, which must not exist, with the whole plan. */
  intoStaging(snapshot: number, parent: number, staging: Buffer): void {
    this.#checkStop();
    const at = entryPath(folderPrefix(parent), staging);
    fs.mkdirSync(at, { mode: FILLING_MODE });
    const to = fs.openSync(at, FOLDER_FLAGS);
    try {
      this.#fillAndFinish(this.#plan.root, snapshot, to, true);
    } finally {
      fs.closeSync(to);
    }
  }

  /** Writes the plan into the target (made when missing), replacing entries one by one. */
  overwrite(snapshot: number, parent: number): void {
    this.#checkStop();
    const base = Buffer.from(path.basename(this.#task.target));
    const existed = fs.lstatSync(entryPath(folderPrefix(parent), base), { throwIfNoEntry: false }) !== undefined;
    const to = openOrMakeFolder(parent, base, FOLDER_FLAGS);
    if (to === undefined) throw notAFolder(this.#task.target);
    try {
      this.#fillAndFinish(this.#plan.root, snapshot, to, !existed);
    } finally {
      fs.closeSync(to);
    }
  }

  /** Fills the open target folder `to` from the open snapshot folder `from`, then gives it its metadata. */
  #fillAndFinish(folder: PlannedFolder, from: number, to: number, created: boolean): void {
    this.#fill(folder, from, to, created);
    if (folder.selected || created) this.#finishFolder(folder, from, to);
  }

  #fill(folder: PlannedFolder, from: number, to: number, created: boolean): void {
    const fromPrefix = folderPrefix(from);
    const toPrefix = folderPrefix(to);
    if (!created) this.#prepareExisting(folder, to);
    for (const leaf of folder.leaves) {
      this.#checkStop();
      try {
        if (leaf.entry.type === 'file') this.#restoreFile(leaf, fromPrefix, toPrefix);
        else this.#restoreLink(leaf, fromPrefix, toPrefix);
      } catch (error) {
        throw this.#located(error, leaf.relative);
      }
    }
    for (const child of folder.folders) {
      this.#checkStop();
      try {
        const opened = this.#openFolders(child, fromPrefix, to);
        try {
          this.#fillAndFinish(child, opened.from, opened.to, opened.created);
        } finally {
          fs.closeSync(opened.to);
          fs.closeSync(opened.from);
        }
      } catch (error) {
        throw this.#located(error, child.relative);
      }
    }
  }

  /**
   * An existing target folder: temporary files an earlier attempt of this job left are removed,
   * and a selected folder is made owner-writable while filled (it gets its mode afterwards).
   */
  #prepareExisting(folder: PlannedFolder, to: number): void {
    if (folder.leaves.length > 0) {
      for (const leftover of leftoversOf(to, this.#task.jobId)) {
        fs.rmSync(childOf(to, leftover), { force: true, recursive: true });
      }
    }
    if (!folder.selected || this.#keepOwners) return;
    const { mode } = fs.fstatSync(to);
    if ((mode & FILLING_MODE) !== FILLING_MODE) fs.fchmodSync(to, (mode & 0o7777) | FILLING_MODE);
  }

  /** Opens a folder in the snapshot and its counterpart in the target, made when missing. */
  #openFolders(folder: PlannedFolder, fromPrefix: Buffer, to: number): { from: number; to: number; created: boolean } {
    const from = this.#openSnapshotEntry(fromPrefix, folder.name, FOLDER_FLAGS, folder.relative);
    try {
      const at = entryPath(folderPrefix(to), folder.name);
      const existed = fs.lstatSync(at, { throwIfNoEntry: false }) !== undefined;
      const opened = openOrMakeFolder(to, folder.name, FOLDER_FLAGS, FILLING_MODE);
      if (opened === undefined) throw notAFolder(this.#targetPath(folder.relative));
      return { from, to: opened, created: !existed };
    } catch (error) {
      fs.closeSync(from);
      throw error;
    }
  }

  /** Gives a filled folder its owner, mode and mtime: last, since filling it changed its mtime. */
  #finishFolder(folder: PlannedFolder, from: number, to: number): void {
    const needsStats = folder.entry === undefined || this.#keepOwners;
    const stats = needsStats ? fs.fstatSync(from) : undefined;
    const ownerKept = stats !== undefined && this.#own(() => fs.fchownSync(to, stats.uid, stats.gid));
    const mode = folder.entry?.mode ?? stats?.mode ?? FILLING_MODE;
    const mtime = folder.entry?.mtime ?? stats?.mtimeMs ?? Date.now();
    fs.fchmodSync(to, copyMode(mode, ownerKept));
    fs.futimesSync(to, new Date(), mtime / 1000);
  }

  #restoreFile(leaf: PlannedLeaf, fromPrefix: Buffer, toPrefix: Buffer): void {
    const { entry } = leaf;
    const from = this.#openSnapshotEntry(fromPrefix, leaf.name, FILE_FLAGS, leaf.relative);
    try {
      const stats = fs.fstatSync(from);
      if (!stats.isFile()) throw this.#damaged(leaf.relative, 'changed', 'it is no longer a file');
      if (stats.size !== entry.size) {
        throw this.#damaged(leaf.relative, 'changed', `it holds ${stats.size} bytes, the manifest says ${entry.size}`);
      }
      const written = this.#task.overwrite ? this.#temporary : leaf.name;
      const at = entryPath(toPrefix, written);
      const out = this.#create(at, () => fs.openSync(at, NEW_FILE_FLAGS, 0o600));
      try {
        if (entry.noData) fs.ftruncateSync(out, entry.size);
        else this.#copyChecked(from, out, stats, leaf);
        const ownerKept = this.#own(() => fs.fchownSync(out, stats.uid, stats.gid));
        fs.fchmodSync(out, copyMode(entry.mode, ownerKept));
        fs.futimesSync(out, new Date(), entry.mtime / 1000);
      } catch (error) {
        fs.closeSync(out);
        // A new target's staging folder goes as a whole; in place, only the temporary file.
        if (this.#task.overwrite) fs.rmSync(at, { force: true });
        throw error;
      }
      fs.closeSync(out);
      if (this.#task.overwrite) this.#putInPlace(toPrefix, leaf);
    } finally {
      fs.closeSync(from);
    }
    this.progress.files += 1;
    if (entry.noData) this.progress.bytes += entry.size;
    this.#report();
  }

  /**
   * Copies the open snapshot file `from` into the new file `out`, hashing what it reads:
   * a size or SHA-256 other than the manifest's fails as `SNAPSHOT_DAMAGED`. Zero chunks of a
   * sparse file stay holes.
   */
  #copyChecked(from: number, out: number, stats: Stats, leaf: PlannedLeaf): void {
    const hash = createHash('sha256');
    const holes = looksSparse(stats);
    const buffer = this.#chunk;
    let position = 0;
    for (;;) {
      const read = fs.readSync(from, buffer, 0, buffer.length, position);
      if (read === 0) break;
      if (position + read > leaf.entry.size) break;
      hash.update(buffer.subarray(0, read));
      if (!holes || buffer.compare(ZEROS, 0, read, 0, read) !== 0) {
        for (let at = 0; at < read;) at += fs.writeSync(out, buffer, at, read - at, position + at);
      }
      position += read;
      this.progress.bytes += read;
      this.#report();
      // A short read at the known size is the end, which spares a small file a second read.
      if (read < buffer.length && position >= leaf.entry.size) break;
      this.#checkStop();
    }
    if (holes) fs.ftruncateSync(out, position);
    const sha256 = hash.digest('hex');
    if (position !== leaf.entry.size || sha256 !== leaf.entry.sha256) {
      throw this.#damaged(
        leaf.relative,
        'changed',
        `its contents differ (SHA-256 ${sha256}, manifest ${leaf.entry.sha256})`,
      );
    }
  }

  #restoreLink(leaf: PlannedLeaf, fromPrefix: Buffer, toPrefix: Buffer): void {
    const at = entryPath(toPrefix, this.#task.overwrite ? this.#temporary : leaf.name);
    this.#create(at, () => fs.symlinkSync(linkTargetBytes(leaf.entry), at));
    try {
      if (this.#keepOwners) {
        // Owners are not in the manifest: the snapshot's link has them.
        const stats = fs.lstatSync(entryPath(fromPrefix, leaf.name), { throwIfNoEntry: false });
        if (!stats?.isSymbolicLink())
          throw this.#damaged(leaf.relative, stats ? 'changed' : 'missing', 'it is no longer a link');
        this.#own(() => fs.lchownSync(at, stats.uid, stats.gid));
      }
      fs.lutimesSync(at, new Date(), leaf.entry.mtime / 1000);
    } catch (error) {
      fs.rmSync(at, { force: true });
      throw error;
    }
    if (this.#task.overwrite) this.#putInPlace(toPrefix, leaf);
  }

  /** Creates a new entry at `at`; a leftover of a crashed attempt of this job under that name is replaced. */
  #create<T>(at: Buffer, make: () => T): T {
    try {
      return make();
    } catch (error) {
      if (errorCode(error) !== 'EEXIST' || !this.#task.overwrite) throw error;
      fs.rmSync(at, { force: true });
      return make();
    }
  }

  /** Renames the complete temporary entry over the leaf's name: atomic, whatever was there but a folder. */
  #putInPlace(toPrefix: Buffer, leaf: PlannedLeaf): void {
    const temporary = entryPath(toPrefix, this.#temporary);
    try {
      fs.renameSync(temporary, entryPath(toPrefix, leaf.name));
    } catch (error) {
      fs.rmSync(temporary, { force: true });
      if (!FOLDER_IN_THE_WAY_CODES.has(errorCode(error) ?? '')) throw error;
      throw new JobFailure(
        'INVALID_TARGET',
        `${this.#targetPath(leaf.relative)} is a folder where the snapshot has a ${leaf.entry.type}; it is left as it is`,
        true,
      );
    }
  }

  /** Opens an entry of the snapshot with `flags`: one that is missing or of another kind is damage. */
  #openSnapshotEntry(prefix: Buffer, name: Buffer, flags: number, relative: Buffer): number {
    try {
      return fs.openSync(entryPath(prefix, name), flags);
    } catch (error) {
      const code = errorCode(error) ?? '';
      if (SNAPSHOT_MISSING_CODES.has(code)) throw this.#damaged(relative, 'missing', 'it is missing');
      if (SNAPSHOT_CHANGED_CODES.has(code)) throw this.#damaged(relative, 'changed', `it is of another kind (${code})`);
      throw error;
    }
  }

  /** Runs `chown` when owners are kept; tells whether the entry now has its snapshot's owner. */
  #own(chown: () => void): boolean {
    return this.#keepOwners && tryChown(chown);
  }

  #damaged(relative: Buffer, problem: FailureProblem['problem'], why: string): JobFailure {
    return damaged(this.#task.snapshotPath, relative, problem, why);
  }

  #targetPath(relative: Buffer): string {
    return path.join(this.#task.target, relative.toString());
  }

  /** An error met restoring `relative`, named after the target's entry. */
  #located(error: unknown, relative: Buffer): unknown {
    return toRestoreFailure(error, this.#targetPath(relative));
  }

  #report(): void {
    const now = performance.now();
    if (now - this.#lastReport < PROGRESS_INTERVAL_MS) return;
    this.#lastReport = now;
    this.#hooks.onProgress(this.progress);
  }

  #checkStop(): void {
    if (this.#hooks.shouldStop()) throw new RestoreStopped();
  }
}

/**
 * An error met restoring the entry `where` (a target path) as the job should see it: a
 * `RESTORE_FAILED` naming it, permanent when a retry would meet it again. Failures and
 * stops pass unchanged.
 */
function toRestoreFailure(error: unknown, where: string): unknown {
  if (error instanceof JobFailure || error instanceof RestoreStopped || !(error instanceof Error)) return error;
  const code = errorCode(error);
  const named = namedAfter(error, where) as Error;
  return new JobFailure(
    'RESTORE_FAILED',
    `cannot restore ${where}: ${named.message}`,
    PERMANENT_CODES.has(code ?? ''),
    {
      cause: named,
    },
  );
}

/** Runs one task and tells how it ended. */
export async function runRestoreTask(
  task: RestoreTask,
  post: (message: RestoreMessage) => void,
): Promise<RestoreMessage> {
  const state = new Int32Array(task.state);
  const hooks: Hooks = {
    shouldStop: () => Atomics.load(state, STOP_FLAG) !== 0,
    onProgress: (progress) => post({ type: 'progress', progress: { ...progress } }),
  };
  try {
    return { type: 'done', progress: await restore(task, hooks) };
  } catch (thrown) {
    const error = toRestoreFailure(thrown, task.target);
    if (error instanceof RestoreStopped) return { type: 'stopped' };
    if (error instanceof JobFailure) {
      const { code, message, permanent, problems } = error;
      return {
        type: 'failed',
        failure: problems ? { code, message, permanent, problems } : { code, message, permanent },
      };
    }
    return { type: 'failed', error: serializeError(error) };
  }
}

const port = parentPort;
if (port !== null) {
  port.once('message', (task: RestoreTask) => {
    void runRestoreTask(task, (message) => port.postMessage(message)).then((message) => port.postMessage(message));
  });
}
