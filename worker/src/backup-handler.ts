import { createHash } from 'node:crypto';
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import {
  JobFailure,
  effectiveRoots,
  encodeFailure,
  type BackupJobData,
  type JobProgress,
  type BackupResult,
  type CofferConfig,
  type Failure,
  type LogEntry,
  type LogOutbox,
} from '@coffer/shared';
import { AttemptSuperseded, createSnapshot, measureTree } from './copy/index.js';
import { resolveSource } from './source.js';

/** Progress is written to Redis at most this often per job. */
const PROGRESS_INTERVAL_MS = 250;

/** Abort reasons: a user's cancel ends the job; a shutdown hands it back to the queue. */
export const CANCEL_REASON = 'cancelled by request';
export const SHUTDOWN_REASON = 'worker shutting down';
/** Abort reason when the worker could not renew the job's lock: another worker may run it now. */
export const LOCK_LOST_REASON = 'lock lost';

export type BackupJob = Job<BackupJobData, BackupResult>;

export interface BackupHandlerDeps {
  config: Pick<CofferConfig, 'backupRoot' | 'sourceRoots' | 'copyConcurrency' | 'instanceName' | 'jobLockMs'>;
  outbox: Pick<LogOutbox, 'record' | 'finished'>;
  logger: Logger;
  /** Tells whether a cancel was requested before the job reached this worker. */
  isCancelRequested: (jobId: string) => Promise<boolean>;
  /** Notes that a job ends cancelled (metrics tell it from failed). */
  noteCancelled: (jobId: string) => Promise<void>;
}

type Outcome = Failure & { permanent: boolean };

function failureOf(err: unknown, signal: AbortSignal | undefined): Outcome {
  if (signal?.aborted) return { code: 'CANCELLED', message: CANCEL_REASON, permanent: true };
  if (err instanceof JobFailure) return { code: err.code, message: err.message, permanent: err.permanent };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'COPY_FAILED', message, permanent: false };
}

/** Names an attempt's private folders: a digest of its lock token, which is unique per attempt. */
function attemptTag(token: string | undefined, attempt: number): string {
  return token === undefined ? String(attempt) : createHash('sha256').update(token).digest('hex').slice(0, 16);
}

function createProgressReporter(job: BackupJob, logger: Logger) {
  const progress: JobProgress = { files: 0, filesTotal: 0, bytes: 0, bytesTotal: 0 };
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
export function createBackupHandler({
  config,
  outbox,
  logger: parentLogger,
  isCancelRequested,
  noteCancelled,
}: BackupHandlerDeps) {
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

    // Renewing the lock proves this attempt still owns the job: a worker paused past its lock
    // (a VM pause, starvation) finds another attempt running it and must write nothing more.
    const stillOwned = async (): Promise<boolean> =>
      token === undefined || (await job.extendLock(token, config.jobLockMs)) === 1;
    const superseded = (err: unknown) => {
      logger.warn({ err, attempt }, 'attempt lost the job to another one; stopping without a trace');
      return new Error(`attempt ${attempt} of job ${jobId} lost its lock`);
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
      const roots = effectiveRoots(config.sourceRoots, job.data.sourceRoots);
      const source = await resolveSource(job.data.source, roots, config.backupRoot);
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
        attempt: attemptTag(token, attempt),
        startedAt: new Date(job.processedOn ?? Date.now()),
        stillOwned,
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
      if (err instanceof AttemptSuperseded || (signal?.aborted && signal.reason === LOCK_LOST_REASON)) {
        throw superseded(err);
      }
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
      // Only the owner of the job may write its next row.
      if (!(await stillOwned().catch(() => true))) throw superseded(err);
      const failure = failureOf(err, signal);
      const attemptsAllowed = job.opts.attempts ?? 1;
      const willRetry = !failure.permanent && job.attemptsMade + 1 < attemptsAllowed;
      const status = willRetry ? 'retrying' : failure.code === 'CANCELLED' ? 'cancelled' : 'failed';
      logger.warn({ err, code: failure.code, status }, 'backup attempt failed');
      const { code, message } = failure;
      await outbox
        .record([{ ...row, status, code, message }], { code, message })
        .catch((logErr: unknown) => logger.error({ err: logErr }, 'cannot record the failure'));
      if (status === 'cancelled') {
        await noteCancelled(jobId).catch((noteErr: unknown) => logger.warn({ err: noteErr }, 'cannot note the cancel'));
      }
      const reason = encodeFailure(failure);
      throw failure.permanent ? new UnrecoverableError(reason) : new Error(reason);
    }
  };
}
