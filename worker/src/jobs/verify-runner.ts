import { JobFailure, type CatalogChange } from '@coffer/shared';
import { verifySnapshot } from '../copy/verify-snapshot.js';
import type { KindRunner } from './attempt-lifecycle.js';

/** How many damaged paths the failure message names (the full first 100 are in `problems`). */
const NAMED_IN_MESSAGE = 3;

function verdict(snapshotId: string, verify: 'ok' | 'damaged'): CatalogChange {
  return { kind: 'verified', snapshotId, verify, at: new Date().toISOString() };
}

/** Reads every file of a snapshot and checks it against the snapshot's manifest. */
export function verifyRunner(): KindRunner<'verify'> {
  return {
    async run({ data, signal, progress }) {
      const report = await verifySnapshot({
        snapshotPath: data.snapshotPath,
        manifestSha256: data.manifestSha256,
        signal,
        onProgress: (counts) => progress.report(counts),
      });
      const { files, bytes, durationMs, problems } = report;
      if (problems.count > 0) {
        const named = problems.items
          .slice(0, NAMED_IN_MESSAGE)
          .map((item) => `${item.path} (${item.problem})`)
          .join(', ');
        const more = problems.count > NAMED_IN_MESSAGE ? `, and ${problems.count - NAMED_IN_MESSAGE} more` : '';
        throw new JobFailure(
          'SNAPSHOT_DAMAGED',
          `snapshot ${data.snapshot} is damaged: ${problems.count} entries do not match its manifest: ${named}${more}`,
          true,
          { problems: problems.items },
        );
      }
      return {
        result: { files, bytes, damaged: 0, durationMs },
        row: { files, bytes, durationMs, catalog: verdict(data.snapshot, 'ok') },
      };
    },
    // A damaged snapshot (or manifest) is a verdict too: the catalog says so.
    failedRow(failure, { data }) {
      return failure.code === 'SNAPSHOT_DAMAGED' ? { catalog: verdict(data.snapshot, 'damaged') } : undefined;
    },
  };
}
