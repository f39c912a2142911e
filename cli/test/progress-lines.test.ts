import { describe, expect, it } from 'vitest';
import { lineReporter } from '../src/wait.js';
import type { JobView } from '../src/views.js';

function view(status: string, files: number, bytes: number): JobView {
  return {
    id: 'job-1',
    kind: 'backup',
    status,
    destination: 'd',
    attempts: 1,
    progress: { files, filesTotal: 4, bytes, bytesTotal: 4096 },
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    actor: null,
    schedule: null,
  };
}

describe('plain progress lines (stdout not a terminal)', () => {
  it('writes at most one line a second, and only when something changed', () => {
    const written: string[] = [];
    let now = 0;
    const reporter = lineReporter({ write: (text: string) => written.push(text) }, () => now);
    reporter.update(view('queued', 0, 0));
    now = 500;
    reporter.update(view('active', 1, 1024));
    now = 1000;
    reporter.update(view('active', 1, 1024));
    now = 1500;
    reporter.update(view('active', 1, 1024));
    now = 2000;
    reporter.update(view('active', 2, 2048));
    now = 2500;
    reporter.update(view('active', 2, 2048));
    expect(written).toEqual([
      'backup job job-1 queued: 0/4 files, 0 B/4.0 KiB\n',
      'backup job job-1 active: 1/4 files, 1.0 KiB/4.0 KiB\n',
      'backup job job-1 active: 2/4 files, 2.0 KiB/4.0 KiB\n',
    ]);
  });

  it('adds the rate and the time left once the API knows them', () => {
    const written: string[] = [];
    const reporter = lineReporter({ write: (text: string) => written.push(text) }, () => 0);
    const moving = view('active', 2, 2048);
    reporter.update({ ...moving, progress: { ...moving.progress, bytesPerSecond: 1024, etaSeconds: 3725 } });
    expect(written).toEqual(['backup job job-1 active: 2/4 files, 2.0 KiB/4.0 KiB, 1.0 KiB/s, 1:02:05 left\n']);
  });
});
