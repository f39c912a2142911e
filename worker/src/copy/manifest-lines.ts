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
  return `${lineStart(relative, 'dir', 0, copy)}}\n`;
}

/** The manifest line of a symbolic link's copy, whose target text is `target`. */
export function linkLine(relative: Buffer, copy: CopyStats, target: Buffer): string {
  const { path: text, pathBase64: bytes } = displayPath(target);
  const base64 = bytes === undefined ? '' : `,"targetBase64":"${bytes}"`;
  return `${lineStart(relative, 'link', target.length, copy)},"target":${JSON.stringify(text)}${base64}}\n`;
}

/**
 * The manifest line of a file's copy, but for its checksum and closing brace: what `fileLineEnd`
 * completes, once the checksum is known (see manifest-parts.ts).
 */
export function fileLineStart(relative: Buffer, copy: CopyStats): string {
  return lineStart(relative, 'file', copy.size, copy);
}

/** The end of a file's manifest line, newline included. */
export function fileLineEnd(checksum: Checksum): string {
  return checksum === NO_DATA ? ',"noData":true}\n' : `,"sha256":"${checksum}"}\n`;
}

/**
 * The fields every line starts with, in the order the schema (`ManifestEntry`) lists them. Put
 * together by hand: `JSON.stringify` of an object cost more than copying a small file.
 */
function lineStart(relative: Buffer, type: ManifestEntry['type'], size: number, copy: CopyStats): string {
  const { path: text, pathBase64: bytes } = displayPath(relative);
  const base64 = bytes === undefined ? '' : `,"pathBase64":"${bytes}"`;
  // A number's text is as JSON writes it.
  return `{"path":${JSON.stringify(text)}${base64},"type":"${type}","size":${size},"mode":${copy.mode & 0o7777},"mtime":${copy.mtimeMs}`;
}
