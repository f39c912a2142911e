// The thread that deletes removed snapshots (see tree-remover.ts): synchronous calls, one
// system call per entry as `rm -rf` makes, off the main thread whose event loop renews the
// job's lock. Folders are opened without following links and emptied through their open
// descriptor, so a folder swapped for a link meanwhile is unlinked, never entered.
import fs, { constants } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { errorCode } from '../copy/errno.js';
import { serializeError } from '../copy/thread-failure.js';
import { STOP_FLAG, type RemoveReply, type RemoveRequest, type RemoverData } from './remove-protocol.js';

const FOLDER_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
// Node does not export O_PATH; its value on every architecture Node supports on Linux.
const O_PATH = 0o10000000;
const LOOKUP_FLAGS = O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const FD_PATHS = `/proc/${process.pid}/fd/`;
// The stop flag is read once per this many entries: a cancel is seen within milliseconds.
const CHECK_EVERY = 256;
// Refused for lack of permission: a folder kept read-only from its source (when not root).
const DENIED = new Set(['EACCES', 'EPERM']);

class Stopped extends Error {}

const { state } = workerData as RemoverData;
const flag = new Int32Array(state);
let sinceCheck = 0;

function checkStop(): void {
  sinceCheck += 1;
  if (sinceCheck < CHECK_EVERY) return;
  sinceCheck = 0;
  if (Atomics.load(flag, STOP_FLAG) === 1) throw new Stopped();
}

const prefixOf = (fd: number) => Buffer.from(`${FD_PATHS}${fd}/`);

/** Makes the folder at `at` (never followed) searchable, readable and writable by its owner: us. */
function openUp(at: Buffer | string): void {
  const fd = fs.openSync(at, LOOKUP_FLAGS);
  try {
    // chmod through the descriptor's path changes the folder itself, which an O_PATH fd cannot.
    fs.chmodSync(FD_PATHS + String(fd), 0o700);
  } finally {
    fs.closeSync(fd);
  }
}

/** `call`, once more after opening up the folder `fd` when it was refused for lack of permission. */
function inWritable<T>(fd: number, call: () => T): T {
  try {
    return call();
  } catch (err) {
    if (!DENIED.has(errorCode(err) ?? '')) throw err;
    fs.fchmodSync(fd, 0o700);
    return call();
  }
}

/** Opens the folder at `at` to empty it: null when it is not one (or no longer there). */
function openFolder(at: Buffer | string): number | null {
  try {
    return fs.openSync(at, FOLDER_FLAGS);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENOENT') return null;
    if (!DENIED.has(code ?? '')) throw err;
    openUp(at);
    return fs.openSync(at, FOLDER_FLAGS);
  }
}

/** Deletes everything in the open folder `fd`. */
function empty(fd: number): void {
  const prefix = prefixOf(fd);
  const entries = fs.readdirSync(prefix, { withFileTypes: true, encoding: 'buffer' });
  for (const entry of entries) {
    checkStop();
    // Names stay bytes: a name that is not UTF-8 is deleted as it is.
    const at = Buffer.concat([prefix, entry.name]);
    if (entry.isDirectory()) removeFolder(fd, at);
    else removeEntry(fd, at);
  }
}

function removeEntry(parent: number, at: Buffer): void {
  try {
    inWritable(parent, () => fs.unlinkSync(at));
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT') return;
    // A folder where the listing saw something else: it became one since.
    if (code === 'EISDIR') removeFolder(parent, at);
    else throw err;
  }
}

function removeFolder(parent: number, at: Buffer): void {
  const fd = openFolder(at);
  if (fd === null) {
    // Swapped for a link or a file since it was listed: the name goes, whatever it points to stays.
    removeEntry(parent, at);
    return;
  }
  try {
    empty(fd);
  } finally {
    fs.closeSync(fd);
  }
  inWritable(parent, () => fs.rmdirSync(at));
}

/** Deletes `target` (an entry named through an open folder) and everything below it; gone already is fine. */
function removeTree(target: string): void {
  const stats = fs.lstatSync(target, { throwIfNoEntry: false });
  if (stats === undefined) return;
  // The parent is an open folder's own path (`/proc/<pid>/fd/<fd>`): following it is the point.
  const parent = fs.openSync(target.slice(0, target.lastIndexOf('/')), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const at = Buffer.from(target);
    if (stats.isDirectory()) removeFolder(parent, at);
    else removeEntry(parent, at);
  } finally {
    fs.closeSync(parent);
  }
}

const port = parentPort;
if (port === null) throw new Error('remove-thread runs as a worker thread');
port.on('message', (request: RemoveRequest) => {
  let reply: RemoveReply;
  try {
    // Requests queued behind a stop are not begun.
    if (Atomics.load(flag, STOP_FLAG) === 1) throw new Stopped();
    removeTree(request.target);
    reply = { id: request.id, type: 'done' };
  } catch (err) {
    reply =
      err instanceof Stopped
        ? { id: request.id, type: 'stopped' }
        : { id: request.id, type: 'failed', error: serializeError(err) };
  }
  port.postMessage(reply);
});
