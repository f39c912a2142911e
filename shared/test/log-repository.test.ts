import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import { createLogRepository, createMysqlPool, type LogEntry, type LogRepository } from '@coffer/shared';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';

let env: TestEnvironment;
let pool: Pool;
let repo: LogRepository;

beforeAll(async () => {
  env = await createTestEnvironment();
  pool = createMysqlPool(env.config.mysql);
  repo = createLogRepository(pool);
});

afterAll(async () => {
  await pool.end();
  await env.cleanup();
});

function entry(jobId: string, status: LogEntry['status'], attempt = 1): LogEntry {
  return { action: 'backup', parameter: `/srv/${jobId}`, status, jobId, attempt, worker: 'test', destination: 'd' };
}

describe('log repository', () => {
  it('appends several transitions in order in one call, and a repeated transition only once', async () => {
    const id = randomUUID();
    await repo.append([entry(id, 'queued'), entry(id, 'active')]);
    await repo.append(entry(id, 'active'));
    await repo.append({ ...entry(id, 'completed'), files: 3, bytes: 10, durationMs: 7, snapshot: '/b/d/x' });
    const rows = await repo.history(id);
    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'completed']);
    expect(rows[2]).toMatchObject({ files: 3, bytes: 10, durationMs: 7, snapshot: '/b/d/x', worker: 'test' });
    expect(rows[0]?.date).toBeInstanceOf(Date);
  });

  it('keeps every rejected request (they have no job id)', async () => {
    const rejected: LogEntry = {
      action: 'backup',
      parameter: '/etc',
      status: 'rejected',
      jobId: null,
      attempt: null,
      worker: 'api',
      code: 'SOURCE_OUTSIDE_ROOTS',
      message: 'no',
    };
    await repo.append([rejected, rejected]);
    const page = await repo.query({ status: 'rejected', limit: 10 });
    expect(page.items).toHaveLength(2);
  });

  it('pages newest first without overlap', async () => {
    const ids = Array.from({ length: 7 }, () => randomUUID());
    for (const id of ids) await repo.append(entry(id, 'queued'));
    const seen: number[] = [];
    let cursor: number | undefined;
    for (;;) {
      const page = await repo.query({ status: 'queued', limit: 3, cursor });
      seen.push(...page.items.map((row) => row.id));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    expect(seen).toEqual([...seen].sort((a, b) => b - a));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBeGreaterThanOrEqual(7);
  });

  it('filters by time window', async () => {
    const future = new Date(Date.now() + 3_600_000);
    expect((await repo.query({ since: future, limit: 10 })).items).toEqual([]);
    expect((await repo.query({ until: future, limit: 1 })).items).toHaveLength(1);
  });

  it('lists jobs by their latest status', async () => {
    const done = randomUUID();
    const waiting = randomUUID();
    await repo.append([entry(done, 'queued'), entry(done, 'active'), entry(done, 'completed')]);
    await repo.append(entry(waiting, 'queued'));
    const completed = await repo.jobIds({ status: 'completed', limit: 100 });
    const queued = await repo.jobIds({ status: 'queued', limit: 100 });
    expect(completed.items.map((item) => item.jobId)).toContain(done);
    expect(completed.items.map((item) => item.jobId)).not.toContain(waiting);
    expect(queued.items.map((item) => item.jobId)).toContain(waiting);
    expect(queued.items.map((item) => item.jobId)).not.toContain(done);
  });

  it('lists a job by its terminal status even when a stray row of a dead attempt lands after it', async () => {
    const id = randomUUID();
    await repo.append([entry(id, 'queued'), entry(id, 'active'), entry(id, 'completed')]);
    await repo.append(entry(id, 'active', 2));

    const completed = await repo.jobIds({ status: 'completed', limit: 100 });
    const active = await repo.jobIds({ status: 'active', limit: 100 });

    expect(completed.items.map((item) => item.jobId)).toContain(id);
    expect(active.items.map((item) => item.jobId)).not.toContain(id);
  });

  it("keeps each job's status in step whatever order concurrent writers commit in", async () => {
    const jobs = Array.from({ length: 20 }, () => randomUUID());
    await repo.append(jobs.map((id) => entry(id, 'queued')));
    // Each job's later rows race each other in separate appends (separate transactions).
    await Promise.all(
      jobs.flatMap((id, i) => [
        repo.append(entry(id, 'active')),
        repo.append(entry(id, 'retrying')),
        repo.append(entry(id, 'active', 2)),
        ...(i % 2 === 0 ? [repo.append(entry(id, 'failed', 2))] : []),
      ]),
    );

    const [rows] = await pool.query<RowDataPacket[]>('SELECT job_id, status FROM job_status WHERE job_id IN (?)', [
      jobs,
    ]);
    const stored = new Map(rows.map((row) => [String(row.job_id), String(row.status)]));
    const histories = await repo.histories(jobs);
    for (const id of jobs) {
      const history = histories.get(id) ?? [];
      const expected = (history.find((row) => row.status === 'failed') ?? history.at(-1))?.status;
      expect(stored.get(id), id).toBe(expected);
    }
  });

  it("lists by status only the jobs of one token when asked, by the actor of each job's queued row", async () => {
    const mine = randomUUID();
    const theirs = randomUUID();
    await repo.append([
      { ...entry(mine, 'queued'), actor: 'ops' },
      { ...entry(theirs, 'queued'), actor: 'other' },
    ]);
    await repo.append([
      { ...entry(mine, 'active'), actor: 'ops' },
      { ...entry(theirs, 'active'), actor: 'other' },
    ]);

    const page = await repo.jobIds({ status: 'active', actor: 'ops', limit: 100 });

    expect(page.items.map((item) => item.jobId)).toEqual([mine]);
  });

  it('pages a status filter by the queued rows, newest first, without overlap', async () => {
    const ids: string[] = Array.from({ length: 7 }, () => randomUUID());
    for (const id of ids) await repo.append([entry(id, 'queued'), entry(id, 'cancelled')]);
    const [queuedRows] = await pool.query<RowDataPacket[]>(
      "SELECT id, job_id FROM log WHERE status = 'queued' AND job_id IN (?) ORDER BY id DESC",
      [ids],
    );
    const seen: { id: number; jobId: string }[] = [];
    let cursor: number | undefined;
    for (;;) {
      const page = await repo.jobIds({ status: 'cancelled', limit: 3, cursor });
      seen.push(...page.items);
      if (page.nextCursor === null) break;
      expect(page.nextCursor).toBe(page.items.at(-1)?.id);
      cursor = page.nextCursor;
    }
    expect(seen.filter((item) => ids.includes(item.jobId))).toEqual(
      queuedRows.map((row) => ({ id: Number(row.id), jobId: String(row.job_id) })),
    );
  });

  it('lists jobs of one kind, with or without a status, by the action of their queued row', async () => {
    const backup = randomUUID();
    const verify = randomUUID();
    const restore = randomUUID();
    await repo.append([
      entry(backup, 'queued'),
      { ...entry(verify, 'queued'), action: 'verify', snapshotId: backup },
      { ...entry(restore, 'queued'), action: 'restore', snapshotId: backup, actor: 'ops' },
    ]);
    await repo.append([{ ...entry(verify, 'active'), action: 'verify', snapshotId: backup }]);
    const ids = async (filter: Omit<Parameters<LogRepository['jobIds']>[0], 'limit'>) =>
      (await repo.jobIds({ ...filter, limit: 100 })).items.map((item) => item.jobId);

    expect(await ids({ kind: 'verify' })).toContain(verify);
    expect(await ids({ kind: 'verify' })).not.toContain(backup);
    expect(await ids({ kind: 'verify', status: 'active' })).toEqual([verify]);
    expect(await ids({ kind: 'verify', status: 'queued' })).not.toContain(verify);
    expect(await ids({ kind: 'backup', status: 'queued' })).toContain(backup);
    expect(await ids({ kind: 'backup', status: 'queued' })).not.toContain(restore);
    expect(await ids({ kind: 'restore', status: 'queued', actor: 'ops' })).toEqual([restore]);
    expect(await ids({ kind: 'restore', actor: 'other' })).toEqual([]);
    expect((await repo.history(verify))[0]).toMatchObject({ action: 'verify', snapshotId: backup });
  });

  it('keeps the kind of a job whose later rows reached the log before its queued row', async () => {
    const id = randomUUID();
    await repo.append({ ...entry(id, 'active'), action: 'prune' });
    await repo.append({ ...entry(id, 'queued'), action: 'prune' });
    const [rows] = await pool.query<RowDataPacket[]>('SELECT kind FROM job_status WHERE job_id = ?', [id]);
    expect(rows[0]?.kind).toBe('prune');
    expect((await repo.jobIds({ kind: 'prune', limit: 10 })).items.map((item) => item.jobId)).toEqual([id]);
  });

  it('returns histories of several jobs grouped, unknown ones empty', async () => {
    const id = randomUUID();
    await repo.append(entry(id, 'queued'));
    const histories = await repo.histories([id, 'unknown-job']);
    expect(histories.get(id)?.map((row) => row.status)).toEqual(['queued']);
    expect(histories.get('unknown-job')).toEqual([]);
  });
});
