import { JobFailure, checkExcludePatterns, effectiveRoots, type BackupResult, type CofferConfig } from '@coffer/shared';
import { createSnapshot } from '../copy/index.js';
import { resolveSource } from '../source.js';
import type { KindRunner } from './attempt-lifecycle.js';

export type BackupConfig = Pick<CofferConfig, 'backupRoot' | 'sourceRoots' | 'copyConcurrency'>;

/** Backs up a source into a new snapshot of its destination, and records it in the catalog. */
export function backupRunner(config: BackupConfig): KindRunner<'backup'> {
  return {
    async run({ jobId, tag, data, startedAt, signal, stillOwned, progress }) {
      // The API refuses these already; a job queued some other way must not pin a copy thread.
      const excludeProblem = checkExcludePatterns(data.exclude ?? []);
      if (excludeProblem) throw new JobFailure('INVALID_JOB', excludeProblem, true);
      const roots = effectiveRoots(config.sourceRoots, data.sourceRoots);
      const source = await resolveSource(data.source, roots, config.backupRoot);
      const { exclude } = data;
      const snapshot = await createSnapshot({
        source,
        backupRoot: config.backupRoot,
        destination: data.destination,
        jobId,
        attempt: tag,
        startedAt,
        stillOwned,
        incremental: data.incremental ?? true,
        threads: config.copyConcurrency,
        exclude,
        signal,
        onProgress: (counts, current) => progress.advanced(counts.files, counts.bytes, current),
        // Totals are counted beside the copy rather than before it, so the copy starts at once.
        onMeasured: ({ files, bytes }) => progress.measured(files, bytes),
      });
      const { path, files, bytes, durationMs, dirs, links, skipped, filesLinked, bytesLinked, warnings } = snapshot;
      const { manifestSha256, excluded } = snapshot;
      const result: BackupResult = {
        path,
        files,
        bytes,
        durationMs,
        dirs,
        links,
        skipped,
        filesLinked,
        bytesLinked,
        // Only when the job has patterns (the API queues none rather than an empty list), so
        // results of jobs without them stay as they were.
        ...(excluded === undefined ? {} : { excluded }),
        manifestSha256,
        warnings,
      };
      // The catalog row travels with the `completed` row, so it is as durable as that row.
      const catalog = {
        kind: 'snapshot' as const,
        snapshot: {
          id: jobId,
          destination: data.destination,
          source: data.source,
          path,
          createdAt: startedAt.toISOString(),
          files,
          bytes,
          filesLinked,
          bytesLinked,
          manifestSha256,
          actor: data.actor ?? null,
        },
      };
      return { result, row: { snapshot: path, files, bytes, durationMs, catalog } };
    },
  };
}
