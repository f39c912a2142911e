/** The source is neither a regular file nor a directory (a FIFO, socket, device or link). */
export class UnsupportedSourceError extends Error {
  override readonly name = 'UnsupportedSourceError';
  constructor(readonly path: string) {
    super(`${path} is neither a regular file nor a directory`);
  }
}
