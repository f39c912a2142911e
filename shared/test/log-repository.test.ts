import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'mysql2/promise';
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

  it('returns histories of several jobs grouped, unknown ones empty', async () => {
    const id = randomUUID();
    await repo.append(entry(id, 'queued'));
    const histories = await repo.histories([id, 'unknown-job']);
    expect(histories.get(id)?.map((row) => row.status)).toEqual(['queued']);
    expect(histories.get('unknown-job')).toEqual([]);
  });
});
