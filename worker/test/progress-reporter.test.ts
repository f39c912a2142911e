import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { JobProgress } from '@coffer/shared';
import { Throughput, createProgressReporter, etaSeconds } from '../src/jobs/progress-reporter.js';

/** A reporter on a clock the test moves, and every progress it wrote. */
function setup() {
  let now = 1_000;
  const written: JobProgress[] = [];
  const job = {
    updateProgress: async (progress: unknown) => {
      written.push(progress as JobProgress);
    },
  };
  const reporter = createProgressReporter(job, pino({ level: 'silent' }), { now: () => now });
  return {
    reporter,
    written,
    last: () => written.at(-1),
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('the throughput of a job', () => {
  it('is 0 until two samples span some time', () => {
    const throughput = new Throughput(5_000);
    expect(throughput.sample(0, 0)).toBe(0);
    expect(throughput.sample(0, 100)).toBe(0);
  });

  it('is the bytes moved over the recent window, not since the start', () => {
    const throughput = new Throughput(5_000);
    // 1 MB/s for ten seconds, then 100 kB/s.
    for (let second = 0; second <= 10; second += 1) throughput.sample(second * 1_000, second * 1_000_000);
    expect(throughput.sample(10_500, 10_500_000)).toBe(1_000_000);
    let bytes = 10_500_000;
    let rate = 0;
    for (let at = 11_000; at <= 20_000; at += 500) {
      bytes += 50_000;
      rate = throughput.sample(at, bytes);
    }
    expect(rate).toBe(100_000);
  });

  it('is an integer', () => {
    const throughput = new Throughput(5_000);
    throughput.sample(0, 0);
    expect(throughput.sample(3_000, 1_000)).toBe(333);
  });

  it('starts over when the counts go back', () => {
    const throughput = new Throughput(5_000);
    throughput.sample(0, 0);
    expect(throughput.sample(1_000, 5_000)).toBe(5_000);
    expect(throughput.sample(2_000, 100)).toBe(0);
    expect(throughput.sample(3_000, 1_100)).toBe(1_000);
  });
});

describe('the time left', () => {
  it('is unknown until the totals are known and bytes are moving', () => {
    expect(etaSeconds({ bytes: 10, bytesTotal: 0, bytesPerSecond: 5 })).toBeNull();
    expect(etaSeconds({ bytes: 10, bytesTotal: 100, bytesPerSecond: 0 })).toBeNull();
  });

  it('is the bytes left at the recent pace, in whole seconds rounded up, never below 0', () => {
    expect(etaSeconds({ bytes: 10, bytesTotal: 100, bytesPerSecond: 30 })).toBe(3);
    expect(etaSeconds({ bytes: 10, bytesTotal: 100, bytesPerSecond: 45 })).toBe(2);
    // Totals measured beside the copy may fall behind it.
    expect(etaSeconds({ bytes: 120, bytesTotal: 100, bytesPerSecond: 45 })).toBe(0);
  });
});

describe('a progress reporter', () => {
  it('writes the throughput, the time left and the entry in flight with the counts', () => {
    const { reporter, last, advance } = setup();
    reporter.advanced(0, 0, null);
    expect(last()).toEqual({
      files: 0,
      filesTotal: 0,
      bytes: 0,
      bytesTotal: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      current: null,
    });
    advance(1_000);
    reporter.advanced(3, 2_000, 'docs/a.txt');
    // The totals are not known yet: no time left.
    expect(last()).toEqual({
      files: 3,
      filesTotal: 0,
      bytes: 2_000,
      bytesTotal: 0,
      bytesPerSecond: 2_000,
      etaSeconds: null,
      current: 'docs/a.txt',
    });
    advance(1_000);
    reporter.measured(10, 10_000);
    expect(last()).toMatchObject({ filesTotal: 10, bytesTotal: 10_000, bytesPerSecond: 1_000, etaSeconds: 8 });
    expect(last()?.current).toBe('docs/a.txt');
  });

  it('writes at most every 250 ms, the totals at once', () => {
    const { reporter, written, last, advance } = setup();
    reporter.advanced(1, 100, 'a');
    advance(100);
    reporter.advanced(2, 200, 'b');
    expect(written).toHaveLength(1);
    reporter.measured(5, 500);
    expect(written).toHaveLength(2);
    advance(250);
    reporter.advanced(3, 300, 'c');
    expect(written).toHaveLength(3);
    expect(last()).toMatchObject({ files: 3, bytes: 300, current: 'c' });
  });

  it('takes counts, totals and the entry of a kind that knows its totals up front', () => {
    const { reporter, last, advance } = setup();
    reporter.report({ files: 0, filesTotal: 4, bytes: 0, bytesTotal: 4_000, current: null });
    advance(2_000);
    reporter.report({ files: 2, filesTotal: 4, bytes: 1_000, bytesTotal: 4_000, current: 'photos/b.jpg' });
    expect(last()).toEqual({
      files: 2,
      filesTotal: 4,
      bytes: 1_000,
      bytesTotal: 4_000,
      bytesPerSecond: 500,
      etaSeconds: 6,
      current: 'photos/b.jpg',
    });
  });

  it('keeps the last entry named when an engine does not tell one', () => {
    const { reporter, last, advance } = setup();
    reporter.advanced(1, 10, 'a.txt');
    advance(300);
    reporter.advanced(2, 20);
    expect(last()?.current).toBe('a.txt');
  });
});

describe('a progress write that would change nothing', () => {
  it('is skipped: the same totals told twice, counts that did not move', () => {
    const { reporter, written, advance } = setup();
    reporter.measured(3, 300);
    reporter.measured(3, 300);
    expect(written).toHaveLength(1);
    // Nothing moves (a job waiting on a slow disk): due, but the same progress as written.
    for (let i = 0; i < 5; i += 1) {
      advance(300);
      reporter.advanced(0, 0, null);
    }
    expect(written).toHaveLength(1);
    advance(300);
    reporter.advanced(1, 100, 'a');
    expect(written).toHaveLength(2);
    expect(written.at(-1)).toMatchObject({ files: 1, bytes: 100, current: 'a' });
  });

  it('still happens when only the rate changed (a stalled job shows it slowing)', () => {
    const { reporter, written, advance } = setup();
    reporter.measured(3, 3_000);
    advance(1_000);
    reporter.advanced(1, 1_000);
    const writes = written.length;
    advance(1_000);
    reporter.advanced(1, 1_000);
    expect(written.length).toBe(writes + 1);
    expect(written.at(-1)?.bytesPerSecond).toBeLessThan(written.at(-2)?.bytesPerSecond ?? 0);
  });
});
