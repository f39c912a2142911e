import fs from 'node:fs';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { errorCode } from './errno.js';
import { CHUNK_SIZE } from './file-data.js';
import { entryPathBytes } from './manifest-file.js';
import { NO_DATA, type Checksum, type CopyStats } from './manifest-lines.js';
import { forEachLine } from './text-lines.js';

/**
 * The files of the previous snapshot's manifest, by path: what an incremental copy decides from
 * instead of looking at the previous snapshot's files (see `copyTreeSync`), and what its totals
 * take file sizes from. Built once per copy (`buildPreviousIndex`) in shared memory, so every
 * thread of the copy reads the one index without a copy of it.
 *
 * Memory: per file of the previous snapshot 16 bytes of numbers, 16 of integers, 32 of checksum,
 * 8 of hash table and its path's bytes: about 72 + path length bytes (some 120 MB for a million
 * files with 50-byte paths), where a `Map` of strings and objects took about 250.
 */
export interface PreviousIndex {
  /** Open addressing: record number + 1 per slot, 0 when empty; a power of two of slots. */
  table: SharedArrayBuffer;
  /** Float64 per record: size, mtime (ms). */
  numbers: SharedArrayBuffer;
  /** Int32 per record: path offset, path length, mode (`& 0o7777`), `NO_DATA_FLAG` or 0. */
  integers: SharedArrayBuffer;
  /** 32 bytes per record: the SHA-256. */
  checksums: SharedArrayBuffer;
  /** The paths' bytes, one after the other. */
  paths: SharedArrayBuffer;
  /**
   * When the previous manifest was last written (ms): its snapshot was complete by then. A
   * folder of that snapshot changed later (an entry replaced, added or removed) is not trusted
   * to the manifest, and a source file whose inode changed later (ctime) has its owner checked.
   */
  writtenMs: number;
  /**
   * When the previous copy started (ms; 0 when unknown): a source file whose inode has not
   * changed since (ctime) still has the owner it had then, which the previous copy kept.
   */
  startedMs: number;
}

const NO_DATA_FLAG = 1;
const INTS = 4;
const NUMBERS = 2;
const SHA_BYTES = 32;

/** A file of the previous manifest, as `PreviousIndex.lookup` answers it. */
export interface PreviousFile extends CopyStats {
  checksum: Checksum;
}

/**
 * Reads the manifest `file` into an index; undefined when it is missing or damaged (not JSON):
 * then nothing is trusted to it and the copy looks at the previous snapshot's files instead.
 * Synchronous, for a copy thread (or a small job's own thread); `checkStop` is called every so many lines.
 */
export function buildPreviousIndex(
  file: string,
  startedMs: number,
  checkStop: () => void = () => undefined,
): PreviousIndex | undefined {
  const builder = new Builder();
  let writtenMs: number;
  try {
    writtenMs = fs.statSync(file).mtimeMs;
    forEachLine(file, Buffer.allocUnsafe(CHUNK_SIZE), checkStop, (line) => {
      const entry = JSON.parse(line) as ManifestEntry;
      if (entry.type !== 'file') return;
      const noData = entry.sha256 === undefined;
      if (noData && entry.noData !== true) return;
      builder.add(entryPathBytes(entry), entry.size, entry.mode, entry.mtime, noData ? undefined : entry.sha256);
    });
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || error instanceof SyntaxError) return undefined;
    throw error;
  }
  return builder.finish(writtenMs, startedMs);
}

/** Looks files up in a `PreviousIndex` (one reader per thread: views over the shared memory). */
export class PreviousIndexReader {
  readonly #table: Int32Array;
  readonly #numbers: Float64Array;
  readonly #integers: Int32Array;
  readonly #checksums: Buffer;
  readonly #paths: Buffer;
  readonly writtenMs: number;
  readonly startedMs: number;

  constructor(index: PreviousIndex) {
    this.#table = new Int32Array(index.table);
    this.#numbers = new Float64Array(index.numbers);
    this.#integers = new Int32Array(index.integers);
    this.#checksums = Buffer.from(index.checksums);
    this.#paths = Buffer.from(index.paths);
    this.writtenMs = index.writtenMs;
    this.startedMs = index.startedMs;
  }

  /** The record number of the file at `relative` (bytes, relative to the snapshot root), or -1. */
  find(relative: Buffer): number {
    const mask = this.#table.length - 1;
    for (let slot = hash(relative) & mask; ; slot = (slot + 1) & mask) {
      const found = this.#table[slot] ?? 0;
      if (found === 0) return -1;
      const record = found - 1;
      const offset = this.#integers[record * INTS] ?? 0;
      const length = this.#integers[record * INTS + 1] ?? 0;
      if (length === relative.length && this.#paths.compare(relative, 0, length, offset, offset + length) === 0) {
        return record;
      }
    }
  }

  size(record: number): number {
    return this.#numbers[record * NUMBERS] ?? 0;
  }

  /** The file's size, mode, mtime and checksum as the manifest gives them. */
  file(record: number): PreviousFile {
    const noData = ((this.#integers[record * INTS + 3] ?? 0) & NO_DATA_FLAG) !== 0;
    return {
      size: this.#numbers[record * NUMBERS] ?? 0,
      mtimeMs: this.#numbers[record * NUMBERS + 1] ?? 0,
      mode: this.#integers[record * INTS + 2] ?? 0,
      checksum: noData ? NO_DATA : this.#checksums.toString('hex', record * SHA_BYTES, (record + 1) * SHA_BYTES),
    };
  }
}

/** FNV-1a, 32 bits. */
function hash(bytes: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i += 1) h = Math.imul(h ^ (bytes[i] ?? 0), 0x01000193);
  return h >>> 0;
}

/** Grows plain buffers while the manifest is read, then copies them once into shared memory. */
class Builder {
  #count = 0;
  #numbers = new Float64Array(1024 * NUMBERS);
  #integers = new Int32Array(1024 * INTS);
  #checksums = Buffer.alloc(1024 * SHA_BYTES);
  #paths = Buffer.alloc(64 * 1024);
  #pathBytes = 0;

  add(relative: Buffer, size: number, mode: number, mtimeMs: number, sha256: string | undefined): void {
    if (this.#count * NUMBERS >= this.#numbers.length) {
      this.#numbers = grow(this.#numbers, Float64Array);
      this.#integers = grow(this.#integers, Int32Array);
      const checksums = Buffer.alloc(this.#checksums.length * 2);
      this.#checksums.copy(checksums);
      this.#checksums = checksums;
    }
    while (this.#pathBytes + relative.length > this.#paths.length) {
      const paths = Buffer.alloc(this.#paths.length * 2);
      this.#paths.copy(paths, 0, 0, this.#pathBytes);
      this.#paths = paths;
    }
    const record = this.#count;
    relative.copy(this.#paths, this.#pathBytes);
    this.#numbers[record * NUMBERS] = size;
    this.#numbers[record * NUMBERS + 1] = mtimeMs;
    this.#integers.set(
      [this.#pathBytes, relative.length, mode & 0o7777, sha256 === undefined ? NO_DATA_FLAG : 0],
      record * INTS,
    );
    if (sha256 !== undefined) this.#checksums.write(sha256, record * SHA_BYTES, SHA_BYTES, 'hex');
    this.#pathBytes += relative.length;
    this.#count += 1;
  }

  finish(writtenMs: number, startedMs: number): PreviousIndex {
    const count = this.#count;
    let slots = 2;
    while (slots < count * 2) slots *= 2;
    const index: PreviousIndex = {
      table: new SharedArrayBuffer(slots * 4),
      numbers: shared(this.#numbers.subarray(0, count * NUMBERS)),
      integers: shared(this.#integers.subarray(0, count * INTS)),
      checksums: shared(this.#checksums.subarray(0, count * SHA_BYTES)),
      paths: shared(this.#paths.subarray(0, this.#pathBytes)),
      writtenMs,
      startedMs,
    };
    const table = new Int32Array(index.table);
    const integers = new Int32Array(index.integers);
    const paths = Buffer.from(index.paths);
    const mask = slots - 1;
    for (let record = 0; record < count; record += 1) {
      const offset = integers[record * INTS] ?? 0;
      const path = paths.subarray(offset, offset + (integers[record * INTS + 1] ?? 0));
      let slot = hash(path) & mask;
      // A path listed twice (never, in a manifest Coffer wrote) keeps its first record.
      let duplicate = false;
      for (let found = table[slot] ?? 0; found !== 0; slot = (slot + 1) & mask, found = table[slot] ?? 0) {
        const other = found - 1;
        const otherOffset = integers[other * INTS] ?? 0;
        const otherLength = integers[other * INTS + 1] ?? 0;
        if (
          otherLength === path.length &&
          paths.compare(path, 0, path.length, otherOffset, otherOffset + otherLength) === 0
        ) {
          duplicate = true;
          break;
        }
      }
      if (!duplicate) table[slot] = record + 1;
    }
    return index;
  }
}

function grow<T extends Float64Array | Int32Array>(array: T, Kind: new (length: number) => T): T {
  const grown = new Kind(array.length * 2);
  grown.set(array);
  return grown;
}

function shared(view: ArrayBufferView): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(Math.max(view.byteLength, 8));
  new Uint8Array(buffer).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  return buffer;
}
