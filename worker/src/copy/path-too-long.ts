/** Longest path, in bytes, that ordinary tools can open: PATH_MAX (4096) less the terminating NUL. */
export const MAX_PATH_BYTES = 4095;
// A path in a message is cut in the middle beyond this many characters, to stay readable.
const SHOWN_CHARACTERS = 200;

/**
 * An entry of the source whose copy's path would be longer than `MAX_PATH_BYTES`, or that
 * the system refused as too long (ENAMETOOLONG): no retry can copy it.
 */
export class PathTooLongError extends Error {
  override readonly name = 'PathTooLongError';
  /** The source entry. */
  constructor(
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(pathTooLongMessage(path), options);
  }
}

/** Why `path` (shortened if need be) cannot be in a snapshot. */
export function pathTooLongMessage(path: string): string {
  return (
    `${shorten(path)}: its path in the snapshot would be longer than ${MAX_PATH_BYTES} bytes ` +
    'or hold a name longer than the file system allows, more than the system or ordinary tools can open'
  );
}

function shorten(text: string): string {
  if (text.length <= SHOWN_CHARACTERS) return text;
  const half = SHOWN_CHARACTERS / 2;
  return `${text.slice(0, half)}…${text.slice(-half)}`;
}
