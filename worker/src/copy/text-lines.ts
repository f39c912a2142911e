import fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

// Lines between two checks for a stop.
const LINES_PER_CHECK = 4096;

/** Reads `file` through `buffer`, handing each chunk read (a view of `buffer`) to `use`. */
export function forEachChunk(file: string, buffer: Buffer, use: (chunk: Buffer) => void): void {
  const fd = fs.openSync(file, 'r');
  try {
    for (let read = fs.readSync(fd, buffer); read > 0; read = fs.readSync(fd, buffer)) use(buffer.subarray(0, read));
  } finally {
    fs.closeSync(fd);
  }
}

/** Hands each non-empty line of the UTF-8 text `file` to `use`, checking for a stop every so many lines. */
export function forEachLine(file: string, buffer: Buffer, checkStop: () => void, use: (line: string) => void): void {
  // A chunk may end inside a character or a line: the decoder and `rest` carry them over.
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let count = 0;
  const take = (text: string, last: boolean) => {
    const lines = (rest + text).split('\n');
    rest = last ? '' : (lines.pop() ?? '');
    for (const line of lines) {
      if (line !== '') use(line);
      if ((count += 1) % LINES_PER_CHECK === 0) checkStop();
    }
  };
  forEachChunk(file, buffer, (chunk) => take(decoder.write(chunk), false));
  take(decoder.end(), true);
}
