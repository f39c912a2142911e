import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSnapshot, removeTree, type SnapshotRequest, type SnapshotResult } from '../src/copy/index.js';

const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');

let tmp: string;
let source: string;
let backupRoot: string;
let folder: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-incremental-'));
  source = path.join(tmp, 'source');
  backupRoot = path.join(tmp, 'backups');
  folder = path.join(backupRoot, 'alpha');
  await fs.mkdir(path.join(source, 'docs', 'empty'), { recursive: true });
  await fs.writeFile(path.join(source, 'docs', 'plan.md'), '# plan\n');
  await fs.writeFile(path.join(source, 'notes.txt'), 'remember\n');
  await fs.writeFile(path.join(source, 'tool.sh'), '#!/bin/sh\n', { mode: 0o755 });
  await fs.chmod(path.join(source, 'tool.sh'), 0o755);
  await fs.symlink('docs/plan.md', path.join(source, 'plan-link'));
  await fs.mkdir(path.join(source, 'frozen'));
  await fs.writeFile(path.join(source, 'frozen', 'ice.txt'), 'cold');
  await fs.chmod(path.join(source, 'frozen'), 0o555);
});

afterEach(async () => {
  await removeTree(tmp);
});

let jobs = 0;

/** Each job runs on the worker's own thread when small (the default), or always on copy threads. */
const MODES = [
  ['inline', undefined],
  ['on threads', false],
] as const;
let inline: SnapshotRequest['inline'];

/** One snapshot job of `source` into `alpha`, each a second after the previous one. */
async function snapshot(overrides: Partial<SnapshotRequest> = {}): Promise<SnapshotResult> {
  jobs += 1;
  return createSnapshot({
    source,
    backupRoot,
    destination: 'alpha',
    jobId: `job-${jobs}`,
    startedAt: new Date(Date.UTC(2026, 10, 27, 19, 0, jobs)),
    inline,
    ...overrides,
  });
}

function expectSameContents(a: string, b: string): void {
  const diff = spawnSync('diff', ['-r', '--no-dereference', a, b], { encoding: 'utf8' });
  expect(diff.stdout).toBe('');
  expect(diff.status).toBe(0);
}

/** Files of `a` and `b` at the same relative path that are one inode. */
async function sharedFiles(a: string, b: string): Promise<string[]> {
  const shared: string[] = [];
  for (const entry of await fs.readdir(a, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const relative = path.relative(a, path.join(entry.parentPath, entry.name));
    const other = await fs.lstat(path.join(b, relative)).catch(() => null);
    if (other?.ino === (await fs.lstat(path.join(a, relative))).ino) shared.push(relative);
  }
  return shared.sort();
}

describe.each(MODES)('incremental snapshots (%s)', (_mode, limits) => {
  beforeEach(() => {
    inline = limits;
  });
  afterEach(() => {
    inline = undefined;
  });

  it('hard-links every file of an unchanged tree from the previous snapshot, and is exact', async () => {
    const first = await snapshot();
    const second = await snapshot();

    expect(first).toMatchObject({ files: 4, filesLinked: 0, bytesLinked: 0 });
    expect(second).toMatchObject({ files: 4, bytes: first.bytes, filesLinked: 4, bytesLinked: first.bytes });
    expectSameContents(source, second.path);
    expect(await sharedFiles(first.path, second.path)).toEqual([
      'docs/plan.md',
      'frozen/ice.txt',
      'notes.txt',
      'tool.sh',
    ]);
    // Folders and links are the snapshot's own, with the source's modes.
    expect((await fs.stat(path.join(second.path, 'frozen'))).mode & 0o777).toBe(0o555);
    expect((await fs.lstat(path.join(second.path, 'plan-link'))).isSymbolicLink()).toBe(true);
  });

  it('copies a changed file instead of linking it; the older snapshot keeps the old content', async () => {
    const first = await snapshot();
    await fs.writeFile(path.join(source, 'notes.txt'), 'remember the milk\n');

    const second = await snapshot();

    expect(second).toMatchObject({ files: 4, filesLinked: 3 });
    expect(second.bytesLinked).toBe(second.bytes - 'remember the milk\n'.length);
    expect(await sharedFiles(first.path, second.path)).toEqual(['docs/plan.md', 'frozen/ice.txt', 'tool.sh']);
    expect(await fs.readFile(path.join(first.path, 'notes.txt'), 'utf8')).toBe('remember\n');
    expectSameContents(source, second.path);
  });

  it('copies a file whose size is the same but whose mtime or mode changed', async () => {
    const first = await snapshot();
    // Same length, different content, mtime set back: only the mtime tells.
    await fs.writeFile(path.join(source, 'docs', 'plan.md'), '# PLAN\n');
    await fs.utimes(path.join(source, 'docs', 'plan.md'), OLD_TIME, OLD_TIME);
    await fs.chmod(path.join(source, 'tool.sh'), 0o700);

    const second = await snapshot();

    expect(await sharedFiles(first.path, second.path)).toEqual(['frozen/ice.txt', 'notes.txt']);
    expect(await fs.readFile(path.join(second.path, 'docs', 'plan.md'), 'utf8')).toBe('# PLAN\n');
    expect((await fs.stat(path.join(first.path, 'tool.sh'))).mode & 0o777).toBe(0o755);
    expect((await fs.stat(path.join(second.path, 'tool.sh'))).mode & 0o777).toBe(0o700);
    expectSameContents(source, second.path);
  });

  it('leaves a newer snapshot whole when an older one is deleted', async () => {
    const first = await snapshot();
    const second = await snapshot();

    await removeTree(first.path);

    expectSameContents(source, second.path);
    expect(await fs.readFile(path.join(second.path, 'notes.txt'), 'utf8')).toBe('remember\n');
  });

  it('links from the newest complete snapshot, never from a partial one', async () => {
    await snapshot();
    const newest = await snapshot();
    // A copy still in progress (or abandoned) with the very same files.
    const partial = path.join(folder, '.partial-job-other');
    await fs.cp(newest.path, partial, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });

    const third = await snapshot();

    expect(third.filesLinked).toBe(4);
    expect(await sharedFiles(newest.path, third.path)).toHaveLength(4);
    expect(await sharedFiles(partial, third.path)).toEqual([]);
  });

  it('copies everything when incremental is false', async () => {
    const first = await snapshot();

    const second = await snapshot({ incremental: false });

    expect(second).toMatchObject({ files: 4, filesLinked: 0, bytesLinked: 0 });
    expect(await sharedFiles(first.path, second.path)).toEqual([]);
    expectSameContents(source, second.path);
  });

  it('takes as base only a snapshot of the same source, so another source cannot plant content', async () => {
    // Someone else's source holds a file of the same name, size and mtime but other content.
    const planted = path.join(tmp, 'planted');
    await fs.mkdir(planted);
    await fs.writeFile(path.join(planted, 'notes.txt'), 'REMEMBER\n');
    const { mtime } = await fs.stat(path.join(source, 'notes.txt'));
    await fs.utimes(path.join(planted, 'notes.txt'), mtime, mtime);
    await snapshot({ source: planted });

    const mine = await snapshot();

    expect(mine.filesLinked).toBe(0);
    expect(await fs.readFile(path.join(mine.path, 'notes.txt'), 'utf8')).toBe('remember\n');
    expectSameContents(source, mine.path);
  });

  it('takes no base from a snapshot without a record of its source', async () => {
    const first = await snapshot();
    await fs.rm(path.join(folder, '.coffer'), { recursive: true });

    const second = await snapshot();

    expect(second.filesLinked).toBe(0);
    expect(await sharedFiles(first.path, second.path)).toEqual([]);
  });

  it('links a file whose mtime has nanoseconds, which the copy keeps only to the microsecond', async () => {
    const notes = path.join(source, 'notes.txt');
    // Node cannot set nanoseconds; touch can, as any program writing the file may.
    expect(spawnSync('touch', ['-m', '-d', '@1700000000.123456789', notes]).status).toBe(0);
    const first = await snapshot();

    const second = await snapshot();

    expect(second.filesLinked).toBe(4);
    expect(await sharedFiles(first.path, second.path)).toContain('notes.txt');
  });

  it('links a file source that did not change', async () => {
    const file = path.join(source, 'notes.txt');
    const first = await snapshot({ source: file });

    const second = await snapshot({ source: file });

    expect(second).toMatchObject({ files: 1, filesLinked: 1 });
    expect(await sharedFiles(first.path, second.path)).toEqual(['notes.txt']);
  });
});
