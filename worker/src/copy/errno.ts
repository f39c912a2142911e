/** A Node system error (`code`, and usually `path`/`syscall`). */
export function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && 'code' in error && typeof error.code === 'string';
}

export function errorCode(error: unknown): string | undefined {
  return isErrnoException(error) ? error.code : undefined;
}

/** The second path of a two-path call (copyFile, rename, symlink), which Node sets but does not type. */
export function errorDest(error: NodeJS.ErrnoException): string | undefined {
  return 'dest' in error && typeof error.dest === 'string' ? error.dest : undefined;
}
