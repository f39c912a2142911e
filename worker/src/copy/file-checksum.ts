import { createHash, type Hash } from 'node:crypto';
import fs, { type Stats } from 'node:fs';
import { HASHED_ZEROS_LIMIT, hashData, hashZeros, holdsNoData, looksSparse, type BetweenChunks } from './file-data.js';
import { NO_DATA, type Checksum } from './manifest-lines.js';
import { FILE_FLAGS } from './open-at.js';

/**
 * The checksum of the contents of the open regular file `fd` (described by `stats`): `read`
 * feeds them to the hash it is given (copying them on the way, say). A file that holds no data
 * (see `holdsNoData`) is not read: `noData` runs instead (to make its copy by size) and its
 * zeros are hashed, unless it is larger than `HASHED_ZEROS_LIMIT`: then it is `NO_DATA`.
 * `types` caches file system types by device.
 */
export function checksumContents(
  fd: number,
  stats: Stats,
  types: Map<number, number>,
  between: BetweenChunks,
  read: (hash: Hash) => void,
  noData: () => void = () => undefined,
): Checksum {
  const hash = createHash('sha256');
  if (looksSparse(stats) && holdsNoData(fd, stats, types)) {
    noData();
    if (stats.size > HASHED_ZEROS_LIMIT) return NO_DATA;
    hashZeros(stats.size, hash, between);
  } else {
    read(hash);
  }
  return hash.digest('hex');
}

/** Reads the regular file at `file` (never through a link) through `buffer` and returns its checksum. */
export function checksumOfFile(
  file: Buffer,
  buffer: Buffer,
  types: Map<number, number>,
  between: BetweenChunks,
): Checksum {
  const fd = fs.openSync(file, FILE_FLAGS);
  try {
    const stats = fs.fstatSync(fd);
    return checksumContents(fd, stats, types, between, (hash) => hashData(fd, stats.size, buffer, hash, between));
  } finally {
    fs.closeSync(fd);
  }
}
