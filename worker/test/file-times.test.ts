import { promises as fs, utimesSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sameMtime } from '../src/copy/file-times.js';

let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-file-times-'));
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

it("takes a copy's mtime, set through Node, for its original's at any nanosecond of today's dates", async () => {
  const file = path.join(tmp, 'file');
  await fs.writeFile(file, '');
  const missed: number[] = [];
  // 20,000 times spread over a few hours of 2026, each with its own nanoseconds; a copy gets
  // its mtime the way the copy engine sets it (a double of seconds).
  for (let i = 0; i < 20_000; i += 1) {
    const original = 1_764_000_000_000 + i * 611.000_013_7 + (i % 1000) * 0.000_001;
    utimesSync(file, original / 1000, original / 1000);
    const copied = statSync(file).mtimeMs;
    if (!sameMtime(copied, original)) missed.push(original);
  }
  expect(missed).toEqual([]);
});

it('tells apart mtimes a few microseconds apart', () => {
  expect(sameMtime(1_764_000_000_000.005, 1_764_000_000_000)).toBe(false);
  expect(sameMtime(1_764_000_000_000, 1_764_000_000_001)).toBe(false);
});
