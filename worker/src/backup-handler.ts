import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import {
  JobFailure,
  effectiveRoots,
  encodeFailure,
  type BackupJobData,
  type BackupProgress,
  type BackupResult,
  type CofferConfig,
  type Failure,
  type LogEntry,
  type LogOutbox,
} from '@coffer/shared';
import { createSnapshot, measureTree } from './copy/index.js';
import { resolveSource } from './source.js';

/** Progress is written to Redis at most this often per job. */
const PROGRESS_INTERVAL_MS = 250;

/** Abort reasons: a user's cancel ends the job; a shutdown hands it back to the queue. */
export const CANCEL_REASON = 'cancelled by request';
export const SHUTDOWN_REASON = 'worker shutting down';

export type BackupJob = Job<BackupJobData, BackupResult>;

export interface BackupHandlerDeps {
  config: Pick<CofferConfig, 'backupRoot' | 'sourceRoots' | 'copyConcurrency' | 'instanceName'>;
  outbox: Pick<LogOutbox, 'record' | 'finished'>;
  logger: Logger;
  /** Tells whether a cancel was requested before the job reached this worker. */
  isCancelRequested: (jobId: string) => Promise<boolean>;
}

type Outcome = Failure & { permanent: boolean };

function failureOf(err: unknown, signal: AbortSignal | undefined): Outcome {
  if (signal?.aborted) return { code: 'CANCELLED', message: CANCEL_REASON, permanent: true };
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
 * Returns the result, or throws so BullMQ retries (plain Error), fails the job
 * for good (UnrecoverableError) or takes it back untouched (WaitingError).
 */
export function createBackupHandler({ config, outbox, logger: parentLogger, isCancelRequested }: BackupHandlerDeps) {
  return async function handleBackup(job: BackupJob, token?: string, signal?: AbortSignal): Promise<BackupResult> {
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
      actor: job.data.actor ?? null,
    };

    if (job.attemptsStarted > 1) {
      // A run after a crash: an earlier run may have finished and recorded it before dying.
      const earlier = await outbox.finished(jobId);
      if (earlier?.status === 'completed') {
        logger.info('job had already completed before its worker died; confirming');
        return earlier.result as BackupResult;
      }
      if (earlier) throw new UnrecoverableError(encodeFailure(earlier.result as Failure));
    }

    await outbox.record([{ ...row, status: 'active' }]);
    logger.info({ attempt }, 'backup started');

    try {
      if (await isCancelRequested(jobId)) throw new JobFailure('CANCELLED', CANCEL_REASON, true);
      const source = await resolveSource(job.data.source, effectiveRoots(config.sourceRoots, job.data.sourceRoots));
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
        incremental: job.data.incremental ?? true,
        threads: config.copyConcurrency,
        signal,
        onProgress: (counts) => progress.copied(counts.files, counts.bytes),
      });
      const { path, files, bytes, durationMs, dirs, links, skipped, filesLinked, bytesLinked, warnings } = snapshot;
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
        warnings,
      };
      await outbox.record([{ ...row, status: 'completed', snapshot: path, files, bytes, durationMs }], result);
      logger.info({ files, bytes, durationMs, path, filesLinked, warnings: warnings.count }, 'backup completed');
      return result;
    } catch (err) {
      if (signal?.aborted && signal.reason === SHUTDOWN_REASON) {
        // Not the job's fault: give it back without using up an attempt; another worker takes it.
        await outbox.record([
          {
            ...row,
            status: 'retrying',
            code: 'WORKER_STOPPED',
            message: 'worker stopped; job handed back to the queue',
          },
        ]);
        await job.moveToWait(token);
        logger.info('job handed back to the queue');
        throw new WaitingError();
      }
      const failure = failureOf(err, signal);
      const attemptsAllowed = job.opts.attempts ?? 1;
      const willRetry = !failure.permanent && job.attemptsMade + 1 < attemptsAllowed;
      const status = willRetry ? 'retrying' : failure.code === 'CANCELLED' ? 'cancelled' : 'failed';
      logger.warn({ err, code: failure.code, status }, 'backup attempt failed');
      const { code, message } = failure;
      await outbox
        .record([{ ...row, status, code, message }], { code, message })
        .catch((logErr: unknown) => logger.error({ err: logErr }, 'cannot record the failure'));
      const reason = encodeFailure(failure);
      throw failure.permanent ? new UnrecoverableError(reason) : new Error(reason);
    }
  };
}
