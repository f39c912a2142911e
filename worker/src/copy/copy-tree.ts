import { constants, promises as fs, type Dirent, type Stats } from 'node:fs';
import path from 'node:path';
import { Semaphore } from './semaphore.js';

export interface CopyCounts {
  /** Regular files copied. */
  files: number;
  /** Total size of the regular files copied. */
  bytes: number;
  /** Directories created below the target (the target itself not counted). */
  dirs: number;
  /** Symbolic links recreated. */
  links: number;
  /** Entries of other kinds (FIFOs, sockets, devices), left out. */
  skipped: number;
}

export interface CopyOptions {
  /** Files copied at once, across the whole tree. Default 16. */
  concurrency?: number;
  /** Aborting stops new work, lets copies in flight settle, then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called after each file, link, directory or skipped entry; the caller throttles. */
  onProgress?: (counts: Readonly<CopyCounts>) => void;
}

/** The source is neither a regular file nor a directory (a FIFO, socket, device or link). */
export class UnsupportedSourceError extends Error {
  override readonly name = 'UnsupportedSourceError';
  constructor(readonly path: string) {
    super(`${path} is neither a regular file nor a directory`);
  }
}

export const DEFAULT_COPY_CONCURRENCY = 16;

// Directories are filled while private and owner-writable, so a read-only source
// directory can still be filled; they get their real mode once complete.
const FILLING_MODE = 0o700;
// Entries read per readdir batch: fewer thread-pool round trips, memory stays bounded.
const DIR_BUFFER_SIZE = 128;

/**
 * Copies `source` (a real path: a directory or a regular file) into `target`, which
 * must not exist yet. A directory's contents land directly in `target`; a file lands
 * in `target` under its base name. Files keep their mode and times, directories
 * their mode and times, links their target text (never followed) and times; FIFOs,
 * sockets and devices are skipped and counted, never opened.
 *
 * Rejects with the first error met (after copies in flight have settled) and leaves
 * the partial target in place: removing it is the caller's decision.
 */
export async function copyTree(source: string, target: string, options: CopyOptions = {}): Promise<CopyCounts> {
  return new TreeCopier(options).run(source, target);
}

/** Copies started in one directory; the directory is finished once they all settle. */
type Pending = Set<Promise<void>>;

class TreeCopier {
  readonly #counts: CopyCounts = { files: 0, bytes: 0, dirs: 0, links: 0, skipped: 0 };
  readonly #slots: Semaphore;
  readonly #signal: AbortSignal | undefined;
  readonly #onProgress: CopyOptions['onProgress'];
  #failure: { error: unknown } | undefined;

  constructor(options: CopyOptions) {
    this.#slots = new Semaphore(options.concurrency ?? DEFAULT_COPY_CONCURRENCY);
    this.#signal = options.signal;
    this.#onProgress = options.onProgress;
  }

  async run(source: string, target: string): Promise<CopyCounts> {
    this.#signal?.throwIfAborted();
    const stats = await fs.lstat(source);
    if (stats.isFile()) {
      await fs.mkdir(target);
      await this.#copyFile(source, path.join(target, path.basename(source)), stats);
    } else if (stats.isDirectory()) {
      await this.#copyRoot(source, target, stats);
    } else {
      throw new UnsupportedSourceError(source);
    }
    return { ...this.#counts };
  }

  async #copyRoot(source: string, target: string, stats: Stats): Promise<void> {
    await fs.mkdir(target, { mode: FILLING_MODE });
    const root: Pending = new Set();
    try {
      await this.#walkDirectory(source, target, stats, root);
    } catch (error) {
      this.#fail(error);
    }
    // Every copy started anywhere below is reachable from here: nothing outlives the call.
    await Promise.all(root);
    if (this.#signal?.aborted) throw this.#signal.reason;
    if (this.#failure) throw this.#failure.error;
  }

  /** Starts copying `src`'s entries into the existing `dst`; returns once all are started. */
  async #walkDirectory(src: string, dst: string, stats: Stats, parentPending: Pending): Promise<void> {
    const pending: Pending = new Set();
    try {
      const dir = await fs.opendir(src, { bufferSize: DIR_BUFFER_SIZE });
      // Leaving the loop early (return or throw) closes the directory handle.
      for await (const entry of dir) {
        if (this.#stopped()) return;
        await this.#visit(entry, src, dst, pending);
      }
    } finally {
      // Finished in the background, so the walk moves on to siblings while the
      // last copies inside this directory complete.
      track(parentPending, this.#finishDirectory(dst, stats, pending));
    }
  }

  async #visit(entry: Dirent, src: string, dst: string, pending: Pending): Promise<void> {
    const from = path.join(src, entry.name);
    const to = path.join(dst, entry.name);
    if (entry.isDirectory()) {
      await this.#copySubdirectory(from, to, pending);
    } else if (entry.isFile() || entry.isSymbolicLink()) {
      await this.#startCopy(from, to, pending);
    } else {
      this.#skip();
    }
  }

  async #copySubdirectory(from: string, to: string, pending: Pending): Promise<void> {
    const stats = await fs.lstat(from);
    await fs.mkdir(to, { mode: FILLING_MODE });
    this.#counts.dirs += 1;
    this.#report();
    await this.#walkDirectory(from, to, stats, pending);
  }

  /** Waits for a free slot, so the walk never runs more than `concurrency` copies ahead. */
  async #startCopy(from: string, to: string, pending: Pending): Promise<void> {
    await this.#slots.acquire();
    if (this.#stopped()) {
      this.#slots.release();
      return;
    }
    const copy = this.#copyEntry(from, to)
      .catch((error: unknown) => this.#fail(error))
      .finally(() => this.#slots.release());
    track(pending, copy);
  }

  async #copyEntry(from: string, to: string): Promise<void> {
    // The kind is checked again on the entry itself: the directory listing may be stale.
    const stats = await fs.lstat(from);
    if (stats.isFile()) await this.#copyFile(from, to, stats);
    else if (stats.isSymbolicLink()) await this.#copyLink(from, to, stats);
    else if (stats.isDirectory()) throw new Error(`${from} turned into a directory during the copy`);
    else this.#skip();
  }

  async #copyFile(from: string, to: string, stats: Stats): Promise<void> {
    // EXCL: the target is new, and it spares ext4 the truncate-and-flush of an
    // overwrite. copyFile gives the copy the source's mode.
    await fs.copyFile(from, to, constants.COPYFILE_EXCL);
    await fs.utimes(to, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    this.#counts.files += 1;
    this.#counts.bytes += stats.size;
    this.#report();
  }

  async #copyLink(from: string, to: string, stats: Stats): Promise<void> {
    // As bytes, so a link target that is not valid UTF-8 survives unchanged.
    const linkTarget = await fs.readlink(from, { encoding: 'buffer' });
    await fs.symlink(linkTarget, to);
    await fs.lutimes(to, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    this.#counts.links += 1;
    this.#report();
  }

  /** Gives a directory its mode and times once everything inside it is written. */
  async #finishDirectory(dst: string, stats: Stats, pending: Pending): Promise<void> {
    await Promise.all(pending);
    if (this.#stopped()) return;
    try {
      // Last, because writing the children changed the directory's mtime.
      await fs.chmod(dst, stats.mode & 0o7777);
      await fs.utimes(dst, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    } catch (error) {
      this.#fail(error);
    }
  }

  #skip(): void {
    this.#counts.skipped += 1;
    this.#report();
  }

  #report(): void {
    this.#onProgress?.({ ...this.#counts });
  }

  #fail(error: unknown): void {
    this.#failure ??= { error };
  }

  #stopped(): boolean {
    return this.#failure !== undefined || this.#signal?.aborted === true;
  }
}

/** Keeps `work` in `pending` until it settles; `work` must never reject. */
function track(pending: Pending, work: Promise<void>): void {
  pending.add(work);
  void work.finally(() => pending.delete(work));
}

// utimes takes seconds; from the *Ms fields (which keep the sub-millisecond part),
// the copy's times match the source's to well under a microsecond.
function seconds(ms: number): number {
  return ms / 1000;
}
