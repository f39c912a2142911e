import fs, { constants, type BigIntStats, type Dirent, type Stats } from 'node:fs';
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
import { excludeMatcher, type ExcludeMatcher } from './exclude-matcher.js';
import { LinkRegistry, linkRegistryOf } from './hard-links.js';
import {
  FILE_FLAGS,
  FOLDER_FLAGS,
  LOOKUP_FLAGS,
  childPath,
  entryPath,
  folderPrefix,
  isSpecial,
  listFolder,
  namedAfter,
  openIfThere,
  openSourceRoot,
} from './open-at.js';
import { copyMode, keepsOwners, tryChown } from './owners.js';
import { MAX_PATH_BYTES, PathTooLongError } from './path-too-long.js';
import { CHUNK_SIZE, copyData, looksSparse, type BetweenChunks } from './file-data.js';
import { checksumContents, checksumOfFile } from './file-checksum.js';
import { sameMtime } from './file-times.js';
import { displayPath, folderLine, linkLine, type Checksum, type CopyStats } from './manifest-lines.js';
import { ManifestPart, inPreviousManifest, ofRegisteredInode, type ChecksumSource } from './manifest-parts.js';
import { PreviousIndexReader, type PreviousIndex } from './previous-index.js';

/** A folder's mode, owner and times, as `fstat` gives them. */
export type FolderStats = Pick<Stats, 'mode' | 'uid' | 'gid' | 'atimeMs' | 'mtimeMs'>;

/**
 * A folder handed to another thread: copy the open folder `fd` into the existing, still
 * private folder `to`. The thread that runs it closes `fd` and `previousFd` (file descriptors
 * are shared by all threads of the process), so it copies the folder that was opened, whatever
 * its path leads to by then.
 */
export interface Subtree {
  /** The source folder, open (`FOLDER_FLAGS`). */
  fd: number;
  /** Its counterpart in the previous copy, open for lookups only, if it has one. */
  previousFd?: number;
  /** Whether that counterpart is unchanged since the previous manifest was written (see `Folder`). */
  previousTrusted?: boolean;
  /** Its path below the source, as bytes (structured cloning turns a Buffer into a Uint8Array). */
  relative: Uint8Array;
  /** Its copy, as bytes. */
  to: Uint8Array;
  stats: FolderStats;
}

/** Lets a copy hand folders to other threads (see `copyTree`). */
export interface Delegation {
  /** Reserves a thread for one folder; false when none is free. */
  reserve(): boolean;
  /** Hands over a folder after a successful `reserve`; the subtree's fds are the receiver's. */
  hand(subtree: Subtree): void;
}

/** Where one copy task writes its manifest lines (see `ManifestPart`). */
export interface ManifestOutput {
  /** The copy's folder of parts. */
  parts: string;
  /** This task's part, unique within the copy. */
  part: number;
  /**
   * Whether the previous copy has a manifest: then a file linked from it takes its checksum
   * from there, when the parts are assembled; otherwise the linked file is read now.
   */
  previousChecksums: boolean;
}

export interface SyncCopyOptions {
  /**
   * A complete earlier copy of the same source. A regular file whose counterpart there has the
   * same size, mode, mtime (and owner, when owners are kept) is hard-linked from it instead of
   * copied (as `rsync --link-dest`). Default: none, everything is copied.
   */
  previous?: string;
  /** Checked before each entry; once it returns true the copy throws `CopyStopped`. Default: never. */
  shouldStop?: () => boolean;
  /**
   * Called after each file, link, directory or skipped entry, and between the chunks of a large
   * file, with the running counts (not a copy) and a function naming the entry in flight (or
   * just done) relative to the source, as display text: called only when wanted, it decodes then.
   */
  onEntry?: (counts: Readonly<CopyCounts>, current: () => string | null) => void;
  /** Hands subfolders to other threads while some are free. Default: everything on this thread. */
  delegation?: Delegation;
  /**
   * Writes a manifest line for each entry copied below the target (see `ManifestEntry`), its
   * path relative to the whole copy's target. Default: no manifest.
   */
  manifest?: ManifestOutput;
  /**
   * `.gitignore` patterns relative to the source folder (see `ExcludeMatcher`): matching entries
   * below a folder source are neither copied nor, for folders, walked, and are counted in
   * `excluded`. A file source is copied whatever they say. Default: none (no `excluded` count).
   */
  exclude?: readonly string[];
  /**
   * The manifest of `previous`, indexed (see `PreviousIndex`). With it, a file is linked from
   * `previous` when the manifest's size, mode and mtime match the source's (the one look at the
   * file is the source's lstat), the link's manifest line is the previous one's, and the
   * previous copy's files are not looked at: only each of its folders is (once), and a folder
   * changed since its manifest was written has its files checked after linking, as without an
   * index. When owners are kept, a source file whose inode changed (ctime) since the previous
   * copy started has its link's owner checked too; a file the manifest does not list is checked
   * after linking and read for its checksum. Default: none, the previous copy's files are
   * checked after linking and their checksums read from `ManifestOutput.previousChecksums`.
   */
  index?: PreviousIndex;
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
// A failed hard link leaves the file to be copied instead: the previous snapshot has no such
// file (or a folder there: EPERM), it has too many links already, or lives on another file system.
const LINK_FALLBACK_CODES = new Set(['ENOENT', 'ENOTDIR', 'EMLINK', 'EXDEV', 'EPERM', 'EACCES']);
// A previous copy's folder that is missing, not a folder (a link among others) or closed to us: no previous there.
const NO_PREVIOUS_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'EACCES']);
// Opening an entry the listing showed: it vanished, or is no longer what the listing said
// (a link, refused by O_NOFOLLOW; a folder or file swapped for another kind; a socket).
const VANISHED_CODES = new Set(['ENOENT']);
const CHANGED_CODES = new Set(['ELOOP', 'ENOTDIR', 'ENXIO']);
const NEW_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const SEPARATOR = Buffer.from('/');

const noStop = (): boolean => false;
const noReport = (): void => undefined;

/**
 * Copies `source` (a real path: a directory or a regular file) into `target`, which must not
 * exist yet, with synchronous calls: on a warm cache they cost about half as much per file as
 * their async forms, so this is meant to run on a worker thread (see `copyTree`).
 *
 * A directory's contents land directly in `target`; a file lands in `target` under its base
 * name. Names are bytes, copied as they are. Files keep their contents (holes included), mode
 * and times, directories their mode and times, links their target text (never followed) and
 * times; when run as root all of them keep their owner and group too (setuid and setgid bits
 * only with them), and names of one inode stay hard links of one inode. FIFOs, sockets and
 * devices are skipped and counted, never opened.
 *
 * Every entry is opened relative to its open parent without following links, so nothing
 * outside the source is read even while the source changes: an entry below the source that
 * vanishes, becomes a link or another kind than listed (`ECHANGED`), or a file that cannot be
 * opened for reading, is left out and reported in `warnings`; the source itself missing is an
 * error. A copy whose path would be longer than the system allows throws `PathTooLongError`.
 *
 * Every file copied is read once, in chunks, each hashed (SHA-256) and written; the running
 * `bytes` count moves between chunks, and a stop is seen there too. With `manifest`, each entry
 * gets its line, files with their checksums.
 *
 * Hard links are recorded in `${target}.links` (see `LinkRegistry`), which the caller removes
 * (`copyTree` does). Memory does not grow with the number of entries: the walk is depth-first
 * and holds a few open files per level, and manifest lines go to a file as they come. Throws
 * on the first other error, leaving the partial target.
 */
export function copyTreeSync(source: string, target: string, options: SyncCopyOptions = {}): CopyReport {
  return new SyncTreeCopier(source, target, options).run();
}

/**
 * Copies a folder handed over by another thread's `copyTreeSync` (or `copySubtreeSync`) into
 * its existing target, then gives the target its mode, owner and times. `source` and `target`
 * are those of the whole copy, against which warnings are named and hard links recorded.
 * Closes the subtree's fds, whatever happens.
 */
export function copySubtreeSync(
  source: string,
  target: string,
  subtree: Subtree,
  options: SyncCopyOptions = {},
): CopyReport {
  return new SyncTreeCopier(source, target, options).runSubtree(subtree);
}

/** A source folder being copied. */
interface Folder {
  /** Open (`FOLDER_FLAGS`). */
  fd: number;
  /** `folderPrefix(fd)`. */
  prefix: Buffer;
  /** Its path below the source ('' for the source), for warnings and errors. */
  relative: Buffer;
  /** Its copy. */
  to: Buffer;
  /** The copy's path with a trailing separator, which entries' names follow. */
  into: Buffer;
  /** `folderPrefix` of its counterpart in the previous copy, open for lookups (`LOOKUP_FLAGS`), if any. */
  previous: PreviousFolder | undefined;
}

/**
 * A folder of the previous copy. `trusted`: with an index, unchanged since the previous
 * manifest was written (its mtime is not later), so its entries are still the files the manifest
 * describes, unless one was modified in place (which a check of size and mtime would catch only
 * when those changed, and never a change of contents: what `verify` is for).
 */
interface PreviousFolder {
  fd: number;
  prefix: Buffer;
  trusted: boolean;
}

// A source inode changed less than this before the previous copy started still has its owner
// checked: clocks of a file system and of the process may differ a little.
const CLOCK_MARGIN_MS = 2_000;

class SyncTreeCopier {
  readonly #counts: CopyCounts = emptyCounts();
  readonly #warnings: CopyWarnings = { count: 0, items: [] };
  readonly #source: string;
  readonly #target: string;
  readonly #previous: string | undefined;
  readonly #shouldStop: () => boolean;
  readonly #onEntry: (counts: Readonly<CopyCounts>, current: () => string | null) => void;
  /** The entry in flight: its folder (relative to the source) and name, kept apart so nothing is built per entry. */
  #currentFolder: Buffer = Buffer.alloc(0);
  #currentName: Buffer | undefined;
  readonly #current = (): string | null =>
    this.#currentName === undefined ? null : childPath(this.#currentFolder, this.#currentName).toString();
  readonly #delegation: Delegation | undefined;
  readonly #links: LinkRegistry;
  readonly #keepOwners = keepsOwners();
  readonly #fileSystemTypes = new Map<number, number>();
  #chunk: Buffer | undefined;
  readonly #manifest: ManifestPart | undefined;
  readonly #previousChecksums: boolean;
  readonly #exclude: ExcludeMatcher | undefined;
  readonly #index: PreviousIndexReader | undefined;
  /** Entries left out by `exclude`, reported only when patterns were given (`#reportsExcluded`). */
  #excluded = 0;
  readonly #reportsExcluded: boolean;
  /** `bytes` before the file being copied, whose bytes done so far are counted between its chunks. */
  #bytesBeforeFile = 0;
  readonly #checkStopBetweenChunks: BetweenChunks = () => this.#checkStop();
  readonly #betweenChunks: BetweenChunks = (done) => {
    this.#checkStop();
    this.#counts.bytes = this.#bytesBeforeFile + done;
    this.#onEntry(this.#counts, this.#current);
  };

  constructor(source: string, target: string, options: SyncCopyOptions) {
    this.#source = source;
    this.#target = target;
    this.#previous = options.previous;
    this.#shouldStop = options.shouldStop ?? noStop;
    this.#onEntry = options.onEntry ?? noReport;
    this.#delegation = options.delegation;
    this.#links = new LinkRegistry(linkRegistryOf(target));
    const { manifest } = options;
    this.#manifest = manifest && new ManifestPart(manifest.parts, manifest.part);
    this.#previousChecksums = manifest?.previousChecksums ?? false;
    this.#exclude = excludeMatcher(options.exclude);
    this.#reportsExcluded = options.exclude !== undefined;
    this.#index = options.index && new PreviousIndexReader(options.index);
  }

  run(): CopyReport {
    return this.#withManifest(() => this.#copyRoot());
  }

  runSubtree(subtree: Subtree): CopyReport {
    return this.#withManifest(() => this.#copySubtree(subtree));
  }

  /** Runs the task's copy; its manifest lines are all written when it returns, and its part closed either way. */
  #withManifest(copy: () => CopyReport): CopyReport {
    try {
      const report = copy();
      this.#manifest?.flush();
      return report;
    } finally {
      this.#manifest?.close();
    }
  }

  #copyRoot(): CopyReport {
    this.#checkStop();
    // The root's errors are never warnings: a vanished source is SOURCE_NOT_FOUND.
    const root = openSourceRoot(this.#source);
    const to = Buffer.from(this.#target);
    const folder: Folder = { ...open(root.fd), relative: Buffer.alloc(0), to, into: into(to), previous: undefined };
    // A file source has no entries below it for the patterns to match: it is what was asked for.
    if (root.stats.isFile()) {
      try {
        folder.previous = this.#openPreviousRoot();
        this.#copyRootFile(root.fd, root.stats, folder.previous);
      } catch (error) {
        throw located(error, this.#source);
      } finally {
        closeFolder(folder);
      }
      return this.#report();
    }
    try {
      folder.previous = this.#openPreviousRoot();
      fs.mkdirSync(to, { mode: FILLING_MODE });
    } catch (error) {
      closeFolder(folder);
      throw located(error, this.#source);
    }
    this.#fill(folder);
    this.#finishDirectory(to, root.stats);
    return this.#report();
  }

  /** A file source lands in the target folder under its own name. */
  #copyRootFile(fd: number, stats: Stats, previous: Folder['previous']): void {
    fs.mkdirSync(this.#target);
    const name = path.basename(this.#source);
    const to = Buffer.from(path.join(this.#target, name));
    if (to.length > MAX_PATH_BYTES) throw new PathTooLongError(this.#source);
    const inode = inodeOf(stats, () => fs.fstatSync(fd, { bigint: true }));
    // Its path in the copy is its name.
    const relative = Buffer.from(name);
    this.#currentName = relative;
    const previousFile = previous && entryPath(previous.prefix, relative);
    if (!this.#linkWithoutCopy(stats, inode, to, previousFile, relative, previous?.trusted ?? false))
      this.#writeFile(fd, stats, inode, to, relative);
  }

  #copySubtree({ fd, previousFd, previousTrusted, relative, to, stats }: Subtree): CopyReport {
    const target = bytes(to);
    const previous = previousFd === undefined ? undefined : { ...open(previousFd), trusted: previousTrusted ?? false };
    const folder: Folder = { ...open(fd), relative: bytes(relative), to: target, into: into(target), previous };
    this.#fill(folder);
    this.#finishDirectory(target, stats, folder.relative);
    this.#counts.dirs += 1;
    this.#onEntry(this.#counts, this.#current);
    return this.#report();
  }

  #report(): CopyReport {
    const excluded = this.#reportsExcluded ? { excluded: this.#excluded } : {};
    return { ...this.#counts, warnings: this.#warnings, ...excluded };
  }

  #openPreviousRoot(): Folder['previous'] {
    if (this.#previous === undefined) return undefined;
    // The previous copy is Coffer's own, but its last component is still never followed.
    const fd = openIfThere(Buffer.from(this.#previous), LOOKUP_FLAGS, NO_PREVIOUS_CODES);
    return fd === undefined ? undefined : this.#previousFolder(fd);
  }

  /** The previous copy's folder open as `fd`; with an index, one fstat tells whether it changed since its manifest. */
  #previousFolder(fd: number): PreviousFolder {
    let trusted = false;
    if (this.#index) {
      try {
        trusted = fs.fstatSync(fd).mtimeMs <= this.#index.writtenMs;
      } catch (error) {
        fs.closeSync(fd);
        throw error;
      }
    }
    return { ...open(fd), trusted };
  }

  /** Copies the entries of `folder` into its existing copy, then closes it. */
  #fill(folder: Folder): void {
    try {
      this.#checkStop();
      const dir = listFolder(folder.fd);
      try {
        for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
          this.#checkStop();
          this.#visit(entry, folder);
        }
      } finally {
        dir.closeSync();
      }
    } catch (error) {
      throw located(error, this.#sourcePath(folder.relative));
    } finally {
      closeFolder(folder);
    }
  }

  #visit(entry: Dirent<Buffer>, folder: Folder): void {
    const { name } = entry;
    this.#currentFolder = folder.relative;
    this.#currentName = name;
    // Before anything else, so an excluded folder is never opened; and an excluded FIFO counts
    // as excluded, not skipped. A listing without kinds is matched once lstat has told.
    if (this.#exclude !== undefined && hasKind(entry) && this.#excludes(folder, name, entry.isDirectory())) return;
    if (isSpecial(entry)) {
      this.#skip();
      return;
    }
    try {
      if (entry.isFile()) this.#copyFileEntry(folder, name);
      else if (entry.isDirectory()) this.#copySubdirectory(folder, name);
      else if (entry.isSymbolicLink()) this.#copyLink(folder, name, undefined);
      else this.#visitUnknown(folder, name);
    } catch (error) {
      throw located(error, this.#sourcePath(childPath(folder.relative, name)));
    }
  }

  /** Some file systems do not give kinds in listings: lstat decides. */
  #visitUnknown(folder: Folder, name: Buffer): void {
    const stats = fs.lstatSync(entryPath(folder.prefix, name), { throwIfNoEntry: false });
    if (stats === undefined) this.#warn(folder, name, 'ENOENT');
    else if (this.#excludes(folder, name, stats.isDirectory())) return;
    else if (stats.isFile()) this.#copyFileEntry(folder, name);
    else if (stats.isDirectory()) this.#copySubdirectory(folder, name);
    else if (stats.isSymbolicLink()) this.#copyLink(folder, name, stats);
    else this.#skip();
  }

  #copySubdirectory(folder: Folder, name: Buffer): void {
    // Opened before the copy is created, so a directory that vanished leaves nothing behind.
    // An unreadable directory stays an error (SOURCE_UNREADABLE): a whole subtree would be missing.
    const to = this.#destination(folder, name);
    const fd = this.#openEntry(folder, name, FOLDER_FLAGS);
    if (fd === undefined) return;
    const child: Folder = {
      ...open(fd),
      relative: childPath(folder.relative, name),
      to,
      into: into(to),
      previous: undefined,
    };
    let stats: Stats;
    try {
      stats = fs.fstatSync(fd);
      if (folder.previous) {
        // Walked in step with the source, never through a link: anything but a folder there is no previous.
        const previous = openIfThere(entryPath(folder.previous.prefix, name), LOOKUP_FLAGS, NO_PREVIOUS_CODES);
        if (previous !== undefined) child.previous = this.#previousFolder(previous);
      }
      fs.mkdirSync(to, { mode: FILLING_MODE });
    } catch (error) {
      closeFolder(child);
      throw error;
    }
    if (this.#delegation?.reserve()) {
      // Created here, so this thread's parent folder is complete when it finishes it; another
      // thread writing inside it later does not change the parent's mtime.
      const { mode, uid, gid, atimeMs, mtimeMs } = stats;
      this.#delegation.hand({
        fd,
        previousFd: child.previous?.fd,
        previousTrusted: child.previous?.trusted,
        relative: child.relative,
        to,
        stats: { mode, uid, gid, atimeMs, mtimeMs },
      });
      return;
    }
    this.#fill(child);
    this.#finishDirectory(to, stats, child.relative);
    // The folder itself is the entry just done, not the last one inside it.
    this.#currentFolder = folder.relative;
    this.#currentName = name;
    this.#counts.dirs += 1;
    this.#onEntry(this.#counts, this.#current);
  }

  /** A regular file, as the listing said. */
  #copyFileEntry(folder: Folder, name: Buffer): void {
    const to = this.#destination(folder, name);
    const relative = childPath(folder.relative, name);
    let seen: Stats | undefined;
    let inode: string | undefined;
    if (folder.previous) {
      // With a previous copy most files are unchanged, and linking one takes its metadata, not its contents.
      const from = entryPath(folder.prefix, name);
      seen = fs.lstatSync(from, { throwIfNoEntry: false });
      if (seen === undefined || !seen.isFile()) {
        this.#warn(folder, name, seen === undefined ? 'ENOENT' : 'ECHANGED');
        return;
      }
      inode = inodeOf(seen, () => fs.lstatSync(from, { bigint: true }));
      const previous = entryPath(folder.previous.prefix, name);
      if (this.#linkWithoutCopy(seen, inode, to, previous, relative, folder.previous.trusted)) return;
    }
    const fd = this.#openEntry(folder, name, FILE_FLAGS);
    if (fd === undefined) return;
    try {
      // fstat of what was opened, not a name's lstat: it is what gets copied.
      const stats = fs.fstatSync(fd);
      if (!stats.isFile() || (seen !== undefined && (stats.dev !== seen.dev || stats.ino !== seen.ino))) {
        this.#warn(folder, name, 'ECHANGED');
        return;
      }
      if (seen === undefined) {
        inode = inodeOf(stats, () => fs.fstatSync(fd, { bigint: true }));
        if (this.#linkWithoutCopy(stats, inode, to, undefined, relative, false)) return;
      }
      this.#writeFile(fd, stats, inode, to, relative);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Opens the entry `name` of `folder` with `flags` (never through a link); undefined, with a
   * warning, when it vanished, cannot be read (files only) or is no longer of the listed kind.
   */
  #openEntry(folder: Folder, name: Buffer, flags: number): number | undefined {
    try {
      return fs.openSync(entryPath(folder.prefix, name), flags);
    } catch (error) {
      const code = errorCode(error) ?? '';
      if (VANISHED_CODES.has(code)) this.#warn(folder, name, 'ENOENT');
      else if (CHANGED_CODES.has(code)) this.#warn(folder, name, 'ECHANGED');
      else if (code === 'EACCES' && flags === FILE_FLAGS) this.#warn(folder, name, 'EACCES');
      else throw error;
      return undefined;
    }
  }

  /**
   * Makes `to` a hard link instead of a copy of the file `stats` describes, when one can serve:
   * the copy of an earlier name of the same `inode` (see `inodeOf`), or its counterpart
   * `previous` in the previous copy when unchanged (which then counts as the first copy).
   */
  #linkWithoutCopy(
    stats: Stats,
    inode: string | undefined,
    to: Buffer,
    previous: Buffer | undefined,
    relative: Buffer,
    trusted: boolean,
  ): boolean {
    if (inode !== undefined && this.#links.linkRegistered(inode, to)) {
      this.#recordFile(relative, to, undefined, ofRegisteredInode(inode));
      this.#countFile(stats);
      return true;
    }
    const found = previous === undefined ? undefined : this.#linkFromPrevious(previous, to, stats, relative, trusted);
    if (found === undefined) return false;
    const { linked, checksum } = found;
    // Only the registered name counts as linked from the previous copy, whichever thread got there first.
    if (inode === undefined || this.#links.register(inode, to, checksum)) {
      this.#counts.filesLinked += 1;
      this.#counts.bytesLinked += stats.size;
      this.#recordFile(relative, to, linked, checksum);
    } else {
      // Now a link to the other thread's copy.
      this.#recordFile(relative, to, undefined, ofRegisteredInode(inode));
    }
    this.#countFile(stats);
    return true;
  }

  /**
   * The checksum of `to`, just linked from the previous copy: from the previous manifest (once
   * the parts are assembled) when there is one, else read from the file, which is not copied.
   */
  #linkedChecksum(to: Buffer, relative: Buffer): ChecksumSource | undefined {
    if (!this.#manifest) return undefined;
    if (this.#previousChecksums) return inPreviousManifest(relative);
    return checksumOfFile(to, this.#chunkBuffer(), this.#fileSystemTypes, this.#checkStopBetweenChunks);
  }

  /**
   * Copies the open regular file `fd` to the new file `to`, with its mode, owner and times,
   * reading it once: each chunk is hashed and written (blocks of zeros of a sparse file hashed
   * only, so they stay holes), and `bytes` moves between chunks.
   */
  #writeFile(fd: number, stats: Stats, inode: string | undefined, to: Buffer, relative: Buffer): void {
    // With fd calls only, through the fd already open: cheaper than path calls.
    const out = fs.openSync(to, NEW_FILE_FLAGS, 0o600);
    let checksum: Checksum;
    let copy: Stats | undefined;
    try {
      const buffer = this.#chunkBuffer();
      const holes = looksSparse(stats);
      this.#bytesBeforeFile = this.#counts.bytes;
      checksum = checksumContents(
        fd,
        stats,
        this.#fileSystemTypes,
        this.#betweenChunks,
        (hash) => copyData(fd, out, stats.size, buffer, hash, holes, this.#betweenChunks),
        () => fs.ftruncateSync(out, stats.size),
      );
      // `#countFile` counts the whole file.
      this.#counts.bytes = this.#bytesBeforeFile;
      const ownerKept = this.#own(() => fs.fchownSync(out, stats.uid, stats.gid));
      // After chown, which clears setuid and setgid.
      fs.fchmodSync(out, copyMode(stats.mode, ownerKept));
      fs.futimesSync(out, seconds(stats.atimeMs), seconds(stats.mtimeMs));
      // What the copy holds exactly (times are set to within a microsecond).
      if (this.#manifest) copy = fs.fstatSync(out);
    } finally {
      fs.closeSync(out);
    }
    if (inode === undefined || this.#links.register(inode, to, this.#manifest && checksum)) {
      this.#recordFile(relative, to, copy, checksum);
    } else {
      // Now a link to the other thread's copy.
      this.#recordFile(relative, to, undefined, ofRegisteredInode(inode));
    }
    this.#countFile(stats);
  }

  /** One per copy, allocated when a first file needs it. */
  #chunkBuffer(): Buffer {
    return (this.#chunk ??= Buffer.allocUnsafe(CHUNK_SIZE));
  }

  /** Writes the manifest line of the file `to`; `copy` is its stats when known, else they are looked up. */
  #recordFile(relative: Buffer, to: Buffer, copy: CopyStats | undefined, checksum: ChecksumSource | undefined): void {
    if (!this.#manifest || checksum === undefined) return;
    this.#manifest.addFile(relative, copy ?? fs.lstatSync(to), checksum);
  }

  #copyLink(folder: Folder, name: Buffer, known: Stats | undefined): void {
    const from = entryPath(folder.prefix, name);
    const stats = known ?? fs.lstatSync(from, { throwIfNoEntry: false });
    if (stats === undefined) {
      this.#warn(folder, name, 'ENOENT');
      return;
    }
    let linkTarget: Buffer;
    try {
      // As bytes, so a link target that is not valid UTF-8 survives unchanged.
      linkTarget = fs.readlinkSync(from, { encoding: 'buffer' });
    } catch (error) {
      const code = errorCode(error);
      // EINVAL: no longer a link.
      if (code !== 'ENOENT' && code !== 'EINVAL') throw error;
      this.#warn(folder, name, code === 'ENOENT' ? 'ENOENT' : 'ECHANGED');
      return;
    }
    const to = this.#destination(folder, name);
    fs.symlinkSync(linkTarget, to);
    this.#own(() => fs.lchownSync(to, stats.uid, stats.gid));
    fs.lutimesSync(to, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    this.#manifest?.add(linkLine(childPath(folder.relative, name), fs.lstatSync(to), linkTarget));
    this.#counts.links += 1;
    this.#onEntry(this.#counts, this.#current);
  }

  /**
   * Links `previous` to `to` when it holds the file `stats` describes, unchanged: decided from
   * the previous manifest when there is an index (see `SyncCopyOptions.index`), else by
   * `#linkUnchanged`. Answers the link's stats for its manifest line, and its checksum (or where
   * to find it).
   */
  #linkFromPrevious(
    previous: Buffer,
    to: Buffer,
    stats: Stats,
    relative: Buffer,
    trusted: boolean,
  ): { linked: CopyStats; checksum: ChecksumSource | undefined } | undefined {
    const index = this.#index;
    const record = index === undefined ? -1 : index.find(relative);
    if (index === undefined || record < 0) {
      // No manifest, or no line in it (never, for a manifest Coffer wrote): the file itself tells.
      const linked = this.#linkUnchanged(previous, to, stats);
      return linked && { linked, checksum: this.#linkedChecksum(to, relative) };
    }
    const file = index.file(record);
    if (!this.#sameFile(file, stats)) return undefined;
    const checksum = this.#manifest && file.checksum;
    // The owner is not in the manifest: unchanged when the inode has not changed since the previous copy started.
    const ownerUnchanged = !this.#keepOwners || stats.ctimeMs < index.startedMs - CLOCK_MARGIN_MS;
    if (!trusted || !ownerUnchanged) {
      const linked = this.#linkUnchanged(previous, to, stats);
      return linked && { linked, checksum };
    }
    try {
      fs.linkSync(previous, to);
    } catch (error) {
      // Gone from the previous copy since (or never there): copied instead.
      if (LINK_FALLBACK_CODES.has(errorCode(error) ?? '')) return undefined;
      throw error;
    }
    return { linked: file, checksum };
  }

  /** Whether a copy with `copy`'s size, mode and mtime is a copy of the file `stats` describes (owners aside). */
  #sameFile(copy: CopyStats, stats: Stats): boolean {
    return (
      copy.size === stats.size &&
      (copy.mode & 0o7777) === copyMode(stats.mode, this.#keepOwners) &&
      sameMtime(copy.mtimeMs, stats.mtimeMs)
    );
  }

  /**
   * Hard-links `previous` (an fd path, never followed) to `to` when it is the same regular file
   * as `stats` describes, and returns the link's stats: same size, the mode a copy would get (a link shares its inode's mode),
   * same mtime, and same owner when owners are kept. Linked first and checked after: what is
   * checked is then exactly what was linked (link(2) links a link itself, never where it leads),
   * and the check is a lookup in the copy rather than another one through an fd path.
   */
  #linkUnchanged(previous: Buffer, to: Buffer, stats: Stats): Stats | undefined {
    try {
      fs.linkSync(previous, to);
    } catch (error) {
      if (LINK_FALLBACK_CODES.has(errorCode(error) ?? '')) return undefined;
      throw error;
    }
    const linked = fs.lstatSync(to);
    if (
      linked.isFile() &&
      this.#sameFile(linked, stats) &&
      (!this.#keepOwners || (linked.uid === stats.uid && linked.gid === stats.gid))
    ) {
      return linked;
    }
    fs.unlinkSync(to);
    return undefined;
  }

  /**
   * Gives a filled folder its owner, mode and times: last, because writing its entries changed
   * its mtime; then its manifest line, `relative` to the copy's target (none for the target).
   */
  #finishDirectory(to: Buffer, stats: FolderStats, relative?: Buffer): void {
    const ownerKept = this.#own(() => fs.lchownSync(to, stats.uid, stats.gid));
    // After chown, which may clear setgid.
    fs.chmodSync(to, copyMode(stats.mode, ownerKept));
    fs.utimesSync(to, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    if (relative !== undefined) this.#manifest?.add(folderLine(relative, fs.lstatSync(to)));
  }

  /** Runs `chown` when owners are kept; tells whether the copy now has its source's owner and group. */
  #own(chown: () => void): boolean {
    return this.#keepOwners && tryChown(chown);
  }

  /** The copy of entry `name` of `folder`, refused when ordinary tools could not open it. */
  #destination(folder: Folder, name: Buffer): Buffer {
    const to = Buffer.concat([folder.into, name]);
    if (to.length > MAX_PATH_BYTES) throw new PathTooLongError(this.#sourcePath(childPath(folder.relative, name)));
    return to;
  }

  /** Whether `exclude` leaves out the entry `name` of `folder` (then counted), `directory` or not. */
  #excludes(folder: Folder, name: Buffer, directory: boolean): boolean {
    if (this.#exclude === undefined || !this.#exclude.excludes(childPath(folder.relative, name), directory)) {
      return false;
    }
    this.#excluded += 1;
    return true;
  }

  #countFile(stats: Stats): void {
    this.#counts.files += 1;
    this.#counts.bytes += stats.size;
    this.#onEntry(this.#counts, this.#current);
  }

  #skip(): void {
    this.#counts.skipped += 1;
    this.#onEntry(this.#counts, this.#current);
  }

  #warn(folder: Folder, name: Buffer, code: CopyWarning['code']): void {
    this.#warnings.count += 1;
    if (this.#warnings.items.length < MAX_LISTED_WARNINGS) {
      this.#warnings.items.push({ ...displayPath(childPath(folder.relative, name)), code });
    }
  }

  /** The real path of an entry, for error messages (decoded for display). */
  #sourcePath(relative: Buffer): string {
    return relative.length === 0 ? this.#source : path.join(this.#source, relative.toString());
  }

  #checkStop(): void {
    if (this.#shouldStop()) throw new CopyStopped();
  }
}

/**
 * An error met on the entry at `sourcePath`, as callers should see it: named after the entry's
 * real path rather than an fd path, and a name or path the system found too long as `PathTooLongError`.
 */
function located(error: unknown, sourcePath: string): unknown {
  if (errorCode(error) === 'ENAMETOOLONG') return new PathTooLongError(sourcePath, { cause: error });
  return namedAfter(error, sourcePath);
}

/** Whether the listing says what the entry is (some file systems leave that to lstat). */
function hasKind(entry: Dirent<Buffer>): boolean {
  return entry.isFile() || entry.isDirectory() || entry.isSymbolicLink() || isSpecial(entry);
}

function open(fd: number): { fd: number; prefix: Buffer } {
  return { fd, prefix: folderPrefix(fd) };
}

function closeFolder(folder: Folder): void {
  fs.closeSync(folder.fd);
  if (folder.previous) fs.closeSync(folder.previous.fd);
}

/**
 * Names the inode of a file with several names (`<dev>-<ino>`), for the registry of hard
 * links; undefined for a file with one name. `exact` stats it again as bigints when a number
 * would have rounded (overlayfs sets high bits of inode numbers).
 */
function inodeOf(stats: Stats, exact: () => BigIntStats): string | undefined {
  if (stats.nlink <= 1) return undefined;
  if (Number.isSafeInteger(stats.ino) && Number.isSafeInteger(stats.dev)) return `${stats.dev}-${stats.ino}`;
  const { dev, ino } = exact();
  return `${dev}-${ino}`;
}

function into(folder: Buffer): Buffer {
  return Buffer.concat([folder, SEPARATOR]);
}

function bytes(array: Uint8Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

// utimes takes seconds; from the *Ms fields (which keep the sub-millisecond part),
// the copy's times match the source's to well under a microsecond.
function seconds(ms: number): number {
  return ms / 1000;
}
