// A restore as it runs on its own worker thread (started by restore-snapshot.ts): synchronous
// file system calls, which cost about half their async forms per file, off the main thread's
// event loop. Every entry of the snapshot and of the target is reached relative to its open
// parent folder (open-at.ts), never through a link.
import fs, { constants, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { JobFailure, type FailureProblem } from '@coffer/shared/failure';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { errorCode } from './errno.js';
import { CHUNK_SIZE, copyData, looksSparse } from './file-data.js';
import { entryPathBytes, linkTargetBytes, readManifest } from './manifest-file.js';
import { displayPath } from './manifest-lines.js';
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
import { unfinished, type Unfinished } from './thread-failure.js';

/** What a restore is asked to do; `state` holds Int32 `STOP_FLAG`, set to 1 to stop every thread of it. */
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

/**
 * The steps of a restore, one message each, in order: every thread `load`s the task (reads the
 * manifest, plans); thread 0 `prepare`s the target; every thread `fill`s its part; thread 0
 * `finish`es (folders' metadata, a new target renamed into place), or `discard`s a new target's
 * staging folder after a failure or a stop.
 */
export type RestoreCommand =
  | { kind: 'load'; task: RestoreTask }
  | { kind: 'prepare' }
  | { kind: 'fill'; part: number; parts: number }
  | { kind: 'finish'; created: number[] }
  | { kind: 'discard' };

/** How far a restore is: files and bytes written, of the totals the manifest gives for the selection. */
export interface RestoreProgress {
  files: number;
  filesTotal: number;
  bytes: number;
  bytesTotal: number;
  /** The entry a thread has in flight (or just restored), relative to the snapshot, as display text; null when none. */
  current: string | null;
}

/** The files and bytes one thread has written. */
export type PartProgress = Pick<RestoreProgress, 'files' | 'bytes'>;

/** What a step ends with: `load` gives the totals, `fill` its counts and the folders it made. */
export interface StepResult {
  totals?: Pick<RestoreProgress, 'filesTotal' | 'bytesTotal'>;
  progress?: PartProgress;
  created?: number[];
}

/** What a thread posts; exactly one `done`, `stopped` or `failed` ends each step. */
export type RestoreMessage =
  | { type: 'progress'; progress: PartProgress; current: string | null }
  | { type: 'done'; result: StepResult }
  | Unfinished;

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
// rename(2) of the staging folder: the target's place was taken meanwhile.
const TAKEN_CODES = new Set(['ENOTEMPTY', 'EEXIST', 'ENOTDIR', 'EISDIR']);
const ROOT_INDEX = 0;
const SEPARATOR = Buffer.from('/');

class RestoreStopped extends Error {
  override readonly name = 'RestoreStopped';
}

/** A folder of the restore: created in (or found in) the target, then filled. */
interface PlannedFolder {
  /** Its place in a depth-first walk of the plan's folders (the root is 0). */
  index: number;
  /** The highest `index` in its subtree. */
  last: number;
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
  /** By `index`: how much work a folder's own entries are, to share it between threads. */
  weights: number[];
}

/** The folders whose entries a thread restores: those with `first <= index < end`. */
interface PartRange {
  first: number;
  end: number;
}

// A file costs about as much as this many bytes of data (opens, metadata), when sharing work out.
const FILE_COST_BYTES = 64 * 1024;

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
  const weights: number[] = [];
  numberFolders(root, weights);
  return { root, filesTotal, bytesTotal, weights };
}

/** Gives `folder` and its subtree their depth-first `index` and `last`, and records their weights. */
function numberFolders(folder: PlannedFolder, weights: number[]): void {
  folder.index = weights.length;
  weights.push(folder.leaves.reduce((sum, leaf) => sum + FILE_COST_BYTES + leaf.entry.size, 0));
  for (const child of folder.folders) numberFolders(child, weights);
  folder.last = weights.length - 1;
}

/** The folders of part `part` of `parts`: consecutive in the walk, of about equal weight. */
function partRange(plan: Plan, part: number, parts: number): PartRange {
  const total = plan.weights.reduce((sum, weight) => sum + weight, 0);
  const bounds: number[] = [0];
  let sum = 0;
  plan.weights.forEach((weight, index) => {
    sum += weight;
    while (bounds.length < parts && sum >= (total * bounds.length) / parts) bounds.push(index + 1);
  });
  while (bounds.length <= parts) bounds.push(plan.weights.length);
  return { first: bounds[part] ?? 0, end: bounds[part + 1] ?? plan.weights.length };
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
  return { index: 0, last: 0, name: baseName(relative), relative, entry, selected, folders: [], leaves: [] };
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
  const shown = displayPath(relative);
  return new JobFailure(
    'SNAPSHOT_DAMAGED',
    `${shown.path} in snapshot ${snapshotPath} does not match its manifest: ${why}`,
    true,
    {
      problems: [{ ...shown, problem }],
    },
  );
}

interface Hooks {
  shouldStop: () => boolean;
  /** `current`: the entry in flight (or just restored), relative to the snapshot, as display text. */
  onProgress: (progress: Readonly<PartProgress>, current: string | null) => void;
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

/**
 * One part of a restore, run by one thread: every thread plans the whole restore, walks the
 * folders on the way to its own and restores the files and links of its own folders (a
 * folder's entries all go to one thread, so temporary names never meet). Thread 0 alone
 * prepares the target first and gives folders their metadata last, once every part is done.
 */
class SyncRestorer {
  readonly progress: PartProgress = { files: 0, bytes: 0 };
  readonly #task: RestoreTask;
  readonly #plan: Plan;
  readonly #hooks: Hooks;
  readonly #keepOwners = keepsOwners();
  readonly #chunk = Buffer.allocUnsafe(CHUNK_SIZE);
  readonly #temporary: Buffer;
  readonly #base: Buffer;
  readonly #staging: Buffer;
  // Restored entries were accessed now: their atime, in seconds.
  readonly #now = Date.now() / 1000;
  readonly #created = new Set<number>();
  #lastReport = 0;
  /** The leaf in flight (or just restored): decoded for display only when progress is posted. */
  #current: PlannedLeaf | undefined;

  constructor(task: RestoreTask, plan: Plan, hooks: Hooks) {
    this.#task = task;
    this.#plan = plan;
    this.#hooks = hooks;
    this.#temporary = temporaryName(task.jobId, task.attempt);
    this.#base = Buffer.from(path.basename(task.target));
    this.#staging = Buffer.from(stagingName(task.target, task.jobId, task.attempt));
  }

  /**
   * Removes what earlier attempts of the job left beside the target, then makes the folder
   * the restore writes in: a new, private staging folder, or (overwrite) the target itself.
   */
  async prepare(): Promise<void> {
    await this.#inParent(async (parent) => {
      for (const leftover of leftoversOf(parent, this.#task.jobId, this.#base.toString())) {
        await removeTree(childOf(parent, leftover));
      }
      this.#checkStop();
      if (!this.#task.overwrite) {
        if (!isFreeForTarget(parent, this.#base)) throw targetExists(this.#task.target);
        fs.mkdirSync(entryPath(folderPrefix(parent), this.#staging), { mode: FILLING_MODE });
        return;
      }
      const opened = openOrMakeFolder(parent, this.#base, FOLDER_FLAGS);
      if (opened === undefined) throw notAFolder(this.#task.target);
      fs.closeSync(opened.fd);
      if (opened.created) this.#created.add(ROOT_INDEX);
    });
  }

  /** Restores the files and links of the folders of part `part` of `parts`; tells which folders it made. */
  fill(part: number, parts: number): number[] {
    const range = partRange(this.#plan, part, parts);
    this.#inRoots((from, to) => this.#fill(this.#plan.root, from, to, range));
    return [...this.#created];
  }

  /**
   * Gives folders their owner, mode and mtime, contents first (writing in a folder changes its
   * mtime): the selected ones, and those the restore made (`created`, by index); then puts a new
   * target in place.
   */
  finish(created: ReadonlySet<number>): void {
    this.#inRoots((from, to) => this.#finish(this.#plan.root, from, to, created));
    if (this.#task.overwrite) return;
    this.#inParentSync((parent) => {
      try {
        fs.renameSync(entryPath(folderPrefix(parent), this.#staging), entryPath(folderPrefix(parent), this.#base));
      } catch (error) {
        // Something took the target's place meanwhile (rename(2) replaces only an empty folder).
        if (TAKEN_CODES.has(errorCode(error) ?? '')) throw targetExists(this.#task.target);
        throw error;
      }
    });
  }

  /** Removes the staging folder of a new target that failed or stopped: nothing of it is left. */
  async discard(): Promise<void> {
    if (this.#task.overwrite) return;
    await this.#inParent((parent) => removeTree(childOf(parent, this.#staging)));
  }

  async #inParent(run: (parent: number) => Promise<void>): Promise<void> {
    const parent = openFolderPath(path.dirname(this.#task.target));
    try {
      await run(parent);
    } finally {
      fs.closeSync(parent);
    }
  }

  #inParentSync(run: (parent: number) => void): void {
    const parent = openFolderPath(path.dirname(this.#task.target));
    try {
      run(parent);
    } finally {
      fs.closeSync(parent);
    }
  }

  /** Runs `run` with the snapshot and the folder written in (staging or target) open, never through a link. */
  #inRoots(run: (from: number, to: number) => void): void {
    const from = openSnapshotRoot(this.#task.snapshotPath);
    try {
      this.#inParentSync((parent) => {
        const name = this.#task.overwrite ? this.#base : this.#staging;
        const to = openOrMakeFolder(parent, name, FOLDER_FLAGS, FILLING_MODE, false);
        if (to === undefined) throw notAFolder(path.join(path.dirname(this.#task.target), name.toString()));
        try {
          run(from, to.fd);
        } finally {
          fs.closeSync(to.fd);
        }
      });
    } finally {
      fs.closeSync(from);
    }
  }

  #fill(folder: PlannedFolder, from: number, to: number, range: PartRange): void {
    const fromPrefix = folderPrefix(from);
    const toPrefix = folderPrefix(to);
    if (folder.index >= range.first && folder.index < range.end) {
      this.#prepareExisting(folder, to);
      for (const leaf of folder.leaves) {
        this.#checkStop();
        this.#current = leaf;
        try {
          if (leaf.entry.type === 'file') this.#restoreFile(leaf, fromPrefix, toPrefix);
          else this.#restoreLink(leaf, fromPrefix, toPrefix);
        } catch (error) {
          throw this.#located(error, leaf.relative);
        }
      }
    }
    for (const child of folder.folders) {
      if (child.last < range.first || child.index >= range.end) continue;
      this.#checkStop();
      this.#inChild(child, fromPrefix, to, true, (childFrom, childTo) => this.#fill(child, childFrom, childTo, range));
    }
  }

  #finish(folder: PlannedFolder, from: number, to: number, created: ReadonlySet<number>): void {
    const fromPrefix = folderPrefix(from);
    for (const child of folder.folders) {
      this.#checkStop();
      this.#inChild(child, fromPrefix, to, false, (childFrom, childTo) =>
        this.#finish(child, childFrom, childTo, created),
      );
    }
    if (!this.#task.overwrite || folder.selected || created.has(folder.index)) {
      try {
        this.#finishFolder(folder, from, to);
      } catch (error) {
        throw this.#located(error, folder.relative);
      }
    }
  }

  /** Runs `run` with the folder `folder` open in the snapshot and in the target (made when `make` says). */
  #inChild(
    folder: PlannedFolder,
    fromPrefix: Buffer,
    to: number,
    make: boolean,
    run: (from: number, to: number) => void,
  ): void {
    try {
      const from = this.#openSnapshotEntry(fromPrefix, folder.name, FOLDER_FLAGS, folder.relative);
      try {
        const opened = openOrMakeFolder(to, folder.name, FOLDER_FLAGS, FILLING_MODE, make);
        if (opened === undefined) throw notAFolder(this.#targetPath(folder.relative));
        if (opened.created) this.#created.add(folder.index);
        try {
          run(from, opened.fd);
        } finally {
          fs.closeSync(opened.fd);
        }
      } finally {
        fs.closeSync(from);
      }
    } catch (error) {
      throw this.#located(error, folder.relative);
    }
  }

  /**
   * A folder of an overwrite: temporary files an earlier attempt of this job left are removed,
   * and a selected folder is made owner-writable while filled (it gets its mode afterwards).
   */
  #prepareExisting(folder: PlannedFolder, to: number): void {
    if (!this.#task.overwrite) return;
    if (folder.leaves.length > 0) {
      for (const leftover of leftoversOf(to, this.#task.jobId)) {
        fs.rmSync(childOf(to, leftover), { force: true, recursive: true });
      }
    }
    if (!folder.selected || this.#keepOwners) return;
    const { mode } = fs.fstatSync(to);
    if ((mode & FILLING_MODE) !== FILLING_MODE) fs.fchmodSync(to, (mode & 0o7777) | FILLING_MODE);
  }

  /** Gives a filled folder its owner, mode and mtime (the snapshot folder's when the manifest has none). */
  #finishFolder(folder: PlannedFolder, from: number, to: number): void {
    const needsStats = folder.entry === undefined || this.#keepOwners;
    const stats = needsStats ? fs.fstatSync(from) : undefined;
    const ownerKept = stats !== undefined && this.#own(() => fs.fchownSync(to, stats.uid, stats.gid));
    const mode = folder.entry?.mode ?? stats?.mode ?? FILLING_MODE;
    const mtime = folder.entry?.mtime ?? stats?.mtimeMs ?? Date.now();
    fs.fchmodSync(to, copyMode(mode, ownerKept));
    fs.futimesSync(to, this.#now, mtime / 1000);
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
        fs.futimesSync(out, this.#now, entry.mtime / 1000);
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
   * a size or SHA-256 other than the manifest's fails as `SNAPSHOT_DAMAGED`. Blocks of zeros of
   * a sparse file stay holes.
   */
  #copyChecked(from: number, out: number, stats: Stats, leaf: PlannedLeaf): void {
    const hash = createHash('sha256');
    const before = this.progress.bytes;
    const copied = copyData(from, out, leaf.entry.size, this.#chunk, hash, looksSparse(stats), (done) => {
      this.progress.bytes = before + done;
      this.#report();
      this.#checkStop();
    });
    this.progress.bytes = before + copied;
    this.#report();
    const sha256 = hash.digest('hex');
    if (copied !== leaf.entry.size || sha256 !== leaf.entry.sha256) {
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
      fs.lutimesSync(at, this.#now, leaf.entry.mtime / 1000);
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
    this.#hooks.onProgress(this.progress, this.#current?.relative.toString() ?? null);
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

/** What `workerData` a restore thread is started with. */
export const RESTORE_THREAD_DATA = { restoreThread: true } as const;

function isRestoreThread(data: unknown): boolean {
  return typeof data === 'object' && data !== null && 'restoreThread' in data && data.restoreThread === true;
}

/** Runs the steps of one restore on this thread, one at a time, and tells how each ended. */
export class RestoreSteps {
  #restorer: SyncRestorer | undefined;
  readonly #post: (message: RestoreMessage) => void;
  #target = '';

  constructor(post: (message: RestoreMessage) => void) {
    this.#post = post;
  }

  async run(command: RestoreCommand): Promise<RestoreMessage> {
    try {
      return { type: 'done', result: await this.#step(command) };
    } catch (thrown) {
      const error = toRestoreFailure(thrown, this.#target);
      return unfinished(error, error instanceof RestoreStopped);
    }
  }

  async #step(command: RestoreCommand): Promise<StepResult> {
    if (command.kind === 'load') {
      const { task } = command;
      this.#target = task.target;
      const state = new Int32Array(task.state);
      const entries = await readManifest(task.snapshotPath, task.manifestSha256);
      const plan = planRestore(entries, task.paths, task.snapshotPath);
      this.#restorer = new SyncRestorer(task, plan, {
        shouldStop: () => Atomics.load(state, STOP_FLAG) !== 0,
        onProgress: (progress, current) => this.#post({ type: 'progress', progress: { ...progress }, current }),
      });
      return { totals: { filesTotal: plan.filesTotal, bytesTotal: plan.bytesTotal } };
    }
    const restorer = this.#restorer;
    if (restorer === undefined) throw new Error(`restore step ${command.kind} before load`);
    switch (command.kind) {
      case 'prepare':
        await restorer.prepare();
        return {};
      case 'fill': {
        const created = restorer.fill(command.part, command.parts);
        return { created, progress: { ...restorer.progress } };
      }
      case 'finish':
        restorer.finish(new Set(command.created));
        return {};
      case 'discard':
        await restorer.discard();
        return {};
    }
  }
}

// Only on a thread started as a restore thread: the main thread imports this module too.
const port = parentPort;
if (port !== null && isRestoreThread(workerData)) {
  const steps = new RestoreSteps((message) => port.postMessage(message));
  port.on('message', (command: RestoreCommand) => {
    void steps.run(command).then((message) => port.postMessage(message));
  });
}
