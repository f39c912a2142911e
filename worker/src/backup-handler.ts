import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import {
  JobFailure,
  encodeFailure,
  type BackupJobData,
  type BackupProgress,
  type BackupResult,
  type CofferConfig,
  type Failure,
  type LogEntry,
  type LogRepository,
} from '@coffer/shared';
import { createSnapshot, measureTree } from './copy/index.js';
import { resolveSource } from './source.js';

/** Progress is written to Redis at most this often per job. */
const PROGRESS_INTERVAL_MS = 250;

export type BackupJob = Job<BackupJobData, BackupResult>;

export interface BackupHandlerDeps {
  config: Pick<CofferConfig, 'backupRoot' | 'sourceRoots' | 'copyConcurrency' | 'instanceName'>;
  logStore: LogRepository;
  logger: Logger;
  /** Tells whether a cancel was requested before the job reached this worker. */
  isCancelRequested: (jobId: string) => Promise<boolean>;
}

function failureOf(err: unknown, signal: AbortSignal | undefined): Failure & { permanent: boolean } {
  if (signal?.aborted) return { code: 'CANCELLED', message: 'cancelled by request', permanent: true };
  if (err instanceof JobFailure) return { code: err.code, message: err.message, permanent: err.permanent };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'COPY_FAILED', message, permanent: false };
}

function createProgressReporter(job: BackupJob, logger: Logger) {
  const progress: BackupProgress = { files: 0, filesTotal: 0, bytes: 0, bytesTotal: 0 };
  let lastSent = 0;
  const send = () => {
    lastSent = Date.now();
    job.updateProgress({ ...progress }).catch((err: unknown) => logger.warn({ err }, 'cannot update progress'));
  };
  return {
    copied(files: number, bytes: number) {
      progress.files = files;
      progress.bytes = bytes;
      if (Date.now() - lastSent >= PROGRESS_INTERVAL_MS) send();
    },
    measured(files: number, bytes: number) {
      progress.filesTotal = files;
      progress.bytesTotal = bytes;
      send();
    },
  };
}

/**
 * The backup job processor: one attempt of one job, with its log rows.
 * Returns the result, or throws so BullMQ retries (plain Error) or fails the
 * job for good (UnrecoverableError).
 */
export function createBackupHandler({ config, logStore, logger: parentLogger, isCancelRequested }: BackupHandlerDeps) {
  return async function handleBackup(job: BackupJob, _token?: string, signal?: AbortSignal): Promise<BackupResult> {
    const jobId = job.id ?? '';
    const logger = parentLogger.child({ jobId });
    // attemptsStarted counts runs after a crash too, so each run gets its own `active` row.
    const attempt = Math.max(1, job.attemptsStarted);
    const row: Omit<LogEntry, 'status'> = {
      action: 'backup',
      parameter: job.data.source,
      jobId,
      attempt,
      worker: config.instanceName,
      destination: job.data.destination,
    };
    await logStore.append({ ...row, status: 'active' });
    logger.info({ attempt }, 'backup started');

    try {
      if (await isCancelRequested(jobId)) throw new JobFailure('CANCELLED', 'cancelled by request', true);
      const source = await resolveSource(job.data.source, config.sourceRoots);
      const progress = createProgressReporter(job, logger);
      // Totals are counted beside the copy rather than before it, so the copy starts at once.
      measureTree(source, signal).then(
        ({ files, bytes }) => progress.measured(files, bytes),
        () => undefined,
      );
      const snapshot = await createSnapshot({
        source,
        backupRoot: config.backupRoot,
        destination: job.data.destination,
        jobId,
        startedAt: new Date(job.processedOn ?? Date.now()),
        concurrency: config.copyConcurrency,
        signal,
        onProgress: (counts) => progress.copied(counts.files, counts.bytes),
      });
      const { path, files, bytes, durationMs, dirs, links, skipped } = snapshot;
      const result: BackupResult = { path, files, bytes, durationMs, dirs, links, skipped };
      await logStore.append({ ...row, status: 'completed', snapshot: path, files, bytes, durationMs });
      logger.info({ files, bytes, durationMs, path }, 'backup completed');
      return result;
    } catch (err) {
      const failure = failureOf(err, signal);
      const attemptsAllowed = job.opts.attempts ?? 1;
      const willRetry = !failure.permanent && job.attemptsMade + 1 < attemptsAllowed;
      const status = willRetry ? 'retrying' : failure.code === 'CANCELLED' ? 'cancelled' : 'failed';
      logger.warn({ err, code: failure.code, status }, 'backup attempt failed');
      await logStore
        .append({ ...row, status, code: failure.code, message: failure.message })
        .catch((logErr: unknown) => logger.error({ err: logErr }, 'cannot write the failure to the log'));
      const reason = encodeFailure(failure);
      throw failure.permanent ? new UnrecoverableError(reason) : new Error(reason);
    }
  };
}
