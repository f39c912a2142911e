import fs, { constants, type Dir, type Dirent, type Stats } from 'node:fs';
import path from 'node:path';
import {
  MAX_LISTED_WARNINGS,
  emptyCounts,
  type CopyCounts,
  type CopyReport,
  type CopyWarning,
  type CopyWarnings,
} from './copy-counts.js';
import { errorCode } from './errno.js';
import { UnsupportedSourceError } from './unsupported-source.js';

/** A folder's mode and times, as `lstat` gives them. */
export type FolderStats = Pick<Stats, 'mode' | 'atimeMs' | 'mtimeMs'>;

/** A folder handed to another thread: copy `from` into the existing, still private `to`. */
export interface Subtree {
  from: string;
  to: string;
  previous?: string;
  stats: FolderStats;
}

/** Lets a copy hand folders to other threads (see `copyTree`). */
export interface Delegation {
  /** Reserves a thread for one folder; false when none is free. */
  reserve(): boolean;
  /** Hands over a folder after a successful `reserve`. */
  hand(subtree: Subtree): void;
}

export interface SyncCopyOptions {
  /**
   * A complete earlier copy of the same source. A regular file whose counterpart there has the
   * same size, mode and mtime is hard-linked from it instead of copied (as `rsync --link-dest`).
   * Default: none, everything is copied.
   */
  previous?: string;
  /** Checked before each entry; once it returns true the copy throws `CopyStopped`. Default: never. */
  shouldStop?: () => boolean;
  /** Called after each file, link, directory or skipped entry, with the running counts (not a copy). */
  onEntry?: (counts: Readonly<CopyCounts>) => void;
  /** Hands subfolders to other threads while some are free. Default: everything on this thread. */
  delegation?: Delegation;
}

/** Thrown by `copyTreeSync` and `measureTreeSync` once `shouldStop` said so. */
export class CopyStopped extends Error {
  override readonly name = 'CopyStopped';
  constructor() {
    super('copy stopped');
  }
}

// Directories are filled while private and owner-writable, so a read-only source
// directory can still be filled; they get their real mode once complete.
const FILLING_MODE = 0o700;
// Entries read per readdir batch: memory stays bounded whatever the directory's size.
const DIR_BUFFER_SIZE = 128;
// Node sets times from a double of seconds, so a copy's mtime is the source's to within a
// microsecond, never exactly: two mtimes closer than this are the same.
const SAME_MTIME_MS = 0.001;
// A failed hard link leaves the file to be copied instead: the previous snapshot's file
// vanished or was replaced, has too many links already, or lives on another file system.
const LINK_FALLBACK_CODES = new Set(['ENOENT', 'ENOTDIR', 'EMLINK', 'EXDEV', 'EPERM', 'EACCES']);

const noStop = (): boolean => false;
const noReport = (): void => undefined;

/**
 * Copies `source` (a real path: a directory or a regular file) into `target`, which must not
 * exist yet, with synchronous calls: on a warm cache they cost about half as much per file as
 * their async forms, so this is meant to run on a worker thread (see `copyTree`).
 *
 * A directory's contents land directly in `target`; a file lands in `target` under its base
 * name. Files keep their mode and times, directories their mode and times, links their target
 * text (never followed) and times; FIFOs, sockets and devices are skipped and counted, never
 * opened. An entry below the source that vanishes, or a file that cannot be opened for reading,
 * is left out and reported in `warnings`; the source itself missing is an error.
 *
 * Memory does not grow with the number of entries: the walk is depth-first and holds one
 * open directory per level. Throws on the first other error, leaving the partial target.
 */
export function copyTreeSync(source: string, target: string, options: SyncCopyOptions = {}): CopyReport {
  return new SyncTreeCopier(source, options).run(target);
}

/**
 * Copies a folder handed over by another thread's `copyTreeSync` (or `copySubtreeSync`) into
 * its existing target, then gives the target its mode and times. `source` is the root of the
 * whole copy, against which warnings are named.
 */
export function copySubtreeSync(source: string, subtree: Subtree, options: SyncCopyOptions = {}): CopyReport {
  return new SyncTreeCopier(source, options).runSubtree(subtree);
}

class SyncTreeCopier {
  readonly #counts: CopyCounts = emptyCounts();
  readonly #warnings: CopyWarnings = { count: 0, items: [] };
  readonly #source: string;
  readonly #previous: string | undefined;
  readonly #shouldStop: () => boolean;
  readonly #onEntry: (counts: Readonly<CopyCounts>) => void;
  readonly #delegation: Delegation | undefined;

  constructor(source: string, options: SyncCopyOptions) {
    this.#source = source;
    this.#previous = options.previous;
    this.#shouldStop = options.shouldStop ?? noStop;
    this.#onEntry = options.onEntry ?? noReport;
    this.#delegation = options.delegation;
  }

  run(target: string): CopyReport {
    this.#checkStop();
    const stats = fs.lstatSync(this.#source);
    if (stats.isFile()) {
      const name = path.basename(this.#source);
      fs.mkdirSync(target);
      const previous = this.#previous === undefined ? undefined : join(this.#previous, name);
      this.#copyFile(this.#source, join(target, name), previous, stats);
    } else if (stats.isDirectory()) {
      // The root's errors are never warnings: a vanished source is SOURCE_NOT_FOUND.
      const dir = fs.opendirSync(this.#source, { bufferSize: DIR_BUFFER_SIZE });
      this.#copyDirectory(dir, target, this.#previous, stats, true);
    } else {
      throw new UnsupportedSourceError(this.#source);
    }
    return this.#report();
  }

  runSubtree({ from, to, previous, stats }: Subtree): CopyReport {
    this.#checkStop();
    let dir: Dir | undefined;
    try {
      dir = fs.opendirSync(from, { bufferSize: DIR_BUFFER_SIZE });
    } catch (error) {
      // Vanished after it was handed over: its copy stays empty.
      if (errorCode(error) !== 'ENOENT') throw error;
      this.#warn(from, 'ENOENT');
    }
    if (dir) this.#copyDirectory(dir, to, previous, stats, false);
    else finishDirectory(to, stats);
    this.#counts.dirs += 1;
    this.#onEntry(this.#counts);
    return this.#report();
  }

  #report(): CopyReport {
    return { ...this.#counts, warnings: this.#warnings };
  }

  /** Fills the directory `dst` (created here unless `create` is false) from the open `dir`, then gives it `stats`' mode and times. */
  #copyDirectory(dir: Dir, dst: string, previous: string | undefined, stats: FolderStats, create: boolean): void {
    try {
      if (create) fs.mkdirSync(dst, { mode: FILLING_MODE });
      for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
        this.#checkStop();
        this.#visit(entry, dir.path, dst, previous);
      }
    } finally {
      dir.closeSync();
    }
    finishDirectory(dst, stats);
  }

  #visit(entry: Dirent, srcDir: string, dstDir: string, previousDir: string | undefined): void {
    if (entry.isFIFO() || entry.isSocket() || entry.isCharacterDevice() || entry.isBlockDevice()) {
      this.#skip();
      return;
    }
    const from = join(srcDir, entry.name);
    // The listing's kind may be stale or unknown (some file systems do not give it): lstat decides.
    const stats = fs.lstatSync(from, { throwIfNoEntry: false });
    if (stats === undefined) {
      this.#warn(from, 'ENOENT');
      return;
    }
    const to = join(dstDir, entry.name);
    const previous = previousDir === undefined ? undefined : join(previousDir, entry.name);
    if (stats.isFile()) this.#copyFile(from, to, previous, stats);
    else if (stats.isDirectory()) this.#copySubdirectory(from, to, previous, stats);
    else if (stats.isSymbolicLink()) this.#copyLink(from, to, stats);
    else this.#skip();
  }

  #copySubdirectory(from: string, to: string, previous: string | undefined, stats: Stats): void {
    let dir: Dir;
    try {
      // Opened before the copy is created, so a directory that vanished leaves nothing behind.
      dir = fs.opendirSync(from, { bufferSize: DIR_BUFFER_SIZE });
    } catch (error) {
      // An unreadable directory stays an error (SOURCE_UNREADABLE): a whole subtree would be missing.
      if (errorCode(error) !== 'ENOENT') throw error;
      this.#warn(from, 'ENOENT');
      return;
    }
    if (this.#delegation?.reserve()) {
      dir.closeSync();
      // Created here, so this thread's parent folder is complete when it finishes it; another
      // thread writing inside it later does not change the parent's mtime.
      fs.mkdirSync(to, { mode: FILLING_MODE });
      const { mode, atimeMs, mtimeMs } = stats;
      this.#delegation.hand({ from, to, previous, stats: { mode, atimeMs, mtimeMs } });
      return;
    }
    this.#copyDirectory(dir, to, previous, stats, true);
    this.#counts.dirs += 1;
    this.#onEntry(this.#counts);
  }

  #copyFile(from: string, to: string, previous: string | undefined, stats: Stats): void {
    if (previous !== undefined && linkUnchanged(previous, to, stats)) {
      this.#counts.filesLinked += 1;
      this.#counts.bytesLinked += stats.size;
    } else {
      try {
        // EXCL: the target is new, and it spares ext4 the truncate-and-flush of an
        // overwrite. copyFile gives the copy the source's mode.
        fs.copyFileSync(from, to, constants.COPYFILE_EXCL);
      } catch (error) {
        const code = sourceProblem(error, from);
        if (code === undefined) throw error;
        this.#warn(from, code);
        return;
      }
      fs.utimesSync(to, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    }
    this.#counts.files += 1;
    this.#counts.bytes += stats.size;
    this.#onEntry(this.#counts);
  }

  #copyLink(from: string, to: string, stats: Stats): void {
    let linkTarget: Buffer;
    try {
      // As bytes, so a link target that is not valid UTF-8 survives unchanged.
      linkTarget = fs.readlinkSync(from, { encoding: 'buffer' });
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      this.#warn(from, 'ENOENT');
      return;
    }
    fs.symlinkSync(linkTarget, to);
    fs.lutimesSync(to, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    this.#counts.links += 1;
    this.#onEntry(this.#counts);
  }

  #skip(): void {
    this.#counts.skipped += 1;
    this.#onEntry(this.#counts);
  }

  #warn(from: string, code: CopyWarning['code']): void {
    this.#warnings.count += 1;
    if (this.#warnings.items.length < MAX_LISTED_WARNINGS) {
      this.#warnings.items.push({ path: path.relative(this.#source, from), code });
    }
  }

  #checkStop(): void {
    if (this.#shouldStop()) throw new CopyStopped();
  }
}

/** Gives a filled folder its mode and times: last, because writing its entries changed its mtime. */
function finishDirectory(dst: string, stats: FolderStats): void {
  fs.chmodSync(dst, stats.mode & 0o7777);
  fs.utimesSync(dst, seconds(stats.atimeMs), seconds(stats.mtimeMs));
}

/**
 * Hard-links `previous` to `to` when it is the same regular file as `stats` describes: same
 * size, same mode (a link shares its inode's mode) and same mtime (and its times too).
 */
function linkUnchanged(previous: string, to: string, stats: Stats): boolean {
  let earlier: Stats | undefined;
  try {
    earlier = fs.lstatSync(previous, { throwIfNoEntry: false });
  } catch {
    // ENOTDIR, EACCES…: whatever is there cannot serve; copy.
    return false;
  }
  if (
    earlier === undefined ||
    !earlier.isFile() ||
    earlier.size !== stats.size ||
    earlier.mode !== stats.mode ||
    Math.abs(earlier.mtimeMs - stats.mtimeMs) >= SAME_MTIME_MS
  ) {
    return false;
  }
  try {
    fs.linkSync(previous, to);
    return true;
  } catch (error) {
    if (LINK_FALLBACK_CODES.has(errorCode(error) ?? '')) return false;
    throw error;
  }
}

/**
 * Tells whether a failed copyFile failed on the source's side: it vanished (`ENOENT`) or
 * cannot be opened for reading (`EACCES`). The error alone does not say which of the two
 * paths it met, so the source is probed again; this runs only when a copy failed.
 */
function sourceProblem(error: unknown, from: string): CopyWarning['code'] | undefined {
  const code = errorCode(error);
  if (code === 'ENOENT') {
    try {
      return fs.lstatSync(from, { throwIfNoEntry: false }) === undefined ? 'ENOENT' : undefined;
    } catch (probeError) {
      return errorCode(probeError) === 'ENOTDIR' ? 'ENOENT' : undefined;
    }
  }
  if (code === 'EACCES') {
    try {
      fs.closeSync(fs.openSync(from, 'r'));
      return undefined;
    } catch (probeError) {
      return errorCode(probeError) === 'EACCES' ? 'EACCES' : undefined;
    }
  }
  return undefined;
}

// Paths here are absolute and normal and names never hold a separator, so plain
// concatenation does what path.join would, without its normalising cost per entry.
function join(dir: string, name: string): string {
  return dir.endsWith(path.sep) ? dir + name : dir + path.sep + name;
}

// utimes takes seconds; from the *Ms fields (which keep the sub-millisecond part),
// the copy's times match the source's to well under a microsecond.
function seconds(ms: number): number {
  return ms / 1000;
}
