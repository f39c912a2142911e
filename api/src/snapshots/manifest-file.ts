import { createReadStream, type ReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { manifestPathOf, type ManifestEntry } from '@coffer/shared';

/** Opens a manifest for reading; null when it is not there. */
export async function openManifest(snapshotPath: string): Promise<ReadStream | null> {
  const stream = createReadStream(manifestPathOf(snapshotPath));
  return new Promise((resolve, reject) => {
    stream.once('ready', () => resolve(stream));
    stream.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? resolve(null) : reject(err)));
  });
}

const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;

/**
 * A name as a `sha256sum` check line writes it: a name holding a backslash or a newline has
 * them escaped (`\\`, `\n`) and its line starts with a backslash, as GNU coreutils does.
 */
function checkLine(sha256: string, name: Buffer): Buffer {
  if (!name.includes(BACKSLASH) && !name.includes(NEWLINE)) {
    return Buffer.concat([Buffer.from(`${sha256}  `), name, Buffer.from('\n')]);
  }
  const escaped = Buffer.from(
    name.toString('latin1').replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\')),
    'latin1',
  );
  return Buffer.concat([Buffer.from(`\\${sha256}  `), escaped, Buffer.from('\n')]);
}

/**
 * The `sha256sum -c` lines of a manifest, one per file, read line by line (a manifest may hold
 * millions). Paths are relative to the snapshot folder, as their raw bytes when they are not
 * UTF-8. Files recorded by their size alone (`noData`) have no checksum to check and are left out.
 */
export async function* sha256sumLines(manifest: ReadStream): AsyncGenerator<Buffer> {
  // Lines go out in chunks of about this many bytes, not one write each.
  const CHUNK_BYTES = 64 * 1024;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  try {
    for await (const line of createInterface({ input: manifest, crlfDelay: Infinity })) {
      if (line.length === 0) continue;
      const entry = JSON.parse(line) as ManifestEntry;
      if (entry.type !== 'file' || entry.sha256 === undefined) continue;
      const name = entry.pathBase64 === undefined ? Buffer.from(entry.path) : Buffer.from(entry.pathBase64, 'base64');
      const out = checkLine(entry.sha256, name);
      pending.push(out);
      pendingBytes += out.length;
      if (pendingBytes >= CHUNK_BYTES) {
        yield Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
    if (pendingBytes > 0) yield Buffer.concat(pending);
  } finally {
    // A client that hangs up stops the generator; the file is closed with it.
    manifest.destroy();
  }
}
