import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  promises as fs,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copySubtreeSync, copyTreeSync, type Subtree } from '../src/copy/copy-tree-sync.js';
import { copyTree, measureTree, removeTree } from '../src/copy/index.js';
import { PathTooLongError } from '../src/copy/path-too-long.js';

const OUTSIDE = 'OUTSIDE-SECRET';
const REPO_ROOT = new URL('../..', import.meta.url).pathname;
const COPY_MODULE = new URL('../src/copy/index.ts', import.meta.url).pathname;
const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');

let tmp: string;
let source: string;
let target: string;
let outside: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-safety-'));
  source = path.join(tmp, 'source');
  target = path.join(tmp, 'target');
  // What a link swapped into the source points at: none of it may reach a copy.
  outside = path.join(tmp, 'outside');
  mkdirSync(path.join(outside, 'inner'), { recursive: true });
  for (const name of ['f1', 'f2', 'inner/f3']) writeFileSync(path.join(outside, name), OUTSIDE);
});

afterEach(async () => {
  await removeTree(tmp);
});

/** `folder` with the same layout as the outside folder, holding `text`. */
function fill(folder: string, text: string): void {
  mkdirSync(path.join(folder, 'inner'), { recursive: true });
  for (const name of ['f1', 'f2', 'inner/f3']) writeFileSync(path.join(folder, name), text);
}

/** Replaces `entry` by a link to `to`, as `mv entry entry.real; ln -s to entry` would. */
function swapForLink(entry: string, to: string): void {
  renameSync(entry, `${entry}.real`);
  symlinkSync(to, entry);
}

/** Every regular file's contents below `root`, never through a link. */
function contentsBelow(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => readFileSync(path.join(entry.parentPath, entry.name), 'utf8'));
}

describe('copying while the source changes', () => {
  it('never copies through folders swapped for links: the open one is copied, the other left out', () => {
    fill(path.join(source, 'd1'), 'inside');
    fill(path.join(source, 'd2'), 'inside');
    let swapped: { opened: string; unopened: string } | undefined;

    const result = copyTreeSync(source, target, {
      onEntry: () => {
        if (swapped) return;
        // After the first file: the folder it was in is open, the other one not yet.
        swapped = existsSync(path.join(target, 'd1'))
          ? { opened: 'd1', unopened: 'd2' }
          : { opened: 'd2', unopened: 'd1' };
        swapForLink(path.join(source, swapped.opened), outside);
        swapForLink(path.join(source, swapped.unopened), outside);
      },
    });

    expect(contentsBelow(target)).toEqual(['inside', 'inside', 'inside']);
    expect(result.warnings).toEqual({ count: 1, items: [{ path: swapped?.unopened, code: 'ECHANGED' }] });
    expect(readdirSync(target)).toEqual([swapped?.opened]);
    expect(result).toMatchObject({ files: 3, dirs: 2 });
  });

  it('leaves out a file swapped for a link after its folder was listed, with a warning', () => {
    mkdirSync(source);
    writeFileSync(path.join(source, 'a'), 'inside');
    writeFileSync(path.join(source, 'b'), 'inside');
    let other = '';

    const result = copyTreeSync(source, target, {
      onEntry: () => {
        if (other) return;
        other = existsSync(path.join(target, 'a')) ? 'b' : 'a';
        rmSync(path.join(source, other));
        symlinkSync(path.join(outside, 'f1'), path.join(source, other));
      },
    });

    expect(result.warnings).toEqual({ count: 1, items: [{ path: other, code: 'ECHANGED' }] });
    expect(contentsBelow(target)).toEqual(['inside']);
    expect(readdirSync(target)).toHaveLength(1);
  });

  it('hands a folder to another thread as an open folder, so a link swapped in meanwhile is not followed', () => {
    fill(path.join(source, 'sub'), 'inside');
    const handed: Subtree[] = [];
    copyTreeSync(source, target, { delegation: { reserve: () => true, hand: (subtree) => handed.push(subtree) } });
    swapForLink(path.join(source, 'sub'), outside);
    expect(handed).toHaveLength(1);
    const [subtree] = handed;
    if (!subtree) return;

    const result = copySubtreeSync(source, target, subtree);

    expect(contentsBelow(target)).toEqual(['inside', 'inside', 'inside']);
    expect(result).toMatchObject({ files: 3, dirs: 2, warnings: { count: 0, items: [] } });
  });

  it('refuses a source reached through a link, as when a component was swapped after it was checked', async () => {
    fill(path.join(tmp, 'real', 'data'), 'inside');
    symlinkSync(path.join(tmp, 'real'), path.join(tmp, 'via'));
    const swappedSource = path.join(tmp, 'via', 'data');

    expect(() => copyTreeSync(swappedSource, target)).toThrow(expect.objectContaining({ code: 'ELOOP' }) as Error);
    expect(existsSync(target)).toBe(false);
    await expect(measureTree(swappedSource)).rejects.toMatchObject({ code: 'ELOOP', path: swappedSource });
  });
});

describe('open folders', () => {
  const openFiles = () => readdirSync('/proc/self/fd').length;

  it('closes every folder it opened and handed between threads, whether done or aborted', async () => {
    for (let top = 0; top < 24; top += 1) {
      for (const inner of ['a', 'b', 'c']) fill(path.join(source, `t${top}`, inner), `${top}`);
    }
    // The pool's threads (and their own files) are started by a first copy, then kept.
    await copyTree(source, path.join(tmp, 'warm-up'), { threads: 4 });
    const before = openFiles();

    await copyTree(source, target, { threads: 4 });
    expect(openFiles()).toBeLessThanOrEqual(before);

    const controller = new AbortController();
    const reason = new Error('stop');
    const aborted = copyTree(source, path.join(tmp, 'aborted'), {
      threads: 4,
      signal: controller.signal,
      onProgress: () => controller.abort(reason),
    });
    await expect(aborted).rejects.toBe(reason);
    expect(openFiles()).toBeLessThanOrEqual(before);
  });

  it('leaves no folder handed between threads for Node to close again when a thread ends', async () => {
    for (let top = 0; top < 24; top += 1) {
      for (const inner of ['a', 'b', 'c']) fill(path.join(source, `t${top}`, inner), `${top}`);
    }
    // Node tracks the files a thread opens and closes those still listed when it ends; a folder
    // opened on one thread and closed on another stays listed, and its number may by then be
    // another file's. It warns when such a folder is closed: no warning, no double close.
    const script = path.join(tmp, 'copy.mts');
    writeFileSync(
      script,
      `import { copyTree } from ${JSON.stringify(COPY_MODULE)};\n` +
        `const report = await copyTree(process.argv[2], process.argv[3], { threads: 4 });\n` +
        `console.log(report.files);\n`,
    );

    const run = spawnSync(process.execPath, ['--import', 'tsx', script, source, target], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });

    expect(run.stdout.trim(), run.stderr).toBe(String(24 * 3 * 3));
    expect(run.stderr).not.toContain('unmanaged mode');
  });
});

describe('copying with a previous copy that holds links', () => {
  it('never hard-links a file outside the previous copy that a link there leads to', async () => {
    mkdirSync(source);
    symlinkSync(outside, path.join(source, 'sub'));
    const first = path.join(tmp, 'first');
    await copyTree(source, first);
    // The source's link becomes a real folder whose file matches the outside file's size, mode and mtime.
    rmSync(path.join(source, 'sub'));
    mkdirSync(path.join(source, 'sub'));
    writeFileSync(path.join(source, 'sub', 'f1'), 'x'.repeat(OUTSIDE.length));
    for (const file of [path.join(source, 'sub', 'f1'), path.join(outside, 'f1')]) utimesSync(file, OLD_TIME, OLD_TIME);

    const result = await copyTree(source, target, { previous: first });

    expect(result).toMatchObject({ files: 1, filesLinked: 0 });
    expect(readFileSync(path.join(target, 'sub', 'f1'), 'utf8')).toBe('x'.repeat(OUTSIDE.length));
    expect(statSync(path.join(outside, 'f1')).nlink).toBe(1);
  });
});

describe('trees deeper than the system allows', () => {
  /** `levels` nested folders of 250-byte names, made relative to open folders since their paths are too long. */
  function deepTree(root: string, levels: number): void {
    mkdirSync(root);
    let fd = openSync(root, 'r');
    for (let level = 0; level < levels; level += 1) {
      const next = `/proc/self/fd/${fd}/${'x'.repeat(250)}`;
      mkdirSync(next);
      const child = openSync(next, 'r');
      closeSync(fd);
      fd = child;
    }
    writeFileSync(`/proc/self/fd/${fd}/bottom.txt`, 'deep');
    closeSync(fd);
  }

  it('fails with PathTooLongError, naming the path, when a copy would be longer than 4095 bytes', async () => {
    const deep = path.join(tmp, 'deep');
    deepTree(deep, 20);
    try {
      const failure = await copyTree(deep, target).catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(PathTooLongError);
      expect((failure as Error).message).toMatch(/^.{0,300}longer than 4095 bytes/);
      expect((failure as PathTooLongError).path.startsWith(path.join(deep, 'x'.repeat(250)))).toBe(true);
    } finally {
      // Node's rm walks by path and cannot remove what is deeper than PATH_MAX; rm(1) can.
      execFileSync('rm', ['-rf', deep]);
    }
  });
});
