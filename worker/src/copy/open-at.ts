// Opening entries relative to open folders, never through a link. Node has no openat(2), but
// on Linux `/proc/<pid>/fd/<fd>/<name>` resolves `name` inside the open folder `fd` whatever
// its path has become since, and a thread may use an fd another thread opened.
import fs, { constants, type Dirent, type Stats } from 'node:fs';
import { errorCode } from './errno.js';
import { UnsupportedSourceError } from './unsupported-source.js';

/** A folder to list: fails with ELOOP on a link and ENOTDIR on anything else but a folder. */
export const FOLDER_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** A file to read: ELOOP on a link; a FIFO swapped in opens without waiting for a writer. */
export const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
// Node does not export O_PATH; this is its value on every architecture Node supports on Linux.
const O_PATH = 0o10000000;
/** A folder only looked through (needs search permission only, as a path lookup does), never read. */
export const LOOKUP_FLAGS = O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW;

// Entries read per readdir batch: memory stays bounded whatever the folder's size.
const DIR_BUFFER_SIZE = 128;
// `/proc/<pid>` rather than `/proc/self`, a link resolved again at every call (about 10% of a lookup).
const FD_PATHS = `/proc/${process.pid}/fd/`;
const SEPARATOR = Buffer.from('/');

/** `/proc/<pid>/fd/<fd>`: the open file itself, as a path. */
export function fdPath(fd: number): string {
  return FD_PATHS + String(fd);
}

/** `/proc/<pid>/fd/<fd>/`: what `entryPath` puts names after. */
export function folderPrefix(fd: number): Buffer {
  return Buffer.from(`${fdPath(fd)}/`);
}

/** The entry `name` of the folder whose `folderPrefix` is `prefix`: its last component is never followed by a no-follow call. */
export function entryPath(prefix: Buffer, name: Buffer): Buffer {
  return Buffer.concat([prefix, name]);
}

/** `a/b` from `a` (empty for the top) and `b`, as bytes. */
export function childPath(parent: Buffer, name: Buffer): Buffer {
  return parent.length === 0 ? name : Buffer.concat([parent, SEPARATOR, name]);
}

/** Tells whether an error's path names an entry by an fd path rather than by its real path. */
export function isFdPath(errorPath: string | undefined): boolean {
  return errorPath?.startsWith(FD_PATHS) === true;
}

/** A listing with names as bytes. */
export interface ByteDir {
  readSync(): Dirent<Buffer> | null;
  closeSync(): void;
}

// Node lists names as Buffers with the encoding 'buffer', though its types allow only text
// encodings there and type the entries' names as strings whatever the encoding.
const BYTE_NAMES = { encoding: 'buffer', bufferSize: DIR_BUFFER_SIZE } as unknown as fs.OpenDirOptions;

/** Lists the open folder `fd` (through a second open of the same folder, which Dir needs). */
export function listFolder(fd: number): ByteDir {
  return fs.opendirSync(fdPath(fd), BYTE_NAMES) as unknown as ByteDir;
}

/** Dirent kinds that are never opened: FIFOs, sockets, devices. */
export function isSpecial(entry: Dirent<Buffer>): boolean {
  return entry.isFIFO() || entry.isSocket() || entry.isCharacterDevice() || entry.isBlockDevice();
}

/** Opens `path` with `flags`, or undefined when one of `absent` codes says there is nothing (fit) there. */
export function openIfThere(path: Buffer, flags: number, absent: ReadonlySet<string>): number | undefined {
  try {
    return fs.openSync(path, flags);
  } catch (error) {
    if (absent.has(errorCode(error) ?? '')) return undefined;
    throw error;
  }
}

export interface OpenRoot {
  /** The source, open: a folder with `FOLDER_FLAGS`, a file with `FILE_FLAGS`. */
  fd: number;
  stats: Stats;
}

/**
 * Opens `source` (an absolute real path, checked by the caller a moment ago) one component at
 * a time from `/`, never following a link: a component swapped for one since the check fails
 * with ELOOP rather than lead elsewhere. Throws `UnsupportedSourceError` for a source neither
 * file nor folder (which is not opened), and errors that name `source` itself.
 */
export function openSourceRoot(source: string): OpenRoot {
  const names = source.split('/').filter((name) => name !== '');
  const last = names.pop();
  let parent = fs.openSync('/', LOOKUP_FLAGS);
  try {
    if (last === undefined) return openChecked(fs.openSync('/', FOLDER_FLAGS), fs.statSync('/'), source);
    for (const name of names) {
      const next = openComponent(parent, name, LOOKUP_FLAGS, source);
      fs.closeSync(parent);
      parent = next;
    }
    const seen = fs.lstatSync(entryPath(folderPrefix(parent), Buffer.from(last)));
    if (!seen.isFile() && !seen.isDirectory()) throw new UnsupportedSourceError(source);
    return openChecked(
      openComponent(parent, last, seen.isDirectory() ? FOLDER_FLAGS : FILE_FLAGS, source),
      seen,
      source,
    );
  } catch (error) {
    throw namedAfter(error, source);
  } finally {
    fs.closeSync(parent);
  }
}

/** Opens the component `name` of the source's path in the open folder `parent`. */
function openComponent(parent: number, name: string, flags: number, source: string): number {
  const path = entryPath(folderPrefix(parent), Buffer.from(name));
  try {
    return fs.openSync(path, flags);
  } catch (error) {
    // O_DIRECTORY answers ENOTDIR before O_NOFOLLOW can answer ELOOP: a link is told apart here.
    if (errorCode(error) !== 'ENOTDIR' || !fs.lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink()) throw error;
    throw Object.assign(new Error(`source ${source} leads through a link since it was checked (${name})`), {
      code: 'ELOOP',
      path: source,
    });
  }
}

/** `fd` with its stats, when it is what `seen` (from lstat) described; closed otherwise. */
function openChecked(fd: number, seen: Stats, source: string): OpenRoot {
  const stats = fs.fstatSync(fd);
  if (stats.dev === seen.dev && stats.ino === seen.ino) return { fd, stats };
  fs.closeSync(fd);
  throw Object.assign(new Error(`source ${source} changed while it was being opened`), {
    code: 'ECHANGED',
    path: source,
  });
}

/** Gives a system error met on an fd path the real path it stands for (messages and failure codes use it). */
export function namedAfter(error: unknown, realPath: string): unknown {
  const failed = error as NodeJS.ErrnoException;
  if (error instanceof Error && isFdPath(failed.path)) {
    failed.message = failed.message.replace(failed.path ?? '', realPath);
    failed.path = realPath;
  }
  return error;
}
