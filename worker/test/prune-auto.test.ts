import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { BackupResult, JobItem, LogEntry, StoredRetention } from '@coffer/shared';
import { createJobProcessor, type CompletedJob, type QueueJob } from '../src/jobs/attempt-lifecycle.js';
import { autoPruneJobId, createAutoPrune } from '../src/jobs/auto-prune.js';

// Unit tests, no Redis or MySQL: the follow-up of a completed job, and how the automatic prune
// is queued after a backup.

const logger = pino({ level: 'silent' });
const backup: JobItem = { name: 'backup', data: { source: '/srv/data', destination: 'data', actor: 'alice' } };
const backupResult: BackupResult = { path: '/b/data/s', files: 1, bytes: 1, durationMs: 1 };
const completedBackup: CompletedJob = { jobId: 'backup-1', item: backup, result: backupResult };
const policy: StoredRetention = {
  destination: 'data',
  policy: { keepLast: 3 },
  updatedBy: 'admin',
  updatedAt: new Date(),
};

/** What happened, in order: rows recorded (by status) and jobs added (by name and id). */
function fakes(options: { policy?: StoredRetention | null; policyFails?: boolean; addFails?: boolean } = {}) {
  const events: string[] = [];
  const rows: LogEntry[] = [];
  const deps = {
    config: { instanceName: 'w1' },
    retention: {
      async get(): Promise<StoredRetention | null> {
        if (options.policyFails) throw new Error('MySQL is away');
        return options.policy === undefined ? policy : options.policy;
      },
    },
    catalog: {
      async until() {
        return true;
      },
    },
    outbox: {
      async record(entries: readonly LogEntry[]) {
        rows.push(...entries);
        events.push(...entries.map((entry) => `row ${entry.status}`));
      },
    },
    queue: {
      async add(name: string, _data: unknown, opts?: { jobId?: string }) {
        if (options.addFails) throw new Error('Redis is away');
        events.push(`add ${name} ${opts?.jobId}`);
        return {} as never;
      },
    },
  };
  return { deps, events, rows };
}

describe('the automatic prune', () => {
  it('records the prune’s queued row, then queues it, as the backup’s actor, with an id fixed by the backup', async () => {
    const { deps, events, rows } = fakes();
    await createAutoPrune(deps)(completedBackup, logger);

    const id = autoPruneJobId('backup-1');
    expect(events).toEqual(['row queued', `add prune ${id}`]);
    expect(rows[0]).toMatchObject({
      action: 'prune',
      status: 'queued',
      jobId: id,
      attempt: 1,
      parameter: 'data',
      destination: 'data',
      actor: 'alice',
    });
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(autoPruneJobId('backup-1')).toBe(id);
    expect(autoPruneJobId('backup-2')).not.toBe(id);
  });

  it('queues nothing for a destination without a policy, nor after other kinds of job', async () => {
    const none = fakes({ policy: null });
    await createAutoPrune(none.deps)(completedBackup, logger);
    expect(none.events).toEqual([]);

    const other = fakes();
    const verify: JobItem = {
      name: 'verify',
      data: { snapshot: 's', snapshotPath: '/b/s', source: '/srv', destination: 'data', manifestSha256: 'a' },
    };
    await createAutoPrune(other.deps)({ jobId: 'v', item: verify, result: completedBackup.result }, logger);
    expect(other.events).toEqual([]);
  });

  it('skips, without failing, when the policy cannot be read', async () => {
    const { deps, events } = fakes({ policyFails: true });
    await expect(createAutoPrune(deps)(completedBackup, logger)).resolves.toBeUndefined();
    expect(events).toEqual([]);
  });

  it('closes the prune’s history with a failed row when the queue refuses it', async () => {
    const { deps, rows } = fakes({ addFails: true });
    await expect(createAutoPrune(deps)(completedBackup, logger)).rejects.toThrow('Redis is away');
    expect(rows.map((row) => [row.status, row.code])).toEqual([
      ['queued', undefined],
      ['failed', 'QUEUE_UNAVAILABLE'],
    ]);
  });
});

describe('the follow-up of a completed job', () => {
  function fakeJob(attemptsStarted = 1): QueueJob {
    return {
      id: 'backup-1',
      name: 'backup',
      data: backup.data,
      attemptsStarted,
      attemptsMade: attemptsStarted - 1,
      opts: { attempts: 3 },
      processedOn: Date.now(),
      extendLock: async () => 1,
      moveToWait: async () => 0,
      updateProgress: async () => undefined,
    } as unknown as QueueJob;
  }

  function processor(finished: { status: string; result: unknown } | null, followUp: () => Promise<void>) {
    const events: string[] = [];
    const process = createJobProcessor(
      {
        config: { instanceName: 'w1', jobLockMs: 30_000 },
        outbox: {
          async record(entries: readonly LogEntry[]) {
            events.push(...entries.map((entry) => `row ${entry.status}`));
          },
          async finished() {
            return finished;
          },
        },
        logger,
        isCancelRequested: async () => false,
        noteCancelled: async () => undefined,
        afterCompleted: async (job) => {
          events.push(`follow-up ${job.jobId} ${job.item.name}`);
          await followUp();
        },
      },
      { backup: { run: async () => ({ result: backupResult }) } },
    );
    return { process, events };
  }

  it('runs once the completed row is recorded', async () => {
    const { process, events } = processor(null, async () => undefined);
    await expect(process(fakeJob(), 'token')).resolves.toEqual(completedBackup.result);
    expect(events).toEqual(['row active', 'row completed', 'follow-up backup-1 backup']);
  });

  it('cannot fail the job: its failure is only logged', async () => {
    const { process, events } = processor(null, async () => {
      throw new Error('queue away');
    });
    await expect(process(fakeJob(), 'token')).resolves.toEqual(completedBackup.result);
    expect(events).toEqual(['row active', 'row completed', 'follow-up backup-1 backup']);
  });

  it('runs again when a run after a crash confirms the completed row', async () => {
    const { process, events } = processor(
      { status: 'completed', result: completedBackup.result },
      async () => undefined,
    );
    await expect(process(fakeJob(2), 'token')).resolves.toEqual(completedBackup.result);
    expect(events).toEqual(['follow-up backup-1 backup']);
  });
});
