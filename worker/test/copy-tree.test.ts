import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyTree, measureTree, removeTree, type CopyCounts } from '../src/copy/index.js';

const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');
const OLDER_TIME = new Date('1999-12-31T23:59:58.5Z');

let tmp: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-copy-'));
});

afterEach(async () => {
  await removeTree(tmp);
});

/**
 * A tree with every kind of entry a snapshot must handle. Returns the counts a copy
 * of it must report.
 */
async function buildTree(root: string, { fifo }: { fifo: boolean }): Promise<CopyCounts> {
  await fs.mkdir(root);
  await fs.writeFile(path.join(root, 'a.txt'), 'hello\n');
  await fs.writeFile(path.join(root, 'empty.bin'), '');
  await fs.writeFile(path.join(root, 'private.txt'), 'secret', { mode: 0o600 });
  await fs.writeFile(path.join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await fs.chmod(path.join(root, 'script.sh'), 0o755);
  await fs.writeFile(path.join(root, 'random.bin'), randomBytes(1024 * 1024));
  await fs.utimes(path.join(root, 'a.txt'), OLDER_TIME, OLD_TIME);

  const facade = path.join(root, 'façade');
  await fs.mkdir(path.join(facade, 'nested', 'deeper'), { recursive: true });
  await fs.writeFile(path.join(facade, '日本語.txt'), 'こんにちは');
  await fs.writeFile(path.join(facade, 'name with spaces.md'), '# spaced\n');
  await fs.writeFile(path.join(facade, 'nested', 'deeper', 'leaf.txt'), 'leaf');
  await fs.symlink('../a.txt', path.join(facade, 'link-up'));

  await fs.mkdir(path.join(root, 'empty-dir'));
  await fs.mkdir(path.join(root, 'empty-outer', 'empty-inner'), { recursive: true });

  const readonly = path.join(root, 'readonly');
  await fs.mkdir(readonly);
  await fs.writeFile(path.join(readonly, 'inside.txt'), 'locked in');
  await fs.chmod(readonly, 0o555);

  await fs.symlink('a.txt', path.join(root, 'link-sibling'));
  await fs.symlink('/etc/hostname', path.join(root, 'link-outside'));
  await fs.symlink('does-not-exist', path.join(root, 'link-dangling'));
  await fs.lutimes(path.join(root, 'link-sibling'), OLDER_TIME, OLD_TIME);
  if (fifo) execFileSync('mkfifo', [path.join(root, 'pipe')]);

  // Directory times last: creating their entries moved them.
  await fs.utimes(path.join(facade, 'nested'), OLDER_TIME, OLD_TIME);
  await fs.utimes(readonly, OLDER_TIME, OLD_TIME);
  await fs.utimes(root, OLDER_TIME, OLD_TIME);
  return {
    files: 9,
    bytes: 6 + 0 + 6 + 18 + 1024 * 1024 + 15 + 9 + 4 + 9,
    dirs: 7,
    links: 4,
    skipped: fifo ? 1 : 0,
  };
}

/** Asserts `target` mirrors `source`: kinds, contents, link targets, modes, mtimes. FIFOs must be absent. */
async function expectSameTree(source: string, target: string): Promise<void> {
  await expectSameEntry(source, target);
  const names = (await fs.readdir(source)).sort();
  const copied = new Set(await fs.readdir(target));
  for (const name of names) {
    const from = path.join(source, name);
    const to = path.join(target, name);
    const stats = await fs.lstat(from);
    if (stats.isFIFO()) {
      expect(copied.has(name), `${to} should be skipped`).toBe(false);
      continue;
    }
    copied.delete(name);
    if (stats.isDirectory()) await expectSameTree(from, to);
    else await expectSameEntry(from, to);
  }
  expect([...copied], `extra entries in ${target}`).toEqual([]);
}

async function expectSameEntry(from: string, to: string): Promise<void> {
  const [a, b] = await Promise.all([fs.lstat(from), fs.lstat(to)]);
  expect(kindOf(b), to).toBe(kindOf(a));
  expect((b.mode & 0o7777).toString(8), `mode of ${to}`).toBe((a.mode & 0o7777).toString(8));
  expect(Math.abs(b.mtimeMs - a.mtimeMs), `mtime of ${to}`).toBeLessThan(0.001);
  if (a.isFile()) expect((await fs.readFile(to)).equals(await fs.readFile(from)), `contents of ${to}`).toBe(true);
  if (a.isSymbolicLink()) expect(await fs.readlink(to)).toBe(await fs.readlink(from));
}

function kindOf(stats: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): string {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  return stats.isSymbolicLink() ? 'link' : 'other';
}

async function countFiles(dir: string): Promise<number> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).length;
}

describe('copyTree', () => {
  it('copies a folder exactly: contents, modes, times, links as links, empty folders; FIFOs skipped', async () => {
    const source = path.join(tmp, 'source');
    const target = path.join(tmp, 'target');
    const expected = await buildTree(source, { fifo: true });

    const counts = await copyTree(source, target);

    expect(counts).toEqual(expected);
    await expectSameTree(source, target);
    // diff sees everything but the FIFO as identical.
    const diff = spawnSync('diff', ['-r', '--no-dereference', source, target], { encoding: 'utf8' });
    expect(diff.stdout).toBe(`Only in ${source}: pipe\n`);
    expect(diff.status).toBe(1);
  });

  it('keeps links pointing outside the source as links, never following them', async () => {
    const source = path.join(tmp, 'source');
    const target = path.join(tmp, 'target');
    await buildTree(source, { fifo: false });

    await copyTree(source, target);

    const outside = await fs.lstat(path.join(target, 'link-outside'));
    expect(outside.isSymbolicLink()).toBe(true);
    expect(await fs.readlink(path.join(target, 'link-outside'))).toBe('/etc/hostname');
    expect((await fs.lstat(path.join(target, 'link-dangling'))).isSymbolicLink()).toBe(true);
    expect(spawnSync('diff', ['-r', '--no-dereference', source, target]).status).toBe(0);
  });

  it('produces the same tree with one file at a time', async () => {
    const source = path.join(tmp, 'source');
    const target = path.join(tmp, 'target');
    const expected = await buildTree(source, { fifo: true });

    const counts = await copyTree(source, target, { concurrency: 1 });

    expect(counts).toEqual(expected);
    await expectSameTree(source, target);
  });

  it('copies a file source into the target under its own name', async () => {
    const file = path.join(tmp, 'report.csv');
    await fs.writeFile(file, 'a,b\n1,2\n', { mode: 0o640 });
    await fs.chmod(file, 0o640);
    await fs.utimes(file, OLDER_TIME, OLD_TIME);
    const target = path.join(tmp, 'target');

    const counts = await copyTree(file, target);

    expect(counts).toEqual({ files: 1, bytes: 8, dirs: 0, links: 0, skipped: 0 });
    expect(await fs.readdir(target)).toEqual(['report.csv']);
    await expectSameEntry(file, path.join(target, 'report.csv'));
  });

  it('reports progress after every entry, ending at the final counts', async () => {
    const source = path.join(tmp, 'source');
    const expected = await buildTree(source, { fifo: true });
    const reports: CopyCounts[] = [];

    await copyTree(source, path.join(tmp, 'target'), { onProgress: (counts) => reports.push({ ...counts }) });

    expect(reports).toHaveLength(expected.files + expected.dirs + expected.links + expected.skipped);
    expect(reports.at(-1)).toEqual(expected);
  });

  it('stops when aborted, after the copies in flight settle, with the abort reason', async () => {
    const source = path.join(tmp, 'many');
    await fs.mkdir(source);
    for (let dir = 0; dir < 20; dir += 1) {
      const sub = path.join(source, `d${dir}`);
      await fs.mkdir(sub);
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => fs.writeFile(path.join(sub, `f${i}.txt`), `${dir}/${i}`)),
      );
    }
    const target = path.join(tmp, 'target');
    const controller = new AbortController();
    const reason = new Error('cancelled by test');

    const copying = copyTree(source, target, { signal: controller.signal, onProgress: () => controller.abort(reason) });

    await expect(copying).rejects.toBe(reason);
    const copied = await countFiles(target);
    // At most the copies already in flight (the default concurrency) completed.
    expect(copied).toBeLessThanOrEqual(16);
    // Nothing still running: the count no longer moves.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await countFiles(target)).toBe(copied);
  });

  it('does not start when the signal is already aborted', async () => {
    const source = path.join(tmp, 'source');
    await buildTree(source, { fifo: false });
    const reason = new Error('too late');
    const target = path.join(tmp, 'target');

    await expect(copyTree(source, target, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(fs.access(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects with the file system error of a missing source or an existing target', async () => {
    await expect(copyTree(path.join(tmp, 'nope'), path.join(tmp, 'target'))).rejects.toMatchObject({ code: 'ENOENT' });
    await fs.mkdir(path.join(tmp, 'source'));
    await fs.mkdir(path.join(tmp, 'exists'));
    await expect(copyTree(path.join(tmp, 'source'), path.join(tmp, 'exists'))).rejects.toMatchObject({
      code: 'EEXIST',
    });
  });

  it('rejects with the first error after copies in flight settle', async () => {
    const source = path.join(tmp, 'source');
    await buildTree(source, { fifo: false });
    const failure = new Error('progress sink broke');

    await expect(
      copyTree(source, path.join(tmp, 'target'), {
        onProgress: () => {
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
  });
});

describe('measureTree', () => {
  it('counts regular files and their bytes as copyTree copies them', async () => {
    const source = path.join(tmp, 'source');
    const expected = await buildTree(source, { fifo: true });

    expect(await measureTree(source)).toEqual({ files: expected.files, bytes: expected.bytes });
  });

  it('measures a file source as one file', async () => {
    const file = path.join(tmp, 'one.txt');
    await fs.writeFile(file, '12345');

    expect(await measureTree(file)).toEqual({ files: 1, bytes: 5 });
  });

  it('rejects with the abort reason', async () => {
    const source = path.join(tmp, 'source');
    await buildTree(source, { fifo: false });
    const reason = new Error('stop');

    await expect(measureTree(source, AbortSignal.abort(reason))).rejects.toBe(reason);
  });
});
