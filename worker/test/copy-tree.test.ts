import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CopyStopped, copyTreeSync } from '../src/copy/copy-tree-sync.js';
import { copyTree, measureTree, removeTree, type CopyCounts, type CopyReport } from '../src/copy/index.js';

const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');
const OLDER_TIME = new Date('1999-12-31T23:59:58.5Z');
const NO_WARNINGS = { count: 0, items: [] };
const isRoot = process.getuid?.() === 0;
// Tests over 10,000-file trees take seconds, many more on a loaded machine: a guard against
// a hang, not a speed bound (speed is `pnpm bench`'s business).
const BIG_TREE_TIMEOUT_MS = 120_000;

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
    filesLinked: 0,
    bytesLinked: 0,
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
  expect(Math.abs(b.mtimeMs - a.mtimeMs), `mtime of ${to}`).toBeLessThan(0.002);
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

/** `dirs` folders of `perDir` small files each (written synchronously: several times faster). */
async function bulkTree(root: string, dirs: number, perDir: number): Promise<void> {
  for (let dir = 0; dir < dirs; dir += 1) {
    const sub = path.join(root, `d${dir}`);
    await fs.mkdir(sub, { recursive: true });
    for (let i = 0; i < perDir; i += 1) writeFileSync(path.join(sub, `f${i}.txt`), `${dir}/${i}`);
  }
}

function report(counts: CopyCounts, warnings: CopyReport['warnings'] = NO_WARNINGS): CopyReport {
  return { ...counts, warnings };
}

describe('copyTree', () => {
  it('copies a folder exactly: contents, modes, times, links as links, empty folders; FIFOs skipped', async () => {
    const source = path.join(tmp, 'source');
    const target = path.join(tmp, 'target');
    const expected = await buildTree(source, { fifo: true });

    const counts = await copyTree(source, target);

    expect(counts).toEqual(report(expected));
    await expectSameTree(source, target);
    // diff sees everything but the FIFO as identical.
    const diff = spawnSync('diff', ['-r', '--no-dereference', source, target], { encoding: 'utf8' });
    expect(diff.stdout).toBe(`Only in ${source}: pipe\n`);
    expect(diff.status).toBe(1);
  });

  it('copies a wide, deep tree exactly while folders are shared among threads', async () => {
    const source = path.join(tmp, 'wide');
    const dirs: string[] = [];
    for (let top = 0; top < 12; top += 1) {
      for (const inner of ['x', 'y/z']) {
        const dir = path.join(source, `t${top}`, inner);
        await fs.mkdir(dir, { recursive: true });
        for (let i = 0; i < 30; i += 1) writeFileSync(path.join(dir, `f${i}`), `${top}/${inner}/${i}`);
        dirs.push(dir, path.dirname(dir));
      }
      dirs.push(path.join(source, `t${top}`));
    }
    // Deepest first, so setting a folder's times does not move its parent's.
    for (const dir of [...new Set(dirs)].sort((a, b) => b.length - a.length)) {
      if (dir.endsWith('z')) await fs.chmod(dir, 0o555);
      await fs.utimes(dir, OLDER_TIME, OLD_TIME);
    }
    await fs.utimes(source, OLDER_TIME, OLD_TIME);
    const target = path.join(tmp, 'target');

    const counts = await copyTree(source, target);

    expect(counts).toMatchObject({ files: 12 * 2 * 30, dirs: 12 * 4, warnings: NO_WARNINGS });
    await expectSameTree(source, target);
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

  it('produces the same tree when its synchronous engine is called directly, off the thread', async () => {
    const source = path.join(tmp, 'source');
    const target = path.join(tmp, 'target');
    const expected = await buildTree(source, { fifo: true });

    const counts = copyTreeSync(source, target);

    expect(counts).toEqual(report(expected));
    await expectSameTree(source, target);
  });

  it('copies a file source into the target under its own name', async () => {
    const file = path.join(tmp, 'report.csv');
    await fs.writeFile(file, 'a,b\n1,2\n', { mode: 0o640 });
    await fs.chmod(file, 0o640);
    await fs.utimes(file, OLDER_TIME, OLD_TIME);
    const target = path.join(tmp, 'target');

    const counts = await copyTree(file, target);

    expect(counts).toEqual(
      report({ files: 1, bytes: 8, filesLinked: 0, bytesLinked: 0, dirs: 0, links: 0, skipped: 0 }),
    );
    expect(await fs.readdir(target)).toEqual(['report.csv']);
    await expectSameEntry(file, path.join(target, 'report.csv'));
  });

  it(
    'reports progress while copying, never backwards, ending with the final counts',
    { timeout: BIG_TREE_TIMEOUT_MS },
    async () => {
      const source = path.join(tmp, 'source');
      await bulkTree(source, 20, 500);
      const reports: CopyCounts[] = [];

      const counts = await copyTree(source, path.join(tmp, 'target'), {
        onProgress: (progress) => reports.push({ ...progress }),
      });

      expect(counts.files).toBe(10_000);
      const { warnings, ...final } = counts;
      expect(warnings).toEqual(NO_WARNINGS);
      expect(reports.at(-1)).toEqual(final);
      // Never backwards.
      for (let i = 1; i < reports.length; i += 1) {
        expect(reports[i]?.files).toBeGreaterThanOrEqual(reports[i - 1]?.files ?? 0);
      }
    },
  );

  it('names the entry being copied, relative to the source, also inside a big file; none once done', async () => {
    const source = path.join(tmp, 'source');
    await fs.mkdir(path.join(source, 'media'), { recursive: true });
    await fs.writeFile(path.join(source, 'small.txt'), 'small\n');
    // Written (not a hole), so copying it takes longer than a progress interval.
    const handle = await fs.open(path.join(source, 'media', 'big.bin'), 'w');
    const chunk = Buffer.alloc(16 * 1024 * 1024, 9);
    for (let written = 0; written < 256 * 1024 * 1024; written += chunk.length) await handle.write(chunk);
    await handle.close();
    const currents: Array<string | null> = [];

    await copyTree(source, path.join(tmp, 'target'), { onProgress: (_counts, current) => currents.push(current) });

    const named = currents.filter((current) => current !== null);
    expect(named).toContain('media/big.bin');
    for (const current of named) expect(['media', 'media/big.bin', 'small.txt']).toContain(current);
    expect(currents.at(-1)).toBeNull();
  });

  it('stops before its next entry once told to stop, and throws CopyStopped', async () => {
    const source = path.join(tmp, 'many');
    await bulkTree(source, 4, 100);
    const target = path.join(tmp, 'target');
    let stop = false;
    let filesAtStop = -1;

    // The engine each copy thread runs: the promise behind "a cancelled copy stops within a
    // second" is that no entry starts once the stop is asked, whatever the machine's speed.
    const copying = () =>
      copyTreeSync(source, target, {
        shouldStop: () => stop,
        onEntry: (counts) => {
          if (stop || counts.files < 50) return;
          stop = true;
          filesAtStop = counts.files;
        },
      });

    expect(copying).toThrow(CopyStopped);
    expect(filesAtStop).toBe(50);
    expect(await countFiles(target)).toBe(filesAtStop);
  });

  it(
    'stops short of the whole tree once aborted, with the abort reason, and nothing runs on after',
    { timeout: BIG_TREE_TIMEOUT_MS },
    async () => {
      const source = path.join(tmp, 'many');
      await bulkTree(source, 20, 500);
      const target = path.join(tmp, 'target');
      const controller = new AbortController();
      const reason = new Error('cancelled by test');
      const started = performance.now();
      let abortedAt = 0;

      const copying = copyTree(source, target, {
        signal: controller.signal,
        onProgress: () => {
          abortedAt = performance.now();
          controller.abort(reason);
        },
      });

      await expect(copying).rejects.toBe(reason);
      const settledAt = performance.now();
      const copied = await countFiles(target);
      expect(copied).toBeLessThan(10_000);
      // Nothing still running: the count does not move while the whole tree is walked again
      // on a copy thread, work that would let a copy left running carry on (a window measured
      // in work done, so as long on a loaded machine as the work it guards against).
      expect(await measureTree(source)).toMatchObject({ files: 10_000 });
      expect(await countFiles(target)).toBe(copied);
      console.log(
        `[copy-tree] aborted after ${Math.round(abortedAt - started)} ms with ${copied} of 10000 files copied; ` +
          `rejected ${Math.round(settledAt - abortedAt)} ms after the abort`,
      );
    },
  );

  it('keeps the event loop free while it copies', { timeout: BIG_TREE_TIMEOUT_MS }, async () => {
    const source = path.join(tmp, 'many');
    await bulkTree(source, 20, 500);
    // The queue renews its lock from timers: a timer must keep firing while the copy runs.
    // A copy holding the event loop lets it fire once at most, however long the copy takes;
    // a loaded machine only makes the copy, and so the count, longer.
    let ticks = 0;
    let longestGap = 0;
    let last = performance.now();
    const heartbeat = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
      ticks += 1;
    }, 1);
    const started = performance.now();

    try {
      await copyTree(source, path.join(tmp, 'target'));
    } finally {
      clearInterval(heartbeat);
    }

    expect(ticks).toBeGreaterThanOrEqual(10);
    console.log(
      `[copy-tree] 10000 files in ${Math.round(performance.now() - started)} ms: ` +
        `${ticks} timer ticks meanwhile, longest gap ${Math.round(longestGap)} ms`,
    );
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

describe('copyTree: entries that vanish or cannot be read', () => {
  it('leaves out files that vanish during the copy and lists them, capped, with their count', async () => {
    const source = path.join(tmp, 'source');
    await bulkTree(source, 1, 150);
    const bulk = path.join(source, 'd0');
    const target = path.join(tmp, 'target');
    let deleted = false;

    // The engine called directly, so the deletion lands between two entries of one listing.
    const result = copyTreeSync(source, target, {
      onEntry: () => {
        if (deleted) return;
        deleted = true;
        for (let i = 0; i < 150; i += 1) rmSync(path.join(bulk, `f${i}.txt`), { force: true });
      },
    });

    const copiedFromBulk = (await fs.readdir(path.join(target, 'd0'))).length;
    expect(result.warnings.count + copiedFromBulk).toBe(150);
    expect(result.warnings.count).toBeGreaterThan(100);
    expect(result.warnings.items).toHaveLength(100);
    for (const warning of result.warnings.items) {
      expect(warning).toEqual({ path: expect.stringMatching(/^d0\/f\d+\.txt$/) as string, code: 'ENOENT' });
    }
    expect(result.files).toBe(await countFiles(target));
  });

  it('leaves out a folder that vanished before it was listed, creating nothing for it', async () => {
    const source = path.join(tmp, 'source');
    await fs.mkdir(path.join(source, 'a'), { recursive: true });
    await fs.mkdir(path.join(source, 'b'), { recursive: true });
    await fs.writeFile(path.join(source, 'a', 'x.txt'), 'x');
    await fs.writeFile(path.join(source, 'b', 'y.txt'), 'y');
    const target = path.join(tmp, 'target');
    let removed = '';

    const result = copyTreeSync(source, target, {
      onEntry: () => {
        if (removed) return;
        // The first entry done is a file inside one folder: remove the other folder.
        removed = existsSync(path.join(target, 'a')) ? 'b' : 'a';
        rmSync(path.join(source, removed), { recursive: true });
      },
    });

    expect(result.warnings).toEqual({ count: 1, items: [{ path: removed, code: 'ENOENT' }] });
    expect(existsSync(path.join(target, removed))).toBe(false);
    expect(result).toMatchObject({ files: 1, dirs: 1 });
  });

  it('reports warnings through the thread like any result', async () => {
    const source = path.join(tmp, 'source');
    await buildTree(source, { fifo: false });

    const result = await copyTree(source, path.join(tmp, 'target'));

    expect(result.warnings).toEqual(NO_WARNINGS);
  });

  it.skipIf(isRoot)('leaves out a file it may not read, listed as EACCES', async () => {
    const source = path.join(tmp, 'source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'open.txt'), 'open');
    await fs.writeFile(path.join(source, 'closed.txt'), 'closed', { mode: 0o000 });

    const result = await copyTree(source, path.join(tmp, 'target'));

    expect(result.warnings).toEqual({ count: 1, items: [{ path: 'closed.txt', code: 'EACCES' }] });
    expect(await fs.readdir(path.join(tmp, 'target'))).toEqual(['open.txt']);
  });
});

describe('copyTree with a previous copy', () => {
  async function inode(file: string): Promise<number> {
    return (await fs.stat(file)).ino;
  }

  it('hard-links unchanged files from the previous copy and copies the others, exactly', async () => {
    const source = path.join(tmp, 'source');
    const expected = await buildTree(source, { fifo: false });
    const first = path.join(tmp, 'first');
    await copyTree(source, first);
    // Changed content and size, changed mode, changed mtime: three files to copy again.
    await fs.writeFile(path.join(source, 'a.txt'), 'hello again\n');
    await fs.chmod(path.join(source, 'script.sh'), 0o700);
    await fs.utimes(path.join(source, 'private.txt'), OLDER_TIME, new Date());
    await fs.utimes(source, OLDER_TIME, OLD_TIME);
    const second = path.join(tmp, 'second');

    const result = await copyTree(source, second, { previous: first });

    const changedBytes = 'hello again\n'.length - 6;
    expect(result).toMatchObject({ files: expected.files, bytes: expected.bytes + changedBytes, filesLinked: 6 });
    expect(result.bytesLinked).toBe(expected.bytes - 6 - 6 - 18);
    await expectSameTree(source, second);
    expect(await inode(path.join(second, 'random.bin'))).toBe(await inode(path.join(first, 'random.bin')));
    for (const changed of ['a.txt', 'script.sh', 'private.txt']) {
      expect(await inode(path.join(second, changed))).not.toBe(await inode(path.join(first, changed)));
    }
    // The previous copy still holds what it held.
    expect(await fs.readFile(path.join(first, 'a.txt'), 'utf8')).toBe('hello\n');
    expect((await fs.stat(path.join(first, 'script.sh'))).mode & 0o777).toBe(0o755);
  });

  it('copies what the previous copy lacks, or holds as another kind', async () => {
    const source = path.join(tmp, 'source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'new.txt'), 'new');
    await fs.writeFile(path.join(source, 'was-a-folder'), 'now a file');
    const previous = path.join(tmp, 'previous');
    await fs.mkdir(path.join(previous, 'was-a-folder'), { recursive: true });

    const result = await copyTree(source, path.join(tmp, 'target'), { previous });

    expect(result).toMatchObject({ files: 2, filesLinked: 0 });
    await expectSameTree(source, path.join(tmp, 'target'));
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
