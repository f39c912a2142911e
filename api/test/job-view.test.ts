import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobKind, LogRow } from '@coffer/shared';
import { viewFromLog } from '../src/jobs/job-view.js';
import { finishThroughLog, queueBackup, startApi, type ApiHarness, type JobViewBody } from './helpers.js';

// Once Redis has dropped a job, its view is rebuilt from its log rows alone: each kind must
// come back with what its rows recorded.
function rows(kind: JobKind, parameter: string, last: Partial<LogRow>): LogRow[] {
  const base = {
    action: kind,
    parameter,
    jobId: 'job-1',
    attempt: 1,
    worker: 'w',
    message: null,
    code: null,
    destination: 'project',
    snapshot: null,
    snapshotId: kind === 'backup' ? null : 'snap-1',
    files: null,
    bytes: null,
    durationMs: null,
    actor: 'ops',
    schedule: null,
  };
  return [
    { ...base, id: 1, date: new Date('2026-11-29T10:00:00Z'), status: 'queued' },
    { ...base, id: 2, date: new Date('2026-11-29T10:00:01Z'), status: 'active' },
    { ...base, id: 3, date: new Date('2026-11-29T10:00:02Z'), status: 'completed', ...last },
  ];
}

describe('a job view rebuilt from the log', () => {
  it('gives a restore its target, snapshot and result path', () => {
    const view = viewFromLog(rows('restore', '/srv/back', { files: 2, bytes: 10, durationMs: 5 }));
    expect(view).toMatchObject({
      kind: 'restore',
      status: 'completed',
      target: '/srv/back',
      snapshot: 'snap-1',
      destination: 'project',
      result: { path: '/srv/back', files: 2, bytes: 10, durationMs: 5 },
      progress: { files: 2, filesTotal: 2, bytes: 10, bytesTotal: 10 },
    });
    expect(view).not.toHaveProperty('source');
    // The log keeps no live progress: those fields are left out rather than made up.
    expect(view?.progress).toEqual({ files: 2, filesTotal: 2, bytes: 10, bytesTotal: 10 });
  });

  it("gives a verify its snapshot, the snapshot's source and a clean result", () => {
    const view = viewFromLog(rows('verify', '/srv/project', { files: 3, bytes: 30, durationMs: 7 }));
    expect(view).toMatchObject({
      kind: 'verify',
      source: '/srv/project',
      snapshot: 'snap-1',
      result: { files: 3, bytes: 30, damaged: 0, durationMs: 7 },
    });
    expect(view).not.toHaveProperty('target');
  });

  it('keeps a backup as it was, with its snapshot path', () => {
    const view = viewFromLog(rows('backup', '/srv/project', { snapshot: '/b/project/x', files: 1, bytes: 1 }));
    expect(view).toMatchObject({ kind: 'backup', source: '/srv/project', result: { path: '/b/project/x' } });
    expect(view).not.toHaveProperty('snapshot');
  });

  it('gives a failed verify its code and message', () => {
    const failed = rows('verify', '/srv/project', {
      status: 'failed',
      code: 'SNAPSHOT_DAMAGED',
      message: 'snapshot snap-1 is damaged',
    });
    expect(viewFromLog(failed)?.error).toEqual({ code: 'SNAPSHOT_DAMAGED', message: 'snapshot snap-1 is damaged' });
  });
});

describe('the live progress of a job', () => {
  let api: ApiHarness;
  let folder: string;

  beforeAll(async () => {
    api = await startApi();
    folder = join(api.env.sources, 'live');
    await mkdir(folder);
  });

  afterAll(async () => {
    await api?.close();
  });

  async function viewOf(id: string): Promise<JobViewBody> {
    const res = await api.app.inject({ method: 'GET', url: `/jobs/${id}` });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<JobViewBody>();
  }

  it('shows the throughput, the time left and the entry in flight as the worker wrote them', async () => {
    const id = await queueBackup(api.app, { source: folder });
    const job = await api.app.backupQueue.getJob(id);
    const live = {
      files: 4,
      filesTotal: 10,
      bytes: 4_000,
      bytesTotal: 10_000,
      bytesPerSecond: 2_000,
      etaSeconds: 3,
      current: 'photos/2026/été.jpg',
    };
    await job?.updateProgress(live);

    expect((await viewOf(id)).progress).toEqual(live);
  });

  it('fills the live fields of progress written before they existed', async () => {
    const id = await queueBackup(api.app, { source: folder });
    const job = await api.app.backupQueue.getJob(id);
    await job?.updateProgress({ files: 1, filesTotal: 0, bytes: 5, bytesTotal: 0 });

    expect((await viewOf(id)).progress).toEqual({
      files: 1,
      filesTotal: 0,
      bytes: 5,
      bytesTotal: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      current: null,
    });
  });

  it('leaves the live fields out of a view rebuilt from the log', async () => {
    const id = await queueBackup(api.app, { source: folder });
    const outcome = { status: 'completed', snapshot: '/backups/live/x', files: 1, bytes: 2, durationMs: 3 } as const;
    await finishThroughLog(api.app, id, outcome);

    expect((await viewOf(id)).progress).toEqual({ files: 1, filesTotal: 1, bytes: 2, bytesTotal: 2 });
  });
});
