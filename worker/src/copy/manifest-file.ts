import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { JobFailure } from '@coffer/shared/failure';
import { manifestPathOf } from '@coffer/shared/path-policy';
import type { ManifestEntry } from '@coffer/shared/job-contract';

export { METADATA_FOLDER, manifestPathOf } from '@coffer/shared/path-policy';

/** An entry's path relative to the snapshot root, as the bytes the file system holds. */
export function entryPathBytes(entry: Pick<ManifestEntry, 'path' | 'pathBase64'>): Buffer {
  return entry.pathBase64 === undefined ? Buffer.from(entry.path) : Buffer.from(entry.pathBase64, 'base64');
}

/** A link entry's target, as bytes. */
export function linkTargetBytes(entry: Pick<ManifestEntry, 'target' | 'targetBase64'>): Buffer {
  return entry.targetBase64 === undefined ? Buffer.from(entry.target ?? '') : Buffer.from(entry.targetBase64, 'base64');
}

/**
 * Reads the manifest of `snapshotPath` and checks it against the SHA-256 the catalog recorded:
 * a manifest that is missing, changed or unparsable fails with `SNAPSHOT_DAMAGED` (permanent),
 * since nothing in the snapshot can be trusted against it then.
 */
export async function readManifest(snapshotPath: string, expectedSha256: string): Promise<ManifestEntry[]> {
  const file = manifestPathOf(snapshotPath);
  let data: Buffer;
  try {
    data = await fs.readFile(file);
  } catch (error) {
    throw new JobFailure('SNAPSHOT_DAMAGED', `the snapshot's manifest ${file} cannot be read: ${String(error)}`, true, {
      cause: error,
    });
  }
  const actual = createHash('sha256').update(data).digest('hex');
  if (actual !== expectedSha256) {
    throw new JobFailure(
      'SNAPSHOT_DAMAGED',
      `the snapshot's manifest ${file} changed since the snapshot was made (SHA-256 ${actual}, catalog says ${expectedSha256})`,
      true,
    );
  }
  const entries: ManifestEntry[] = [];
  for (const line of data.toString('utf8').split('\n')) {
    if (line.length === 0) continue;
    try {
      entries.push(JSON.parse(line) as ManifestEntry);
    } catch (error) {
      throw new JobFailure('SNAPSHOT_DAMAGED', `the snapshot's manifest ${file} holds a line that is not JSON`, true, {
        cause: error,
      });
    }
  }
  return entries;
}
