export interface CopyCounts {
  /** Regular files in the copy, whether copied or hard-linked. */
  files: number;
  /** Their total size. */
  bytes: number;
  /**
   * Of `files`, those hard-linked from the previous snapshot because they had not changed (of
   * several names of one inode, which stay one inode in the copy, only the first counts).
   */
  filesLinked: number;
  /** Their total size (written once, shared with the previous snapshot). */
  bytesLinked: number;
  /** Directories created below the target (the target itself not counted). */
  dirs: number;
  /** Symbolic links recreated. */
  links: number;
  /** Entries of other kinds (FIFOs, sockets, devices), left out. */
  skipped: number;
}

/**
 * An entry left out of the copy: it vanished (`ENOENT`), could not be opened (`EACCES`), or was
 * no longer what its folder's listing said, say a folder or file swapped for a link (`ECHANGED`).
 */
export interface CopyWarning {
  /** Relative to the source, decoded as UTF-8 for display (bytes that are not UTF-8 become U+FFFD). */
  path: string;
  /** The relative path's bytes in base64, present only when they are not valid UTF-8 (then `path` lost some). */
  pathBase64?: string;
  code: 'ENOENT' | 'EACCES' | 'ECHANGED';
}

export interface CopyWarnings {
  /** Every entry left out. */
  count: number;
  /** The first of them, at most `MAX_LISTED_WARNINGS`. */
  items: CopyWarning[];
}

/** What a finished copy reports. */
export interface CopyReport extends CopyCounts {
  warnings: CopyWarnings;
  /**
   * Entries below the source left out by `exclude` patterns, whatever their kind (a folder
   * counts once, its contents never being walked). Present only when patterns were given.
   */
  excluded?: number;
}

export const MAX_LISTED_WARNINGS = 100;

export function emptyCounts(): CopyCounts {
  return { files: 0, bytes: 0, filesLinked: 0, bytesLinked: 0, dirs: 0, links: 0, skipped: 0 };
}
