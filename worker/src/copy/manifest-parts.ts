import fs, { constants } from 'node:fs';
import path from 'node:path';
import { appendAll } from './file-data.js';
import { fileLineEnd, fileLineStart, type CopyStats } from './manifest-lines.js';

/**
 * The scratch folder where the tasks of a copy into `target` write their manifest lines, one
 * part each (threads share no memory): beside it, assembled and removed by `copyTree`.
 */
export function manifestPartsOf(target: string): string {
  return `${target}.lines`;
}

/**
 * Where to find the checksum of a file whose copy did not read it, resolved when the parts are
 * assembled (see manifest-assembly.ts). Starts with `p` or `i`, so never mistaken for a
 * `Checksum` (hex, or `NO_DATA`).
 */
export type ChecksumReference = string;

/** A `Checksum`, or a `ChecksumReference` to one. */
export type ChecksumSource = string;

/** The checksum the previous copy's manifest gives the file at `relative` (the same path there). */
export function inPreviousManifest(relative: Buffer): ChecksumReference {
  return `p${relative.toString('base64')}`;
}

/** The checksum recorded along with the registered copy of inode `key` (see `LinkRegistry`). */
export function ofRegisteredInode(key: string): ChecksumReference {
  return `i${key}`;
}

export function isReference(value: ChecksumSource): boolean {
  return value.startsWith('p') || value.startsWith('i');
}

/** A part's complete lines. */
export const COMPLETE_SUFFIX = '.ndjson';
/** A part's lines waiting for a checksum: `<reference>\t<line start>` (see `fileLineStart`). */
export const PENDING_SUFFIX = '.pending';
// Lines are written in batches of about this many characters: few writes, bounded memory.
const FLUSH_AT = 64 * 1024;
const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** The manifest lines of one copy task, `<parts>/<id>.ndjson` and `<id>.pending`, each created at its first line. */
export class ManifestPart {
  readonly #complete: PartFile;
  readonly #pending: PartFile;

  constructor(parts: string, id: number) {
    this.#complete = new PartFile(path.join(parts, `${id}${COMPLETE_SUFFIX}`));
    this.#pending = new PartFile(path.join(parts, `${id}${PENDING_SUFFIX}`));
  }

  /** A complete line (newline included). */
  add(line: string): void {
    this.#complete.add(line);
  }

  /** A file's line, whose checksum may still be a reference. */
  addFile(relative: Buffer, copy: CopyStats, checksum: ChecksumSource): void {
    const start = fileLineStart(relative, copy);
    if (isReference(checksum)) this.#pending.add(`${checksum}\t${start}\n`);
    else this.#complete.add(start + fileLineEnd(checksum));
  }

  /** Writes what is still buffered; the task is complete. */
  flush(): void {
    this.#complete.flush();
    this.#pending.flush();
  }

  /** Closes the files, whatever happened; what was not flushed is lost. */
  close(): void {
    this.#complete.close();
    this.#pending.close();
  }
}

class PartFile {
  readonly #path: string;
  #fd: number | undefined;
  #buffered = '';

  constructor(file: string) {
    this.#path = file;
  }

  add(text: string): void {
    this.#buffered += text;
    if (this.#buffered.length >= FLUSH_AT) this.flush();
  }

  flush(): void {
    if (this.#buffered === '') return;
    this.#fd ??= fs.openSync(this.#path, NEW_FILE, 0o600);
    appendAll(this.#fd, Buffer.from(this.#buffered));
    this.#buffered = '';
  }

  close(): void {
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }
}
