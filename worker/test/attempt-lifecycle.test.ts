import { UnrecoverableError, WaitingError } from 'bullmq';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  JobFailure,
  decodeFailure,
  encodeFailure,
  type BackupJobData,
  type Failure,
  type FailureProblem,
  type JobKind,
  type LogEntry,
  type RestoreJobData,
  type VerifyJobData,
} from '@coffer/shared';
import { AttemptSuperseded } from '../src/copy/index.js';
import {
  CANCEL_REASON,
  LOCK_LOST_REASON,
  SHUTDOWN_REASON,
  createJobProcessor,
  type Attempt,
  type Completion,
  type KindRunner,
  type KindRunners,
  type QueueJob,
} from '../src/jobs/attempt-lifecycle.js';

// Unit tests of the attempt lifecycle: a fake job and a fake outbox, no Redis, no MySQL.

const WORKER = 'test-worker';
const LOCK_MS = 30_000;
const TOKEN = 'lock-token-1';

const backupData: BackupJobData = { source: '/srv/data', destination: 'data', actor: 'alice' };
const restoreData: RestoreJobData = {
  snapshot: 'snap-1',
  snapshotPath: '/backups/data/20250101T000000.000Z-snap-1',
  source: '/srv/data',
  destination: 'data',
  manifestSha256: 'a'.repeat(64),
  target: '/restore/here',
  targetRoots: ['/restore'],
  actor: 'bob',
};
const verifyData: VerifyJobData = {
  snapshot: 'snap-1',
  snapshotPath: restoreData.snapshotPath,
  source: '/srv/data',
  destination: 'data',
  manifestSha256: 'a'.repeat(64),
  actor: 'carol',
};

interface FakeJobOptions {
  id?: string;
  name?: string;
  data?: unknown;
  attemptsStarted?: number;
  attemptsMade?: number;
  attempts?: number;
  /** What extendLock answers: 1 while this attempt owns the job, 0 once it lost it. */
  lockHeld?: boolean;
}

/** A BullMQ job as the processor uses it, recording what the processor did to it. */
function fakeJob(options: FakeJobOptions = {}) {
  const calls = {
    extendLock: [] as [string, number][],
    moveToWait: [] as (string | undefined)[],
    progress: [] as unknown[],
  };
  const job = {
    id: options.id ?? 'job-1',
    name: options.name ?? 'backup',
    data: options.data ?? backupData,
    attemptsStarted: options.attemptsStarted ?? 1,
    attemptsMade: options.attemptsMade ?? 0,
    opts: { attempts: options.attempts ?? 3 },
    processedOn: Date.parse('2025-01-01T00:00:00.000Z'),
    async extendLock(token: string, ms: number) {
      calls.extendLock.push([token, ms]);
      return options.lockHeld === false ? 0 : 1;
    },
    async moveToWait(token?: string) {
      calls.moveToWait.push(token);
      return 0;
    },
    async updateProgress(progress: unknown) {
      calls.progress.push(progress);
    },
  };
  return { job: job as unknown as QueueJob, calls };
}

interface Recorded {
  entries: LogEntry[];
  result: unknown;
}

/** The outbox as the processor sees it: what it recorded, and what `finished` answers. */
function fakeOutbox(finished: { status: string; result: unknown } | null = null, failRecords = false) {
  const records: Recorded[] = [];
  return {
    records,
    /** Every row recorded, in order. */
    rows: () => records.flatMap((record) => record.entries),
    statuses: () => records.flatMap((record) => record.entries.map((entry) => entry.status)),
    outbox: {
      async record(entries: readonly LogEntry[], result?: unknown) {
        // The `active` row always lands; later ones fail when asked to.
        if (failRecords && entries.some((entry) => entry.status !== 'active')) throw new Error('Redis is down');
        records.push({ entries: [...entries], result });
      },
      async finished() {
        return finished;
      },
    },
  };
}

interface Setup {
  runners: KindRunners;
  cancelRequested?: boolean;
  finished?: { status: string; result: unknown } | null;
  failRecords?: boolean;
  activeDelayMs?: number;
}

/** The processor's clocks, moved only by tests: both clocks advance together. */
const clock = {
  elapsedMs: 0,
  monotonic: () => clock.elapsedMs,
  wall: () => Date.parse('2026-01-01') + clock.elapsedMs,
};

function setup({ runners, cancelRequested = false, finished = null, failRecords = false, activeDelayMs }: Setup) {
  const out = fakeOutbox(finished, failRecords);
  const noted: string[] = [];
  const process = createJobProcessor(
    {
      config: { instanceName: WORKER, jobLockMs: LOCK_MS },
      outbox: out.outbox,
      logger: pino({ level: 'silent' }),
      isCancelRequested: async () => cancelRequested,
      noteCancelled: async (jobId) => {
        noted.push(jobId);
      },
      ...(activeDelayMs === undefined ? {} : { activeDelayMs }),
      clocks: clock,
    },
    runners,
  );
  return { process, noted, ...out };
}

/** A runner of `kind` that does `run` (and counts its runs). */
function runner<K extends JobKind>(
  run: KindRunner<K>['run'],
  failedRow?: KindRunner<K>['failedRow'],
): KindRunner<K> & { runs: Attempt<K>[] } {
  const runs: Attempt<K>[] = [];
  return {
    runs,
    run: async (attempt) => {
      runs.push(attempt);
      return run(attempt);
    },
    ...(failedRow ? { failedRow } : {}),
  };
}

const failing = <K extends JobKind>(err: unknown) =>
  runner<K>(async () => {
    throw err;
  });

/** The error `promise` rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    return err as Error;
  }
  throw new Error('expected the processor to throw');
}

const backupRow = (attempt = 1) => ({
  action: 'backup',
  parameter: backupData.source,
  jobId: 'job-1',
  attempt,
  worker: WORKER,
  destination: backupData.destination,
  snapshotId: null,
  actor: 'alice',
  schedule: null,
});

describe('a successful attempt', () => {
  it('writes active then completed with the runner fields, and returns the result', async () => {
    const result = { path: '/backups/data/s1', files: 3, bytes: 12, durationMs: 7 };
    const backup = runner<'backup'>(async () => ({
      result,
      row: { files: 3, bytes: 12, durationMs: 7, snapshot: '/backups/data/s1' },
    }));
    const { process, records } = setup({ runners: { backup } });
    const { job } = fakeJob();

    await expect(process(job, TOKEN)).resolves.toEqual(result);

    expect(records).toEqual([
      { entries: [{ ...backupRow(), status: 'active' }], result: undefined },
      {
        entries: [
          { ...backupRow(), files: 3, bytes: 12, durationMs: 7, snapshot: '/backups/data/s1', status: 'completed' },
        ],
        result,
      },
    ]);
    expect(backup.runs).toHaveLength(1);
    expect(backup.runs[0]).toMatchObject({ jobId: 'job-1', number: 1, data: backupData });
    expect(backup.runs[0]?.startedAt.toISOString()).toBe('2025-01-01T00:00:00.000Z');
  });

  it.each([
    ['restore', restoreData, restoreData.target, 'snap-1', 'bob'],
    ['verify', verifyData, verifyData.source, 'snap-1', 'carol'],
  ] as const)(
    'records a %s with its own parameter and snapshot id',
    async (kind, data, parameter, snapshotId, actor) => {
      const result = { files: 1, bytes: 2, durationMs: 3, ...(kind === 'restore' ? { path: '/x' } : { damaged: 0 }) };
      const run = async () => ({ result, row: { files: 1, bytes: 2 } }) as Completion<'restore' | 'verify'>;
      const runners = { [kind]: runner(run) } as KindRunners;
      const { process, rows } = setup({ runners });
      const { job } = fakeJob({ name: kind, data, id: 'job-7' });

      await expect(process(job, TOKEN)).resolves.toEqual(result);

      const common = {
        action: kind,
        parameter,
        jobId: 'job-7',
        attempt: 1,
        worker: WORKER,
        destination: 'data',
        snapshotId,
        actor,
        schedule: null,
      };
      expect(rows()).toEqual([
        { ...common, status: 'active' },
        { ...common, files: 1, bytes: 2, status: 'completed' },
      ]);
    },
  );

  it('numbers the attempt by attemptsStarted, so a run after a crash gets its own active row', async () => {
    const backup = runner<'backup'>(async () => ({ result: { path: '/p', files: 0, bytes: 0, durationMs: 0 } }));
    const { process, rows } = setup({ runners: { backup }, finished: null });
    const { job } = fakeJob({ attemptsStarted: 3, attemptsMade: 1 });

    await process(job, TOKEN);

    expect(rows().map((row) => [row.status, row.attempt])).toEqual([
      ['active', 3],
      ['completed', 3],
    ]);
    expect(backup.runs[0]?.number).toBe(3);
  });

  it('hands the runner a progress reporter that writes to the job', async () => {
    const backup = runner<'backup'>(async ({ progress }) => {
      progress.measured(10, 100);
      return { result: { path: '/p', files: 10, bytes: 100, durationMs: 1 } };
    });
    const { process } = setup({ runners: { backup } });
    const { job, calls } = fakeJob();

    await process(job, TOKEN);

    expect(calls.progress).toEqual([
      { files: 0, filesTotal: 10, bytes: 0, bytesTotal: 100, bytesPerSecond: 0, etaSeconds: null, current: null },
    ]);
  });
});

describe('a failed attempt', () => {
  it('with attempts left after a transient error: retrying, and a plain Error that decodes to COPY_FAILED', async () => {
    const { process, rows, records } = setup({ runners: { backup: failing(new Error('EIO: disk hiccup')) } });
    const { job } = fakeJob({ attemptsMade: 0, attempts: 3 });

    const err = await rejection(process(job, TOKEN));

    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message)).toEqual({ code: 'COPY_FAILED', message: 'EIO: disk hiccup' });
    expect(rows()).toEqual([
      { ...backupRow(), status: 'active' },
      { ...backupRow(), status: 'retrying', code: 'COPY_FAILED', message: 'EIO: disk hiccup' },
    ]);
    expect(records[1]?.result).toEqual({ code: 'COPY_FAILED', message: 'EIO: disk hiccup' });
  });

  it.each([
    ['restore', restoreData, 'RESTORE_FAILED'],
    ['verify', verifyData, 'VERIFY_FAILED'],
  ] as const)('names an unexpected %s error after its kind (%s)', async (kind, data, code) => {
    const { process } = setup({ runners: { [kind]: failing(new Error('EIO')) } });
    const err = await rejection(process(fakeJob({ name: kind, data }).job, TOKEN));
    expect(decodeFailure(err.message).code).toBe(code);
  });

  it('on the last attempt after a transient error: failed, with the failure in the error', async () => {
    const { process, rows } = setup({ runners: { backup: failing(new Error('EIO: disk hiccup')) } });
    const { job } = fakeJob({ attemptsStarted: 3, attemptsMade: 2, attempts: 3 });

    const err = await rejection(process(job, TOKEN));

    expect(decodeFailure(err.message)).toEqual({ code: 'COPY_FAILED', message: 'EIO: disk hiccup' });
    expect(rows().map((row) => [row.status, row.code, row.attempt])).toEqual([
      ['active', undefined, 3],
      ['failed', 'COPY_FAILED', 3],
    ]);
  });

  it('with no attempts configured, a transient error fails the job at once', async () => {
    const { process, statuses } = setup({ runners: { backup: failing('a thrown string') } });
    const { job } = fakeJob();
    (job.opts as { attempts?: number }).attempts = undefined;

    const err = await rejection(process(job, TOKEN));

    expect(decodeFailure(err.message)).toEqual({ code: 'COPY_FAILED', message: 'a thrown string' });
    expect(statuses()).toEqual(['active', 'failed']);
  });

  it('after a permanent JobFailure: failed at once, and an UnrecoverableError carrying its code', async () => {
    const failure = new JobFailure('SOURCE_NOT_FOUND', 'source "/srv/data" does not exist', true);
    const { process, rows, records } = setup({ runners: { backup: failing(failure) } });
    const { job } = fakeJob({ attemptsMade: 0, attempts: 5 });

    const err = await rejection(process(job, TOKEN));

    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message)).toEqual({ code: 'SOURCE_NOT_FOUND', message: failure.message });
    expect(rows()).toEqual([
      { ...backupRow(), status: 'active' },
      { ...backupRow(), status: 'failed', code: 'SOURCE_NOT_FOUND', message: failure.message },
    ]);
    expect(records[1]?.result).toEqual({ code: 'SOURCE_NOT_FOUND', message: failure.message });
  });

  it('after a JobFailure that is not permanent: retried while attempts are left', async () => {
    const failure = new JobFailure('DESTINATION_FULL', 'no space left', false);
    const { process, rows } = setup({ runners: { backup: failing(failure) } });
    const { job } = fakeJob({ attemptsMade: 1, attempts: 3 });

    const err = await rejection(process(job, TOKEN));

    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message).code).toBe('DESTINATION_FULL');
    expect(rows().at(-1)).toMatchObject({ status: 'retrying', code: 'DESTINATION_FULL' });
  });

  it('keeps a JobFailure’s problems through encodeFailure/decodeFailure and in the recorded failure', async () => {
    const problems: FailureProblem[] = [
      { path: 'docs/a.txt', problem: 'changed' },
      { path: 'caf\uFFFD.txt', pathBase64: 'Y2Fm6S50eHQ=', problem: 'missing' },
    ];
    const message = 'snapshot snap-1 is damaged: 2 entries do not match its manifest';
    const failure = new JobFailure('SNAPSHOT_DAMAGED', message, true, { problems });
    const { process, records } = setup({ runners: { verify: failing(failure) } });
    const { job } = fakeJob({ name: 'verify', data: verifyData });

    const err = await rejection(process(job, TOKEN));

    expect(err).toBeInstanceOf(UnrecoverableError);
    const expected: Failure = { code: 'SNAPSHOT_DAMAGED', message, problems };
    expect(decodeFailure(err.message)).toEqual(expected);
    expect(decodeFailure(encodeFailure(expected))).toEqual(expected);
    expect(records[1]?.result).toEqual(expected);
    expect(records[1]?.entries).toEqual([
      expect.objectContaining({ status: 'failed', code: 'SNAPSHOT_DAMAGED', message }),
    ]);
  });

  it('still throws the failure when the outbox cannot record it', async () => {
    const failure = new JobFailure('SOURCE_NOT_FOUND', 'gone', true);
    const { process, statuses } = setup({ runners: { backup: failing(failure) }, failRecords: true });
    const { job } = fakeJob();

    const err = await rejection(process(job, TOKEN));

    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message).code).toBe('SOURCE_NOT_FOUND');
    expect(statuses()).toEqual(['active']);
  });
});

describe("a runner's failedRow hook", () => {
  const damaged = {
    kind: 'verified',
    snapshotId: 'snap-1',
    verify: 'damaged',
    at: '2025-01-01T00:00:00.000Z',
  } as const;
  const withHook = (err: unknown) => {
    const hooked: Failure[] = [];
    const verify = runner<'verify'>(
      async () => {
        throw err;
      },
      (failure) => {
        hooked.push(failure);
        return { catalog: damaged, files: 42 };
      },
    );
    return { verify, hooked };
  };

  it('adds its fields to the failed row, given the failure as recorded', async () => {
    const { verify, hooked } = withHook(new JobFailure('SNAPSHOT_DAMAGED', 'damaged', true));
    const { process, rows } = setup({ runners: { verify } });
    const { job } = fakeJob({ name: 'verify', data: verifyData });

    await rejection(process(job, TOKEN));

    expect(rows()[1]).toMatchObject({ status: 'failed', code: 'SNAPSHOT_DAMAGED', catalog: damaged, files: 42 });
    expect(hooked).toEqual([{ code: 'SNAPSHOT_DAMAGED', message: 'damaged' }]);
  });

  it('is not asked on a retrying row', async () => {
    const { verify, hooked } = withHook(new Error('EIO'));
    const { process, rows } = setup({ runners: { verify } });
    const { job } = fakeJob({ name: 'verify', data: verifyData, attemptsMade: 0, attempts: 3 });

    await rejection(process(job, TOKEN));

    expect(rows()[1]?.status).toBe('retrying');
    expect(rows()[1]).not.toHaveProperty('catalog');
    expect(rows()[1]).not.toHaveProperty('files');
    expect(hooked).toEqual([]);
  });

  it('is not asked on a cancelled row', async () => {
    const { verify, hooked } = withHook(new Error('never runs'));
    const { process, rows } = setup({ runners: { verify }, cancelRequested: true });
    const { job } = fakeJob({ name: 'verify', data: verifyData });

    await rejection(process(job, TOKEN));

    expect(rows()[1]?.status).toBe('cancelled');
    expect(rows()[1]).not.toHaveProperty('catalog');
    expect(rows()[1]).not.toHaveProperty('files');
    expect(hooked).toEqual([]);
  });
});

/** A runner that waits for its signal and rejects when it aborts; `started` resolves once it runs. */
function waitingForAbort() {
  let markStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => {
    markStarted = resolve;
  });
  const backup = runner<'backup'>(
    ({ signal }) =>
      new Promise((_resolve, reject) => {
        markStarted();
        signal?.addEventListener('abort', () => reject(new Error(`aborted: ${String(signal.reason)}`)), {
          once: true,
        });
      }),
  );
  return { backup, started };
}

/** Runs a job whose runner waits for its signal, aborts the signal with `reason` once it runs. */
async function abortedDuringRun(reason: string, jobOptions: FakeJobOptions) {
  const { backup, started } = waitingForAbort();
  const harness = setup({ runners: { backup } });
  const { job, calls } = fakeJob(jobOptions);
  const controller = new AbortController();

  const outcome = rejection(harness.process(job, TOKEN, controller.signal));
  await started;
  controller.abort(reason);
  return { ...harness, calls, err: await outcome };
}

describe('cancel, shutdown and lost locks', () => {
  it('a cancel requested before the start: cancelled row, noted, runner never runs', async () => {
    const backup = runner<'backup'>(async () => ({ result: { path: '/p', files: 0, bytes: 0, durationMs: 0 } }));
    const { process, rows, noted } = setup({ runners: { backup }, cancelRequested: true });
    const { job } = fakeJob({ attemptsMade: 0, attempts: 3 });

    const err = await rejection(process(job, TOKEN));

    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message)).toEqual({ code: 'CANCELLED', message: CANCEL_REASON });
    expect(rows()).toEqual([
      { ...backupRow(), status: 'active' },
      { ...backupRow(), status: 'cancelled', code: 'CANCELLED', message: CANCEL_REASON },
    ]);
    expect(noted).toEqual(['job-1']);
    expect(backup.runs).toEqual([]);
  });

  it('a cancel during the run (signal aborted with CANCEL_REASON): cancelled, whatever the runner threw', async () => {
    const { err, rows, noted } = await abortedDuringRun(CANCEL_REASON, { attemptsMade: 0, attempts: 3 });

    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message).code).toBe('CANCELLED');
    expect(rows().map((row) => [row.status, row.code])).toEqual([
      ['active', undefined],
      ['cancelled', 'CANCELLED'],
    ]);
    expect(noted).toEqual(['job-1']);
  });

  it('a shutdown during the run: retrying WORKER_STOPPED, the job moved back to wait, WaitingError', async () => {
    const { err, rows, noted, calls } = await abortedDuringRun(SHUTDOWN_REASON, { attemptsMade: 2, attempts: 3 });

    expect(err).toBeInstanceOf(WaitingError);
    expect(rows()).toEqual([
      { ...backupRow(), status: 'active' },
      { ...backupRow(), status: 'retrying', code: 'WORKER_STOPPED', message: expect.any(String) as string },
    ]);
    expect(calls.moveToWait).toEqual([TOKEN]);
    expect(noted).toEqual([]);
  });

  it('the lock lost when the runner fails: nothing after active, and an error', async () => {
    // Failing after a lock's time: another attempt may have the job by now.
    const slowFailure = runner<'backup'>(async () => {
      clock.elapsedMs += LOCK_MS;
      throw new Error('EIO');
    });
    const { process, statuses, noted } = setup({ runners: { backup: slowFailure } });
    const { job, calls } = fakeJob({ lockHeld: false, attemptsMade: 2, attempts: 3 });

    const err = await rejection(process(job, TOKEN));

    expect(err).not.toBeInstanceOf(WaitingError);
    expect(statuses()).toEqual(['active']);
    expect(calls.extendLock).toEqual([[TOKEN, LOCK_MS]]);
    expect(calls.moveToWait).toEqual([]);
    expect(noted).toEqual([]);
  });

  it('asks whether it still holds the lock only once half of the lock time has passed', async () => {
    const asked: boolean[] = [];
    const checking = runner<'backup'>(async ({ stillOwned }) => {
      asked.push(await stillOwned());
      clock.elapsedMs += LOCK_MS / 2;
      asked.push(await stillOwned());
      throw new Error('EIO');
    });
    const { process, statuses } = setup({ runners: { backup: checking } });
    const { job, calls } = fakeJob({ lockHeld: false, attemptsMade: 0, attempts: 1 });

    await rejection(process(job, TOKEN));

    // Just started: the lock was taken a moment ago, no need to ask; half its time later it asks
    // (and once more on failing, as the lock is still not proven).
    expect(asked).toEqual([true, false]);
    expect(calls.extendLock).toEqual([
      [TOKEN, LOCK_MS],
      [TOKEN, LOCK_MS],
    ]);
    expect(statuses()).toEqual(['active']);
  });

  it('AttemptSuperseded thrown by the runner: nothing after active', async () => {
    const { process, statuses } = setup({ runners: { backup: failing(new AttemptSuperseded('job-1')) } });
    const { job, calls } = fakeJob({ attemptsMade: 2, attempts: 3 });

    await rejection(process(job, TOKEN));

    expect(statuses()).toEqual(['active']);
    expect(calls.moveToWait).toEqual([]);
  });

  it('a signal aborted with LOCK_LOST_REASON: nothing after active', async () => {
    const { err, statuses, calls } = await abortedDuringRun(LOCK_LOST_REASON, { attemptsMade: 0, attempts: 3 });

    expect(err).not.toBeInstanceOf(WaitingError);
    expect(statuses()).toEqual(['active']);
    expect(calls.moveToWait).toEqual([]);
  });
});

describe('a run after a crash (attemptsStarted > 1)', () => {
  it('returns the result an earlier run recorded as completed, writing no row and running nothing', async () => {
    const earlier = { path: '/backups/data/s1', files: 5, bytes: 50, durationMs: 9 };
    const backup = runner<'backup'>(async () => ({ result: { path: '/other', files: 0, bytes: 0, durationMs: 0 } }));
    const { process, records } = setup({ runners: { backup }, finished: { status: 'completed', result: earlier } });
    const { job } = fakeJob({ attemptsStarted: 2 });

    await expect(process(job, TOKEN)).resolves.toEqual(earlier);

    expect(records).toEqual([]);
    expect(backup.runs).toEqual([]);
  });

  it('fails for good with the failure an earlier run recorded, writing no row', async () => {
    const recorded: Failure = { code: 'SOURCE_NOT_FOUND', message: 'gone' };
    const backup = runner<'backup'>(async () => ({ result: { path: '/p', files: 0, bytes: 0, durationMs: 0 } }));
    const { process, records } = setup({ runners: { backup }, finished: { status: 'failed', result: recorded } });
    const { job } = fakeJob({ attemptsStarted: 2 });

    const err = await rejection(process(job, TOKEN));

    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(decodeFailure(err.message)).toEqual(recorded);
    expect(records).toEqual([]);
    expect(backup.runs).toEqual([]);
  });

  it('does not ask the outbox on a first run', async () => {
    const backup = runner<'backup'>(async () => ({ result: { path: '/p', files: 1, bytes: 1, durationMs: 1 } }));
    // Even a stale marker is not consulted when this is the first run.
    const { process, statuses } = setup({ runners: { backup }, finished: { status: 'failed', result: {} } });
    const { job } = fakeJob({ attemptsStarted: 1 });

    await process(job, TOKEN);

    expect(statuses()).toEqual(['active', 'completed']);
  });
});

describe('jobs this worker cannot run', () => {
  // A kind it knows but has no runner for still ends its history; an unknown name has no row shape.
  it.each([
    ['an unknown kind', 'compact', []],
    ['a kind without a runner', 'prune', ['failed']],
  ])('%s: UnrecoverableError INVALID_JOB, rows %j', async (_case, name, expected) => {
    const backup = runner<'backup'>(async () => ({ result: { path: '/p', files: 0, bytes: 0, durationMs: 0 } }));
    const { process, statuses, rows } = setup({ runners: { backup } });
    const { job } = fakeJob({ name });

    const err = await rejection(process(job, TOKEN));

    expect(err).toBeInstanceOf(UnrecoverableError);
    const failure = decodeFailure(err.message);
    expect(failure.code).toBe('INVALID_JOB');
    expect(failure.message).toContain(name);
    expect(statuses()).toEqual(expected);
    for (const row of rows()) expect(row).toMatchObject({ action: name, code: 'INVALID_JOB' });
    expect(backup.runs).toEqual([]);
  });
});

describe("an attempt's tag", () => {
  async function tagOf(token: string | undefined, attemptsStarted = 1): Promise<string> {
    const backup = runner<'backup'>(async () => ({ result: { path: '/p', files: 0, bytes: 0, durationMs: 0 } }));
    const { process } = setup({ runners: { backup } });
    await process(fakeJob({ attemptsStarted }).job, token);
    const tag = backup.runs[0]?.tag;
    if (tag === undefined) throw new Error('the runner did not run');
    return tag;
  }

  it('differs between lock tokens and names files safely', async () => {
    const tags = await Promise.all(['token-a', 'token-b', 'token-a:1', `${'x'.repeat(200)}/../é`].map((t) => tagOf(t)));

    expect(new Set(tags).size).toBe(tags.length);
    for (const tag of tags) expect(tag).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('is safe without a lock token too', async () => {
    expect(await tagOf(undefined, 2)).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});

describe('an attempt whose active row may wait (activeDelayMs)', () => {
  const result = { path: '/backups/data/s1', files: 3, bytes: 12, durationMs: 7 };

  it('records active and completed in one round trip when the job ends within the delay, active dated at its start', async () => {
    const backup = runner<'backup'>(async () => ({ result }));
    const { process, records } = setup({ runners: { backup }, activeDelayMs: 60_000 });
    const before = Date.now();

    await expect(process(fakeJob().job, TOKEN)).resolves.toEqual(result);

    expect(records).toHaveLength(1);
    const [active, completed] = records[0]?.entries ?? [];
    expect(records[0]?.entries).toHaveLength(2);
    expect(active).toMatchObject({ ...backupRow(), status: 'active' });
    expect(completed).toEqual({ ...backupRow(), status: 'completed' });
    expect(records[0]?.result).toEqual(result);
    const date = new Date(active?.date ?? 0).getTime();
    expect(date).toBeGreaterThanOrEqual(before);
    expect(date).toBeLessThanOrEqual(Date.now());
  });

  it('records active on its own once the delay has passed, while the job runs', async () => {
    let activeSeenWhileRunning = false;
    const recordsRef: { current?: { entries: LogEntry[] }[] } = {};
    const backup = runner<'backup'>(async () => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      activeSeenWhileRunning = recordsRef.current?.[0]?.entries[0]?.status === 'active';
      return { result };
    });
    const out = setup({ runners: { backup }, activeDelayMs: 10 });
    recordsRef.current = out.records;

    await out.process(fakeJob().job, TOKEN);

    expect(activeSeenWhileRunning).toBe(true);
    expect(out.statuses()).toEqual(['active', 'completed']);
    expect(out.records).toHaveLength(2);
  });

  it('records active with the failure of a job that fails within the delay', async () => {
    const { process, records } = setup({
      runners: { backup: failing(new JobFailure('SOURCE_NOT_FOUND', 'gone', true)) },
      activeDelayMs: 60_000,
    });

    await rejection(process(fakeJob().job, TOKEN));

    expect(records).toHaveLength(1);
    expect(records[0]?.entries.map((entry) => entry.status)).toEqual(['active', 'failed']);
    expect(records[0]?.result).toEqual({ code: 'SOURCE_NOT_FOUND', message: 'gone' });
  });
});
