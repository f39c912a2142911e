import { createHash } from 'node:crypto';
import fs, { constants } from 'node:fs';
import path from 'node:path';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { CopyStopped } from './copy-tree-sync.js';
import { errorCode } from './errno.js';
import { CHUNK_SIZE, appendAll } from './file-data.js';
import { checksumOfFile } from './file-checksum.js';
import { LinkRegistry } from './hard-links.js';
import { NO_DATA, fileLineEnd, type Checksum } from './manifest-lines.js';
import { COMPLETE_SUFFIX, PENDING_SUFFIX, isReference, type ChecksumReference } from './manifest-parts.js';
import { entryPathBytes } from './manifest-file.js';
import { forEachChunk, forEachLine } from './text-lines.js';

/** What assembling a copy's manifest needs to know. */
export interface ManifestAssembly {
  /** The folder of parts the copy's tasks wrote (see `ManifestPart`). */
  parts: string;
  /** The new file to write the manifest to. */
  output: string;
  /** The copy, whose files are read when no checksum of theirs is recorded anywhere. */
  target: string;
  /** The copy's registry of hard links, with the checksums of the registered copies. */
  links: string;
  /** The manifest of the previous copy its unchanged files were linked from, if it has one. */
  previousManifest?: string;
}

const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Writes the manifest of a finished copy: its parts' complete lines as they are, and the lines
 * waiting for a checksum completed (see `ChecksumReference`). Returns the SHA-256 (hex) of what
 * it wrote. Memory does not grow with the number of lines, except for the previous manifest's
 * checksums when some file refers to them: a Map of base64 path → hex checksum, about 200 bytes
 * per file of the previous copy (some 200 MB for a million files), loaded once per copy, in
 * this one thread. Synchronous, for a copy thread; throws `CopyStopped` once `shouldStop` says so.
 */
export function assembleManifestSync(assembly: ManifestAssembly, shouldStop: () => boolean): string {
  const checkStop = () => {
    if (shouldStop()) throw new CopyStopped();
  };
  const out = fs.openSync(assembly.output, NEW_FILE, 0o600);
  try {
    const writer = new HashingWriter(out);
    const checksums = new ChecksumResolver(assembly, checkStop);
    const buffer = Buffer.allocUnsafe(CHUNK_SIZE);
    for (const part of listParts(assembly.parts)) {
      const file = path.join(assembly.parts, part);
      if (part.endsWith(COMPLETE_SUFFIX)) {
        forEachChunk(file, buffer, (chunk) => {
          checkStop();
          writer.write(chunk);
        });
      } else if (part.endsWith(PENDING_SUFFIX)) {
        forEachLine(file, buffer, checkStop, (line) => {
          const tab = line.indexOf('\t');
          writer.add(line.slice(tab + 1) + fileLineEnd(checksums.resolve(line.slice(0, tab))));
        });
      }
    }
    return writer.end();
  } finally {
    fs.closeSync(out);
  }
}

/** Finds the checksums `ChecksumReference`s lead to. */
class ChecksumResolver {
  readonly #assembly: ManifestAssembly;
  readonly #registry: LinkRegistry;
  readonly #checkStop: () => void;
  readonly #buffer = Buffer.allocUnsafe(CHUNK_SIZE);
  readonly #fileSystemTypes = new Map<number, number>();
  #previous: Map<string, Checksum> | undefined;

  constructor(assembly: ManifestAssembly, checkStop: () => void) {
    this.#assembly = assembly;
    this.#registry = new LinkRegistry(assembly.links);
    this.#checkStop = checkStop;
  }

  resolve(reference: ChecksumReference): Checksum {
    if (reference.startsWith('i')) {
      const recorded = this.#registry.recordedChecksum(reference.slice(1));
      return isReference(recorded) ? this.resolve(recorded) : recorded;
    }
    // `p<base64 path>`: the previous manifest's, or the copy's own contents when it has none.
    const key = reference.slice(1);
    return this.#previousChecksums().get(key) ?? this.#readCopy(Buffer.from(key, 'base64'));
  }

  #readCopy(relative: Buffer): Checksum {
    const file = Buffer.concat([Buffer.from(`${this.#assembly.target}/`), relative]);
    return checksumOfFile(file, this.#buffer, this.#fileSystemTypes, this.#checkStop);
  }

  #previousChecksums(): Map<string, Checksum> {
    if (this.#previous) return this.#previous;
    this.#previous = new Map();
    const file = this.#assembly.previousManifest;
    if (file === undefined) return this.#previous;
    const checksums = this.#previous;
    try {
      forEachLine(file, this.#buffer, this.#checkStop, (line) => {
        const entry = JSON.parse(line) as ManifestEntry;
        if (entry.type !== 'file') return;
        const checksum = entry.sha256 ?? (entry.noData === true ? NO_DATA : undefined);
        if (checksum !== undefined) checksums.set(entryPathBytes(entry).toString('base64'), checksum);
      });
    } catch (error) {
      // Removed since (pruned) or damaged: the files are read instead, none trusted to it.
      if (errorCode(error) !== 'ENOENT' && !(error instanceof SyntaxError)) throw error;
      checksums.clear();
    }
    return checksums;
  }
}

/** Writes to `fd` and hashes what it wrote; small texts are gathered into larger writes. */
class HashingWriter {
  readonly #fd: number;
  readonly #hash = createHash('sha256');
  #buffered = '';

  constructor(fd: number) {
    this.#fd = fd;
  }

  add(text: string): void {
    this.#buffered += text;
    if (this.#buffered.length >= CHUNK_SIZE) this.#flush();
  }

  write(bytes: Buffer): void {
    this.#flush();
    this.#hash.update(bytes);
    appendAll(this.#fd, bytes);
  }

  /** Writes what is left; returns the hex SHA-256 of everything written. */
  end(): string {
    this.#flush();
    return this.#hash.digest('hex');
  }

  #flush(): void {
    if (this.#buffered === '') return;
    const bytes = Buffer.from(this.#buffered);
    this.#buffered = '';
    this.#hash.update(bytes);
    appendAll(this.#fd, bytes);
  }
}

function listParts(parts: string): string[] {
  try {
    return fs.readdirSync(parts);
  } catch (error) {
    // No task wrote a line: nothing below the root.
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}
