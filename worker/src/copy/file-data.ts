import fs, { type Stats } from 'node:fs';
import type { Hash } from 'node:crypto';
import { fdPath } from './open-at.js';

// statfs(2) types of local file systems whose st_blocks counts every block holding data, so a
// file with none holds only zeros: ext2/3/4, xfs, btrfs, tmpfs, overlayfs.
const HONEST_BLOCK_COUNTS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630]);
// Larger than any data a file system keeps inline, in its inode, without counting blocks.
const INLINE_LIMIT = 1024 * 1024;
// The unit in which zeros are left out: a file system block.
const HOLE_BLOCK = 4096;
/**
 * Bytes read at a time (a multiple of `HOLE_BLOCK`). Measured on a 1 GiB file: 1 MiB was no
 * faster, even a little slower; this much stays in the CPU's cache between read, hash and write.
 */
export const CHUNK_SIZE = 32 * HOLE_BLOCK;
/** A file holding no data and larger than this is not hashed (see `ManifestEntry.noData`). */
export const HASHED_ZEROS_LIMIT = 2 ** 30;
const ZEROS = Buffer.alloc(CHUNK_SIZE);

/** Called between chunks with the bytes done so far; may throw to stop. */
export type BetweenChunks = (done: number) => void;

/** Whether a file system (by its statfs(2) type) counts in st_blocks every block that holds data. */
export function countsBlocksHonestly(fileSystemType: number): boolean {
  return HONEST_BLOCK_COUNTS.has(fileSystemType);
}

/** Whether a file holds fewer blocks than its size needs: it has holes (or is compressed). */
export function looksSparse(stats: Stats): boolean {
  return stats.blocks * 512 < stats.size;
}

/**
 * Tells whether the open file `fd` (described by `stats`) holds no data at all, without reading
 * it: no blocks, too large for inline data, on a file system whose block counts can be trusted.
 * `types` caches file system types by device. Such a file (say `truncate -s 100T`) would take
 * days to read and is made by its size alone.
 */
export function holdsNoData(fd: number, stats: Stats, types: Map<number, number>): boolean {
  if (stats.blocks !== 0 || stats.size <= INLINE_LIMIT) return false;
  let type = types.get(stats.dev);
  if (type === undefined) {
    type = fs.statfsSync(fdPath(fd)).type;
    types.set(stats.dev, type);
  }
  return countsBlocksHonestly(type);
}

/**
 * Copies the open file `from`, of `size` bytes when it was fstat'ed, into the open, empty file
 * `to`, through `buffer` (a multiple of `HOLE_BLOCK`), feeding every byte read to `hash` on the
 * way: the file is read once for both. With `holes`, as `cp --sparse=auto` does: blocks of
 * zeros are hashed but not written, so they stay holes, and the size is set last. Calls
 * `between` between chunks, so a huge file shows progress and does not hold up a stop.
 * Returns the bytes read (and copied), which differ from `size` when the file changed since.
 */
export function copyData(
  from: number,
  to: number,
  size: number,
  buffer: Buffer,
  hash: Hash,
  holes: boolean,
  between: BetweenChunks,
): number {
  const position = readChunks(from, size, buffer, between, (read, at) => {
    const chunk = read === buffer.length ? buffer : buffer.subarray(0, read);
    hash.update(chunk);
    if (holes) writeData(to, buffer, read, at);
    else writeAll(to, buffer, 0, read, at);
  });
  if (holes) fs.ftruncateSync(to, position);
  return position;
}

/** Feeds the contents of the open file `from` (of `size` bytes when fstat'ed) to `hash`, through `buffer`. */
export function hashData(from: number, size: number, buffer: Buffer, hash: Hash, between: BetweenChunks): void {
  readChunks(from, size, buffer, between, (read) => {
    hash.update(read === buffer.length ? buffer : buffer.subarray(0, read));
  });
}

/** Feeds `size` zeros to `hash` without reading anything: the contents of a file that holds no data. */
export function hashZeros(size: number, hash: Hash, between: BetweenChunks): void {
  for (let done = 0; done < size;) {
    const length = Math.min(ZEROS.length, size - done);
    hash.update(length === ZEROS.length ? ZEROS : ZEROS.subarray(0, length));
    done += length;
    if (done < size) between(done);
  }
}

/** Reads `from` through `buffer` to its end, handing each chunk to `use`; returns the bytes read. */
function readChunks(
  from: number,
  size: number,
  buffer: Buffer,
  between: BetweenChunks,
  use: (read: number, position: number) => void,
): number {
  let position = 0;
  for (;;) {
    const read = fs.readSync(from, buffer, 0, buffer.length, position);
    use(read, position);
    position += read;
    // A short read past the known size is the end, which spares a small file a second read;
    // before it, a short read (FUSE, NFS) is only a short read.
    if (read === 0 || (read < buffer.length && position >= size)) return position;
    between(position);
  }
}

/** Writes the blocks of `buffer[0, length)` that are not all zeros, at `base` onwards. */
function writeData(fd: number, buffer: Buffer, length: number, base: number): void {
  let dataStart = -1;
  for (let offset = 0; offset < length; offset += HOLE_BLOCK) {
    const end = Math.min(offset + HOLE_BLOCK, length);
    const zero = buffer.compare(ZEROS, 0, end - offset, offset, end) === 0;
    if (!zero && dataStart < 0) dataStart = offset;
    if (zero && dataStart >= 0) {
      writeAll(fd, buffer, dataStart, offset, base);
      dataStart = -1;
    }
  }
  if (dataStart >= 0) writeAll(fd, buffer, dataStart, length, base);
}

/** Writes `buffer[start, end)` at `base + start`, however many calls it takes. */
function writeAll(fd: number, buffer: Buffer, start: number, end: number, base: number): void {
  for (let at = start; at < end;) at += fs.writeSync(fd, buffer, at, end - at, base + at);
}

/** Writes all of `bytes` at the current position of `fd`, however many calls it takes. */
export function appendAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length;) at += fs.writeSync(fd, bytes, at);
}
