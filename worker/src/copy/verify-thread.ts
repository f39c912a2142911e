// The entry of a verify thread (see verify-snapshot.ts): reads the manifest, then walks the
// snapshot with synchronous calls (on a warm cache about half the cost of their async forms,
// and this thread's event loop serves nobody else) and posts progress, then one outcome.
import { hash, createHash } from 'node:crypto';
import fs, { type Dirent, type Stats } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { JobFailure, type FailureProblem } from '@coffer/shared/failure';
import type { JobProgress, ManifestEntry } from '@coffer/shared/job-contract';
import { errorCode } from './errno.js';
import { sameMtime } from './file-times.js';
import { entryPathBytes, linkTargetBytes, readManifest } from './manifest-file.js';
import { displayPath } from './manifest-lines.js';
import { FILE_FLAGS, FOLDER_FLAGS, entryPath, folderPrefix, isSpecial, listFolder } from './open-at.js';
import { unfinished } from './thread-failure.js';
import {
  MAX_LISTED_PROBLEMS,
  STOP_FLAG,
  type VerifyMessage,
  type VerifyProblems,
  type VerifyReport,
  type VerifyTask,
} from './verify-snapshot.js';

// Posted at most this often (a message per file would cost more than the file), and also
// between the chunks of one big file.
const PROGRESS_INTERVAL_MS = 200;
// Read (and hashed) at a time: large enough that a call's own cost vanishes, small enough to
// stay in the CPU's cache from the read to the hash (measured faster than 1 MiB) and to see a
// stop within a millisecond.
const CHUNK_SIZE = 256 * 1024;
// An entry the listing showed that is gone when opened.
const VANISHED_CODES = new Set(['ENOENT']);
// No longer the kind the listing showed: a link (refused by O_NOFOLLOW), a folder, a socket.
const CHANGED_CODES = new Set(['ELOOP', 'ENOTDIR', 'EISDIR', 'ENXIO', 'EINVAL']);
const UNREADABLE_CODES = new Set(['EACCES', 'EPERM', 'EIO']);
// The longest name a Linux file system holds (NAME_MAX).
const MAX_NAME_BYTES = 255;

type EntryType = ManifestEntry['type'];
type DisplayedPath = Pick<FailureProblem, 'path' | 'pathBase64'>;

/** Thrown once the stop flag is set. */
class VerifyStopped extends Error {
  override readonly name = 'VerifyStopped';
}

/** An entry that cannot be checked, as a problem: thrown by the checks, caught per entry. */
class EntryProblem extends Error {
  constructor(readonly problem: FailureProblem['problem']) {
    super(problem);
  }
}

/**
 * The manifest's entries by path, the path's bytes as a latin1 string (one character per byte,
 * so names that are not UTF-8 stay distinct; the walk carries paths as such keys, and turns
 * them back into bytes only for problems). Costs about 250 bytes of heap per entry (the parsed
 * line and the map's slot, measured with lines of some 180 bytes): some 250 MB for a million
 * entries, shared out among the threads; while the manifest is parsed each thread briefly holds
 * all of it.
 */
type ExpectedEntries = Map<string, ManifestEntry>;

/**
 * Checks the entries of one part of a snapshot: each of the threads of a verification walks all
 * of the snapshot's folders, but checks only the entries whose path falls in its `part` (by a
 * hash of the path, so that even one big folder is shared out).
 */
class SnapshotVerifier {
  readonly #expected: ExpectedEntries;
  /** Every folder of the manifest, this part's or not: the walk goes through them all. */
  readonly #folders = new Set<string>();
  readonly #part: number;
  readonly #parts: number;
  readonly #progress: JobProgress;
  readonly #problems: VerifyProblems = { count: 0, items: [] };
  readonly #stopFlag: Int32Array;
  readonly #post: (message: VerifyMessage) => void;
  readonly #chunk = Buffer.allocUnsafe(CHUNK_SIZE);
  #lastReport = performance.now();
  /** The key of the entry in flight (or just checked), decoded for display only when progress is posted. */
  #currentKey: string | undefined;

  constructor(task: VerifyTask, entries: ManifestEntry[], post: (message: VerifyMessage) => void) {
    this.#part = task.part;
    this.#parts = task.parts;
    this.#expected = new Map();
    let filesTotal = 0;
    let bytesTotal = 0;
    for (const entry of entries) {
      const key = keyOf(entry);
      if (entry.type === 'dir') this.#folders.add(key);
      if (!this.#owns(key)) continue;
      this.#expected.set(key, entry);
      if (entry.type !== 'file') continue;
      filesTotal += 1;
      // A file holding no data is never read.
      if (entry.noData !== true) bytesTotal += entry.size;
    }
    this.#progress = { files: 0, filesTotal, bytes: 0, bytesTotal };
    this.#stopFlag = new Int32Array(task.state);
    this.#post = post;
  }

  run(snapshotPath: string): Omit<VerifyReport, 'durationMs'> {
    this.#reportProgress();
    this.#checkFolderEntries(openSnapshotRoot(snapshotPath), '');
    this.#currentKey = undefined;
    // What the walk did not meet.
    for (const entry of this.#expected.values()) this.#addProblem(displayedPath(entry), 'missing');
    this.#reportProgress();
    return { files: this.#progress.files, bytes: this.#progress.bytes, problems: this.#problems };
  }

  /** Checks the entries of the open folder `fd` (at `relative`, a key), then closes it. */
  #checkFolderEntries(fd: number, relative: string): void {
    const paths = new EntryPaths(fd);
    try {
      const dir = listFolder(fd);
      try {
        for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
          this.#checkStop();
          this.#checkEntry(paths, relative, entry);
        }
      } finally {
        dir.closeSync();
      }
    } catch (error) {
      // A folder that cannot be listed (EIO): its entries not met yet are unknown, not missing.
      if (relative.length === 0 || !UNREADABLE_CODES.has(errorCode(error) ?? '')) throw error;
      if (this.#owns(relative)) this.#addProblem(relative, 'unreadable');
      this.#forgetBelow(relative);
    } finally {
      fs.closeSync(fd);
    }
  }

  #checkEntry(paths: EntryPaths, relative: string, dirent: Dirent<Buffer>): void {
    const name = dirent.name.toString('latin1');
    const key = relative === '' ? name : `${relative}/${name}`;
    if (!this.#owns(key)) {
      this.#passThrough(paths, dirent, key);
      return;
    }
    const expected = this.#expected.get(key);
    if (expected === undefined) {
      // One problem for an extra folder, not one per entry inside it.
      this.#addProblem(key, 'extra');
      return;
    }
    this.#expected.delete(key);
    this.#currentKey = key;
    const at = paths.of(dirent.name);
    try {
      const type = typeOf(dirent, at);
      if (type !== expected.type) throw new EntryProblem('changed');
      if (type === 'file') this.#checkFile(at, expected);
      else if (type === 'link') checkLink(at, expected);
      else this.#checkFolder(at, key, expected);
    } catch (error) {
      if (!(error instanceof EntryProblem)) throw namedAfter(error, key);
      this.#addProblem(key, error.problem);
      if (error.problem === 'unreadable' && expected.type === 'dir') this.#forgetBelow(key);
    }
  }

  /** Walks into a folder of another part, as its owner does: when it is a folder in the manifest and on disk. */
  #passThrough(paths: EntryPaths, dirent: Dirent<Buffer>, key: string): void {
    if (!this.#folders.has(key) || dirent.isFile() || dirent.isSymbolicLink() || isSpecial(dirent)) return;
    let fd: number;
    try {
      fd = openEntry(paths.of(dirent.name), FOLDER_FLAGS);
    } catch (error) {
      if (!(error instanceof EntryProblem)) throw namedAfter(error, key);
      // Its owner reports it; what lies below it is this part's business.
      if (error.problem === 'unreadable') this.#forgetBelow(key);
      return;
    }
    this.#checkFolderEntries(fd, key);
  }

  #owns(key: string): boolean {
    return this.#parts === 1 || partOf(key, this.#parts) === this.#part;
  }

  #checkFolder(at: Buffer, key: string, expected: ManifestEntry): void {
    const fd = openEntry(at, FOLDER_FLAGS);
    let stats: Stats;
    try {
      stats = fstat(fd);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    // Its mode or times changed, but what it holds is still checked.
    if (!sameMetadata(stats, expected, false)) this.#addProblem(key, 'changed');
    this.#checkFolderEntries(fd, key);
  }

  #checkFile(at: Buffer, expected: ManifestEntry): void {
    const fd = openEntry(at, FILE_FLAGS);
    try {
      const stats = fstat(fd);
      if (!stats.isFile() || !sameMetadata(stats, expected, true)) throw new EntryProblem('changed');
      if (expected.noData === true) {
        if (stats.blocks !== 0) throw new EntryProblem('changed');
      } else if (this.#sha256Of(fd, stats.size) !== expected.sha256) {
        throw new EntryProblem('changed');
      }
      this.#progress.files += 1;
      this.#tick();
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The SHA-256 of the open file `fd`, of `size` bytes when fstat'ed, read through one reused buffer. */
  #sha256Of(fd: number, size: number): string {
    const chunk = this.#chunk;
    let read = readChunk(fd, chunk, 0);
    // A short read past the known size is the end, which spares a small file a second read.
    if (read < chunk.length && read >= size) {
      if (read > size) throw new EntryProblem('changed');
      this.#progress.bytes += read;
      // One call rather than an object per file: most files are small.
      return hash('sha256', chunk.subarray(0, read), 'hex');
    }
    const digest = createHash('sha256');
    let position = 0;
    while (read > 0) {
      digest.update(chunk.subarray(0, read));
      position += read;
      this.#progress.bytes += read;
      this.#checkStop();
      this.#tick();
      read = readChunk(fd, chunk, position);
    }
    if (position !== size) throw new EntryProblem('changed');
    return digest.digest('hex');
  }

  /** Counts a problem of the entry at `key` (or as the manifest displays it), and lists the first ones. */
  #addProblem(path: string | DisplayedPath, problem: FailureProblem['problem']): void {
    this.#problems.count += 1;
    if (this.#problems.items.length >= MAX_LISTED_PROBLEMS) return;
    const displayed = typeof path === 'string' ? displayPath(Buffer.from(path, 'latin1')) : path;
    this.#problems.items.push({ ...displayed, problem });
  }

  /** Drops the manifest's entries below `folder`, which could not be looked into. */
  #forgetBelow(folder: string): void {
    const prefix = `${folder}/`;
    // A walk over every entry, but only for a folder that cannot be read, which is rare.
    for (const key of this.#expected.keys()) if (key.startsWith(prefix)) this.#expected.delete(key);
  }

  #checkStop(): void {
    if (Atomics.load(this.#stopFlag, STOP_FLAG) !== 0) throw new VerifyStopped();
  }

  /** Posts the running counts when the last post is old enough. */
  #tick(): void {
    if (performance.now() - this.#lastReport >= PROGRESS_INTERVAL_MS) this.#reportProgress();
  }

  #reportProgress(): void {
    this.#lastReport = performance.now();
    const key = this.#currentKey;
    // Keys hold a path's bytes as latin1: decoded as UTF-8 for display, as manifests show paths.
    const current = key === undefined ? null : Buffer.from(key, 'latin1').toString();
    this.#post({ type: 'progress', progress: { ...this.#progress, current } });
  }
}

/**
 * Builds the fd paths of a folder's entries (see `entryPath`) in one buffer, each over the last:
 * the calls that use one are synchronous and done before the next entry.
 */
class EntryPaths {
  readonly #prefix: Buffer;
  readonly #buffer: Buffer;

  constructor(folderFd: number) {
    this.#prefix = folderPrefix(folderFd);
    this.#buffer = Buffer.allocUnsafe(this.#prefix.length + MAX_NAME_BYTES);
    this.#prefix.copy(this.#buffer);
  }

  of(name: Buffer): Buffer {
    if (name.length > MAX_NAME_BYTES) return entryPath(this.#prefix, name);
    name.copy(this.#buffer, this.#prefix.length);
    return this.#buffer.subarray(0, this.#prefix.length + name.length);
  }
}

/** The snapshot folder, open; its own path is Coffer's, but its last component is never followed. */
function openSnapshotRoot(snapshotPath: string): number {
  try {
    return fs.openSync(snapshotPath, FOLDER_FLAGS);
  } catch (error) {
    const code = errorCode(error);
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') throw error;
    throw new JobFailure('SNAPSHOT_NOT_FOUND', `snapshot ${snapshotPath} is not there (${code})`, true, {
      cause: error,
    });
  }
}

/** Opens the entry `at` (an fd path) with `flags`, never through a link; a failure that says something about the entry is its problem. */
function openEntry(at: Buffer, flags: number): number {
  try {
    return fs.openSync(at, flags);
  } catch (error) {
    throw asEntryProblem(error);
  }
}

function fstat(fd: number): Stats {
  try {
    return fs.fstatSync(fd);
  } catch (error) {
    throw asEntryProblem(error);
  }
}

function readChunk(fd: number, chunk: Buffer, position: number): number {
  try {
    return fs.readSync(fd, chunk, 0, chunk.length, position);
  } catch (error) {
    throw asEntryProblem(error);
  }
}

function asEntryProblem(error: unknown): unknown {
  const code = errorCode(error) ?? '';
  if (VANISHED_CODES.has(code)) return new EntryProblem('missing');
  if (CHANGED_CODES.has(code)) return new EntryProblem('changed');
  if (UNREADABLE_CODES.has(code)) return new EntryProblem('unreadable');
  return error;
}

function checkLink(at: Buffer, expected: ManifestEntry): void {
  let stats: Stats;
  let target: Buffer;
  try {
    stats = fs.lstatSync(at);
    // As bytes, so a target that is not valid UTF-8 compares exactly.
    target = fs.readlinkSync(at, { encoding: 'buffer' });
  } catch (error) {
    throw asEntryProblem(error);
  }
  if (!stats.isSymbolicLink() || !sameMetadata(stats, expected, true) || !target.equals(linkTargetBytes(expected))) {
    throw new EntryProblem('changed');
  }
}

/** The entry's kind from its listing, or from lstat where the file system does not list kinds; special files are none of ours. */
function typeOf(dirent: Dirent<Buffer>, at: Buffer): EntryType | 'other' {
  if (dirent.isFile()) return 'file';
  if (dirent.isDirectory()) return 'dir';
  if (dirent.isSymbolicLink()) return 'link';
  if (isSpecial(dirent)) return 'other';
  let stats: Stats;
  try {
    stats = fs.lstatSync(at);
  } catch (error) {
    throw asEntryProblem(error);
  }
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  return stats.isSymbolicLink() ? 'link' : 'other';
}

function sameMetadata(stats: Stats, expected: ManifestEntry, withSize: boolean): boolean {
  return (
    (!withSize || stats.size === expected.size) &&
    (stats.mode & 0o7777) === expected.mode &&
    sameMtime(stats.mtimeMs, expected.mtime)
  );
}

/** Which of `parts` the entry at `key` belongs to: a cheap hash of its path, spread evenly enough. */
function partOf(key: string, parts: number): number {
  let hash = 0;
  for (let index = 0; index < key.length; index += 1) hash = (Math.imul(hash, 31) + key.charCodeAt(index)) | 0;
  return (hash >>> 0) % parts;
}

function keyOf(entry: ManifestEntry): string {
  // Pure ASCII (one UTF-8 byte per character; most paths) is its own latin1 key.
  if (entry.pathBase64 === undefined && Buffer.byteLength(entry.path) === entry.path.length) return entry.path;
  return entryPathBytes(entry).toString('latin1');
}

function displayedPath(entry: ManifestEntry): DisplayedPath {
  return entry.pathBase64 === undefined ? { path: entry.path } : { path: entry.path, pathBase64: entry.pathBase64 };
}

const named = new WeakSet<Error>();

/** Names an error met on the entry at `key` after its path in the snapshot (once, by the deepest entry), rather than its fd path. */
function namedAfter(error: unknown, key: string): unknown {
  if (!(error instanceof Error) || error instanceof VerifyStopped || named.has(error)) return error;
  error.message = `${error.message} (at ${Buffer.from(key, 'latin1').toString('utf8')} in the snapshot)`;
  named.add(error);
  return error;
}

async function verify(task: VerifyTask, post: (message: VerifyMessage) => void): Promise<VerifyMessage> {
  try {
    const entries = await readManifest(task.snapshotPath, task.manifestSha256);
    const verifier = new SnapshotVerifier(task, entries, post);
    return { type: 'done', report: verifier.run(task.snapshotPath) };
  } catch (error) {
    return unfinished(error, error instanceof VerifyStopped);
  }
}

const port = parentPort;
if (port === null) throw new Error('verify-thread.ts runs only as a worker thread');
const post = (message: VerifyMessage) => port.postMessage(message);
void verify(workerData as VerifyTask, post).then(post);
