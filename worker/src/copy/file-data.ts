import fs, { type Stats } from 'node:fs';
import { fdPath } from './open-at.js';

// statfs(2) types of local file systems whose st_blocks counts every block holding data, so a
// file with none holds only zeros: ext2/3/4, xfs, btrfs, tmpfs, overlayfs.
const HONEST_BLOCK_COUNTS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630]);
// Larger than any data a file system keeps inline, in its inode, without counting blocks.
const INLINE_LIMIT = 1024 * 1024;
// The unit in which zeros are left out: a file system block.
const HOLE_BLOCK = 4096;
/** Bytes read at a time (a multiple of `HOLE_BLOCK`). */
export const CHUNK_SIZE = 32 * HOLE_BLOCK;
const ZEROS = Buffer.alloc(HOLE_BLOCK);

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
 * `to`, through `buffer` (`CHUNK_SIZE` bytes). With `holes`, as `cp --sparse=auto` does: blocks
 * of zeros are not written, so they stay holes, and the size is set last. Calls `checkStop`
 * between chunks, so a huge file does not hold up a stop.
 */
export function copyData(
  from: number,
  to: number,
  size: number,
  buffer: Buffer,
  holes: boolean,
  checkStop: () => void,
): void {
  let position = 0;
  for (;;) {
    const read = fs.readSync(from, buffer, 0, buffer.length, position);
    if (holes) writeData(to, buffer, read, position);
    else writeAll(to, buffer, 0, read, position);
    position += read;
    // A short read past the known size is the end, which spares a small file a second read;
    // before it, a short read (FUSE, NFS) is only a short read.
    if (read === 0 || (read < buffer.length && position >= size)) break;
    checkStop();
  }
  if (holes) fs.ftruncateSync(to, position);
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
