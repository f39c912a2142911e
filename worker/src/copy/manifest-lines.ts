import { isUtf8 } from 'node:buffer';
import type { Stats } from 'node:fs';
import type { ManifestEntry } from '@coffer/shared/job-contract';

/** A file's SHA-256 in lowercase hex, or `NO_DATA` for a file made by its size alone (not hashed). */
export type Checksum = string;
export const NO_DATA = '-';

/** What a manifest line takes from the stats of an entry's copy. */
export type CopyStats = Pick<Stats, 'size' | 'mode' | 'mtimeMs'>;

/** A path (or link target) for display, and its bytes too when decoding as UTF-8 lost some. */
export function displayPath(bytes: Buffer): { path: string; pathBase64?: string } {
  const shown = bytes.toString();
  return isUtf8(bytes) ? { path: shown } : { path: shown, pathBase64: bytes.toString('base64') };
}

/** The manifest line of a folder's copy, `relative` to the snapshot root. */
export function folderLine(relative: Buffer, copy: CopyStats): string {
  return line({ ...displayPath(relative), type: 'dir', size: 0, mode: copy.mode & 0o7777, mtime: copy.mtimeMs });
}

/** The manifest line of a symbolic link's copy, whose target text is `target`. */
export function linkLine(relative: Buffer, copy: CopyStats, target: Buffer): string {
  const { path: text, pathBase64: bytes } = displayPath(target);
  return line({
    ...displayPath(relative),
    type: 'link',
    size: target.length,
    mode: copy.mode & 0o7777,
    mtime: copy.mtimeMs,
    target: text,
    targetBase64: bytes,
  });
}

/**
 * The manifest line of a file's copy, but for its checksum and closing brace: what `fileLineEnd`
 * completes, once the checksum is known (see manifest-parts.ts).
 */
export function fileLineStart(relative: Buffer, copy: CopyStats): string {
  const whole = JSON.stringify({
    ...displayPath(relative),
    type: 'file',
    size: copy.size,
    mode: copy.mode & 0o7777,
    mtime: copy.mtimeMs,
  } satisfies ManifestEntry);
  return whole.slice(0, -1);
}

/** The end of a file's manifest line, newline included. */
export function fileLineEnd(checksum: Checksum): string {
  return checksum === NO_DATA ? ',"noData":true}\n' : `,"sha256":"${checksum}"}\n`;
}

// Field order as the schema lists them; `JSON.stringify` leaves out fields that are undefined.
function line(entry: ManifestEntry): string {
  return `${JSON.stringify(entry)}\n`;
}
