import { createHash } from 'node:crypto';
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import {
  JOB_KINDS,
  JobFailure,
  encodeFailure,
  jobLogRow,
  type CofferConfig,
  type Failure,
  type FailureCode,
  type JobDataByKind,
  type JobItem,
  type JobKind,
  type JobResult,
  type JobResultByKind,
  type LogEntry,
  type LogOutbox,
} from '@coffer/shared';
import { AttemptSuperseded } from '../copy/index.js';
import { createProgressReporter, type ProgressReporter } from './progress-reporter.js';
import { createOwnershipCheck, type Clocks } from './ownership-check.js';

/** Abort reasons: a user's cancel ends the job; a shutdown hands it back to the queue. */
export const CANCEL_REASON = 'cancelled by request';
export const SHUTDOWN_REASON = 'worker shutting down';
/** Abort reason when the worker could not renew the job's lock: another worker may run it now. */
export const LOCK_LOST_REASON = 'lock lost';

export type QueueJob = Job<JobItem['data'], JobResult, string>;

/** One attempt of one job, as a kind's runner sees it. */
export interface Attempt<K extends JobKind> {
  jobId: string;
  /** From 1; runs after a crash count too. */
  number: number;
  /** Names this attempt's private files (`[A-Za-z0-9_-]`): unique per attempt. */
  tag: string;
  data: JobDataByKind[K];
  /** When the job first became active (a retry keeps it). */
  startedAt: Date;
  logger: Logger;
  /** Aborted on cancel, shutdown or lock loss; the runner stops and rejects. */
  signal: AbortSignal | undefined;
  /** False once another attempt owns the job: this one must then leave nothing behind. */
  stillOwned: () => Promise<boolean>;
  progress: ProgressReporter;
}

/** What a runner returns: the job's result, and what its `completed` row records besides the status. */
export interface Completion<K extends JobKind> {
  result: JobResultByKind[K];
  row?: Partial<LogEntry>;
}

/** Runs one kind of job. Throws `JobFailure` for known causes (permanent or not), anything else is transient. */
export interface KindRunner<K extends JobKind> {
  run(attempt: Attempt<K>): Promise<Completion<K>>;
  /** What the job's last `failed` row records besides the failure (say, a damaged snapshot's verdict). */
  failedRow?(failure: Failure, attempt: Attempt<K>): Partial<LogEntry> | undefined;
}

export type KindRunners = { [K in JobKind]?: KindRunner<K> };

export interface LifecycleDeps {
  config: Pick<CofferConfig, 'instanceName' | 'jobLockMs'>;
  outbox: Pick<LogOutbox, 'record' | 'finished'>;
  logger: Logger;
  /** Tells whether a cancel was requested before the job reached this worker. */
  isCancelRequested: (jobId: string) => Promise<boolean>;
  /** Notes that a job ends cancelled (metrics tell it from failed). */
  noteCancelled: (jobId: string) => Promise<void>;
  /**
   * Runs once a job's `completed` row is recorded (say, queueing a prune after a backup), and
   * again when a run after a crash confirms that row. The job has completed whatever it does:
   * a failure is only logged.
   */
  afterCompleted?: (completed: CompletedJob, logger: Logger) => Promise<void>;
  /** Told of each job this worker brings to its final status, once its row is recorded (metrics). */
  onFinished?: (finished: FinishedJob) => void;
  /**
   * How long (ms) an attempt's `active` row may wait to be recorded: an attempt that ends sooner
   * records it with its final row, in one round trip to Redis, dated when the attempt started; a
   * longer one records it once this has passed, as the job runs. 0 (the default): recorded
   * before the job runs.
   */
  activeDelayMs?: number;
  /** The clocks that tell whether a lock may have lapsed (see `createOwnershipCheck`). Default: the system's. */
  clocks?: Clocks;
}

/** A job this worker brought to its final status. */
export interface FinishedJob {
  kind: JobKind;
  status: 'completed' | 'failed' | 'cancelled';
  /** From the job's first start (earlier attempts included) to its end. */
  durationSeconds: number;
  /** A completed job's result. */
  result?: JobResult;
}

/** A job whose `completed` row is recorded. */
export interface CompletedJob {
  jobId: string;
  item: JobItem;
  result: JobResult;
}

type Outcome = Failure & { permanent: boolean };

/** The code of an unexpected (so transient) failure, by kind. */
const UNEXPECTED_FAILURE: Record<JobKind, FailureCode> = {
  backup: 'COPY_FAILED',
  restore: 'RESTORE_FAILED',
  verify: 'VERIFY_FAILED',
  prune: 'PRUNE_FAILED',
};

function failureOf(err: unknown, signal: AbortSignal | undefined, kind: JobKind): Outcome {
  if (signal?.aborted) return { code: 'CANCELLED', message: CANCEL_REASON, permanent: true };
  if (err instanceof JobFailure) {
    const outcome: Outcome = { code: err.code, message: err.message, permanent: err.permanent };
    if (err.problems) outcome.problems = err.problems;
    return outcome;
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: UNEXPECTED_FAILURE[kind], message, permanent: false };
}

/** Names an attempt's private folders: a digest of its lock token, which is unique per attempt. */
function attemptTag(token: string | undefined, attempt: number): string {
  return token === undefined ? String(attempt) : createHash('sha256').update(token).digest('hex').slice(0, 16);
}

function isKind(name: string): name is JobKind {
  return (JOB_KINDS as readonly string[]).includes(name);
}

/**
 * The job processor every kind shares: one attempt of one job, with its log rows. It writes
 * `active`, then exactly one of `completed`, `retrying`, `failed` or `cancelled`; a re-run
 * after a crash confirms what an earlier run recorded instead of redoing it; a shutdown hands
 * the job back untouched; an attempt that lost its lock writes nothing more. The kind's runner
 * only does the work. Returns the result, or throws so BullMQ retries (plain Error), fails the
 * job for good (UnrecoverableError) or takes it back (WaitingError).
 */
export function createJobProcessor(deps: LifecycleDeps, runners: KindRunners) {
  const { config, outbox, logger: parentLogger, isCancelRequested, noteCancelled, afterCompleted, onFinished } = deps;

  function finished(job: FinishedJob, logger: Logger): void {
    try {
      onFinished?.(job);
    } catch (err) {
      // Whatever watches jobs end, the job's outcome stands.
      logger.warn({ err }, 'cannot report a finished job');
    }
  }
  const secondsSince = (start: Date) => Math.max(0, (Date.now() - start.getTime()) / 1000);

  async function completed(job: CompletedJob, logger: Logger): Promise<void> {
    if (!afterCompleted) return;
    try {
      await afterCompleted(job, logger);
    } catch (err) {
      logger.warn({ err }, 'the follow-up of a completed job failed');
    }
  }

  return async function processJob(job: QueueJob, token?: string, signal?: AbortSignal): Promise<JobResult> {
    const jobId = job.id ?? '';
    const logger = parentLogger.child({ jobId, kind: job.name });
    if (!isKind(job.name) || !runners[job.name]) {
      const failure: Failure = { code: 'INVALID_JOB', message: `this worker runs no job of kind "${job.name}"` };
      // A kind this worker cannot run still gets its terminal row, or its history would end at `queued`.
      if (isKind(job.name)) {
        const row = jobLogRow({ name: job.name, data: job.data } as JobItem, jobId, 1, config.instanceName);
        await outbox.record([{ ...row, status: 'failed', code: failure.code, message: failure.message }], failure);
      }
      throw new UnrecoverableError(encodeFailure(failure));
    }
    const kind = job.name;
    const item = { name: kind, data: job.data } as JobItem;
    const runner = runners[kind] as KindRunner<JobKind>;
    // attemptsStarted counts runs after a crash too, so each run gets its own `active` row.
    const number = Math.max(1, job.attemptsStarted);
    const row = jobLogRow(item, jobId, number, config.instanceName);

    // Renewing the lock proves this attempt still owns the job: a worker paused past its lock
    // (a VM pause, starvation) finds another attempt running it and must write nothing more.
    // The lock was taken just before this call, so a short job needs no renewal to prove it.
    const stillOwned =
      token === undefined
        ? async () => true
        : createOwnershipCheck(
            async () => (await job.extendLock(token, config.jobLockMs)) === 1,
            config.jobLockMs,
            deps.clocks,
          );
    const superseded = (err: unknown) => {
      logger.warn({ err, attempt: number }, 'attempt lost the job to another one; stopping without a trace');
      return new Error(`attempt ${number} of job ${jobId} lost its lock`);
    };

    if (job.attemptsStarted > 1) {
      // A run after a crash: an earlier run may have finished and recorded it before dying.
      const earlier = await outbox.finished(jobId);
      if (earlier?.status === 'completed') {
        logger.info('job had already completed before its worker died; confirming');
        // The worker may have died before the follow-up: it is repeated (it is idempotent).
        await completed({ jobId, item, result: earlier.result as JobResult }, logger);
        return earlier.result as JobResult;
      }
      if (earlier) throw new UnrecoverableError(encodeFailure(earlier.result as Failure));
    }

    const active = await activeRow(outbox, { ...row, status: 'active' }, deps.activeDelayMs ?? 0);
    logger.info({ attempt: number }, `${kind} started`);
    const attempt: Attempt<JobKind> = {
      jobId,
      number,
      tag: attemptTag(token, number),
      data: job.data,
      startedAt: new Date(job.processedOn ?? Date.now()),
      logger,
      signal,
      stillOwned,
      progress: createProgressReporter(job, logger),
    };

    try {
      if (await isCancelRequested(jobId)) throw new JobFailure('CANCELLED', CANCEL_REASON, true);
      const { result, row: completedRow } = await runner.run(attempt);
      await outbox.record([...(await active.take()), { ...row, ...completedRow, status: 'completed' }], result);
      logger.info({ ...completedRow, catalog: undefined }, `${kind} completed`);
      finished({ kind, status: 'completed', durationSeconds: secondsSince(attempt.startedAt), result }, logger);
      await completed({ jobId, item, result }, logger);
      return result;
    } catch (err) {
      if (err instanceof AttemptSuperseded || (signal?.aborted && signal.reason === LOCK_LOST_REASON)) {
        // Nothing more, not even an `active` row still waiting: the job is another attempt's now.
        active.drop();
        throw superseded(err);
      }
      if (signal?.aborted && signal.reason === SHUTDOWN_REASON) {
        // Not the job's fault: give it back without using up an attempt; another worker takes it.
        // The hand-back matters more than its row: a lost row leaves the log one line short.
        await active
          .take()
          .catch(() => [])
          .then((waiting) =>
            outbox.record([
              ...waiting,
              {
                ...row,
                status: 'retrying',
                code: 'WORKER_STOPPED',
                message: 'worker stopped; job handed back to the queue',
              },
            ]),
          )
          .catch((logErr: unknown) => logger.error({ err: logErr }, 'cannot record the hand-back'));
        await job.moveToWait(token);
        logger.info('job handed back to the queue');
        throw new WaitingError();
      }
      // Only the owner of the job may write its next row.
      if (!(await stillOwned().catch(() => true))) {
        active.drop();
        throw superseded(err);
      }
      const failure = failureOf(err, signal, kind);
      const attemptsAllowed = job.opts.attempts ?? 1;
      const willRetry = !failure.permanent && job.attemptsMade + 1 < attemptsAllowed;
      const status = willRetry ? 'retrying' : failure.code === 'CANCELLED' ? 'cancelled' : 'failed';
      logger.warn({ err, code: failure.code, status }, `${kind} attempt failed`);
      const { permanent, ...recorded } = failure;
      const extra = status === 'failed' ? runner.failedRow?.(recorded, attempt) : undefined;
      await active
        .take()
        .catch(() => [])
        .then((waiting) =>
          outbox.record(
            [...waiting, { ...row, ...extra, status, code: failure.code, message: failure.message }],
            recorded,
          ),
        )
        .catch((logErr: unknown) => logger.error({ err: logErr }, 'cannot record the failure'));
      if (status !== 'retrying') finished({ kind, status, durationSeconds: secondsSince(attempt.startedAt) }, logger);
      if (status === 'cancelled') {
        await noteCancelled(jobId).catch((noteErr: unknown) => logger.warn({ err: noteErr }, 'cannot note the cancel'));
      }
      const reason = encodeFailure(recorded);
      throw permanent ? new UnrecoverableError(reason) : new Error(reason);
    }
  };
}

/** An attempt's `active` row, recorded at once or held back a little (see `LifecycleDeps.activeDelayMs`). */
interface ActiveRow {
  /**
   * The rows to record before the attempt's next one: the `active` row when it is still waiting
   * (recorded with that one, then), else none once its own recording is done (rejects when that failed).
   */
  take(): Promise<LogEntry[]>;
  /** Gives up the row if it is still waiting. */
  drop(): void;
}

async function activeRow(outbox: Pick<LogOutbox, 'record'>, row: LogEntry, delayMs: number): Promise<ActiveRow> {
  if (delayMs <= 0) {
    await outbox.record([row]);
    return { take: async () => [], drop: () => undefined };
  }
  // Dated now, whenever it is recorded: the log tells when the attempt started.
  const dated: LogEntry = { ...row, date: new Date() };
  let recording: Promise<void> | undefined;
  const timer = setTimeout(() => {
    recording = outbox.record([dated]);
    // Seen by `take`; an attempt that never takes it has ended otherwise.
    recording.catch(() => undefined);
  }, delayMs);
  return {
    async take() {
      clearTimeout(timer);
      if (recording === undefined) {
        recording = Promise.resolve();
        return [dated];
      }
      await recording;
      return [];
    },
    drop() {
      clearTimeout(timer);
      recording ??= Promise.resolve();
    },
  };
}
