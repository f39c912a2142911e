import { describe, expect, it } from 'vitest';
import type { LogEntry } from '@coffer/shared';
import { batchAppends } from '../src/batched-append.js';

function entry(n: number): LogEntry {
  return { action: 'backup', parameter: `/srv/${n}`, status: 'queued', jobId: `job-${n}`, attempt: 1, worker: 'test' };
}

/** A stand-in INSERT that records each call's rows and, like a round trip, answers on a later turn of the event loop. */
function recordingAppend(fail?: (rows: readonly LogEntry[]) => boolean) {
  const calls: string[][] = [];
  const append = async (entries: LogEntry | readonly LogEntry[]) => {
    const rows = Array.isArray(entries) ? (entries as readonly LogEntry[]) : [entries as LogEntry];
    calls.push(rows.map((row) => row.jobId ?? ''));
    await new Promise((resolve) => setImmediate(resolve));
    if (fail?.(rows)) throw new Error('insert failed');
  };
  return { calls, append };
}

describe('group commit of log rows', () => {
  it('writes concurrent appends in few INSERTs, every row once, in call order', async () => {
    const { calls, append } = recordingAppend();
    const batched = batchAppends(append);
    await Promise.all(Array.from({ length: 100 }, (_, n) => batched(entry(n))));
    expect(calls.length).toBeLessThanOrEqual(3);
    expect(calls.flat()).toEqual(Array.from({ length: 100 }, (_, n) => `job-${n}`));
  });

  it('writes a lone append at once, on its own', async () => {
    const { calls, append } = recordingAppend();
    await batchAppends(append)([entry(1), entry(2)]);
    expect(calls).toEqual([['job-1', 'job-2']]);
  });

  it('fails the calls whose INSERT failed, and only those', async () => {
    const { append } = recordingAppend((rows) => rows.some((row) => row.jobId === 'job-0'));
    const batched = batchAppends(append);
    const first = batched(entry(0));
    await expect(first).rejects.toThrow('insert failed');
    await expect(batched(entry(1))).resolves.toBeUndefined();
  });
});
