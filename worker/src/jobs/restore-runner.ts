import type { CofferConfig } from '@coffer/shared';
import { restoreSnapshot } from '../copy/restore-snapshot.js';
import { resolveRestoreTarget } from '../copy/restore-target.js';
import type { KindRunner } from './attempt-lifecycle.js';

/** Writes a snapshot (or some of its entries) back into a target folder, checked against its manifest. */
export function restoreRunner(config: Pick<CofferConfig, 'backupRoot'>): KindRunner<'restore'> {
  return {
    async run({ jobId, tag, data, signal, stillOwned, progress }) {
      // The API checked the target as text; here its real path is checked, links resolved.
      const target = await resolveRestoreTarget(data.target, data.targetRoots, config.backupRoot);
      const { path, files, bytes, durationMs } = await restoreSnapshot({
        snapshotPath: data.snapshotPath,
        manifestSha256: data.manifestSha256,
        target,
        paths: data.paths,
        overwrite: data.overwrite ?? false,
        jobId,
        attempt: tag,
        signal,
        stillOwned,
        onProgress: (counts) => progress.report(counts),
      });
      return { result: { path, files, bytes, durationMs }, row: { files, bytes, durationMs } };
    },
  };
}
