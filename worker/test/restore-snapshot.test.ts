import { createHash } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import os from 'node:os';
import path from 'node:path';
import { JobFailure, type FailureCode } from '@coffer/shared/failure';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { manifestPathOf } from '../src/copy/manifest-file.js';
import { removeTree } from '../src/copy/remove-tree.js';
import { restoreSnapshot, type RestoreProgress, type RestoreRequest } from '../src/copy/restore-snapshot.js';
import { resolveRestoreTarget } from '../src/copy/restore-target.js';
import { AttemptSuperseded } from '../src/copy/snapshot.js';

const SNAPSHOT_NAME = '20261127T191045.123Z-job-1';
// Above this, a file without blocks is listed by its size alone (as the copy engine does).
const NO_DATA_SIZE = 1024 * 1024 * 1024;
// A name that is not valid UTF-8.
const LATIN1_NAME = Buffer.from([0x63, 0x61, 0x66, 0xe9]);

let tmp: string;
let backupRoot: string;
let snapshotPath: string;
let restores: string;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'coffer-restore-'));
  backupRoot = path.join(tmp, 'backups');
  snapshotPath = path.join(backupRoot, 'projects', SNAPSHOT_NAME);
  restores = path.join(tmp, 'restores');
  await fsp.mkdir(restores);
  await fsp.mkdir(path.join(snapshotPath, 'docs', 'empty'), { recursive: true });
  await fsp.writeFile(path.join(snapshotPath, 'docs', 'plan.md'), '# plan\n');
  await fsp.writeFile(path.join(snapshotPath, 'notes.txt'), 'remember\n', { mode: 0o640 });
  await fsp.symlink('docs/plan.md', path.join(snapshotPath, 'plan-link'));
  await fsp.symlink('/nowhere/at/all', path.join(snapshotPath, 'dangling'));
  fs.writeFileSync(Buffer.concat([Buffer.from(`${snapshotPath}/`), LATIN1_NAME]), 'accent');
  await fsp.mkdir(path.join(snapshotPath, 'frozen'));
  await fsp.writeFile(path.join(snapshotPath, 'frozen', 'ice.txt'), 'cold');
  await fsp.chmod(path.join(snapshotPath, 'frozen'), 0o555);
  await fsp.utimes(path.join(snapshotPath, 'notes.txt'), 1_000_000, 1_234_567.891234);
  await fsp.utimes(path.join(snapshotPath, 'docs'), 2_000_000, 2_345_678.5);
});

afterEach(async () => {
  await removeTree(tmp);
});

/** Every entry below `root`, as a manifest lists it (names as bytes, so any name works). */
function describeTree(root: string): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  const walk = (relative: Buffer) => {
    const folder = relative.length === 0 ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), relative]);
    for (const name of fs.readdirSync(folder, { encoding: 'buffer' }).sort((a, b) => Buffer.compare(a, b))) {
      const entryRelative = relative.length === 0 ? name : Buffer.concat([relative, Buffer.from('/'), name]);
      const full = Buffer.concat([folder, Buffer.from('/'), name]);
      const stats = fs.lstatSync(full);
      const named = isUtf8(entryRelative)
        ? { path: entryRelative.toString() }
        : { path: entryRelative.toString(), pathBase64: entryRelative.toString('base64') };
      const common = { ...named, mode: stats.mode & 0o7777, mtime: stats.mtimeMs };
      if (stats.isDirectory()) {
        entries.push({ ...common, type: 'dir', size: 0 });
        walk(entryRelative);
      } else if (stats.isSymbolicLink()) {
        const target = fs.readlinkSync(full, { encoding: 'buffer' });
        entries.push({ ...common, type: 'link', size: target.length, target: target.toString() });
      } else if (stats.blocks === 0 && stats.size > NO_DATA_SIZE) {
        entries.push({ ...common, type: 'file', size: stats.size, noData: true });
      } else {
        const data = fs.readFileSync(full);
        entries.push({ ...common, type: 'file', size: data.length, sha256: sha256(data) });
      }
    }
  };
  walk(Buffer.alloc(0));
  return entries;
}

/** Writes the manifest of the snapshot as it is now; returns its SHA-256. */
async function writeManifest(): Promise<string> {
  const text = describeTree(snapshotPath)
    .map((entry) => JSON.stringify(entry))
    .join('\n');
  const file = manifestPathOf(snapshotPath);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, `${text}\n`);
  return sha256(Buffer.from(`${text}\n`));
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

// utimes takes a double of seconds, so a restored mtime matches to within a microsecond, not exactly.
const SAME_MTIME_MS = 0.001;

/**
 * Expects two trees' entries to be equal, mtimes to within a microsecond: rounding both to a grid
 * instead would fail whenever two times within a microsecond fall on either side of a grid line.
 */
function expectSameTree(actual: ManifestEntry[], expected: ManifestEntry[]): void {
  const matched = actual.map((entry, at) => {
    const mtime = expected[at]?.mtime;
    return mtime !== undefined && Math.abs(entry.mtime - mtime) < SAME_MTIME_MS ? { ...entry, mtime } : entry;
  });
  expect(matched).toEqual(expected);
}

async function restore(overrides: Partial<RestoreRequest> = {}): Promise<Awaited<ReturnType<typeof restoreSnapshot>>> {
  const manifestSha256 = overrides.manifestSha256 ?? (await writeManifest());
  return restoreSnapshot({
    snapshotPath,
    manifestSha256,
    target: path.join(restores, 'out'),
    jobId: 'job-7',
    attempt: 'a1',
    ...overrides,
  });
}

async function expectFailure(promise: Promise<unknown>, code: FailureCode, message?: RegExp): Promise<JobFailure> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(JobFailure);
  const failure = error as JobFailure;
  expect(failure.code).toBe(code);
  expect(failure.permanent).toBe(true);
  if (message) expect(failure.message).toMatch(message);
  return failure;
}

async function listing(folder: string): Promise<string[]> {
  return (await fsp.readdir(folder)).sort();
}

describe('restoreSnapshot into a new target', () => {
  it('makes the target equal to the snapshot: contents, modes, mtimes, links, empty folders, any name', async () => {
    const progress: RestoreProgress[] = [];
    const target = path.join(restores, 'out');
    const report = await restore({ onProgress: (counts) => progress.push({ ...counts }) });
    expect(report).toMatchObject({ path: target, files: 4, bytes: 7 + 9 + 6 + 4 });
    expectSameTree(describeTree(target), describeTree(snapshotPath));
    expect(fs.readFileSync(Buffer.concat([Buffer.from(`${target}/`), LATIN1_NAME]), 'utf8')).toBe('accent');
    const [rootCopy, rootSnapshot] = [await fsp.stat(target), await fsp.stat(snapshotPath)];
    expect(rootCopy.mode).toBe(rootSnapshot.mode);
    // Times travel as float seconds (utimes): equal to well within 10 µs, whichever way they round.
    expect(Math.abs(rootCopy.mtimeMs - rootSnapshot.mtimeMs)).toBeLessThan(0.01);
    expect(progress[0]).toEqual({ files: 0, filesTotal: 4, bytes: 0, bytesTotal: 26, current: null });
    // Nothing but the target is left beside it.
    expect(await listing(restores)).toEqual(['out']);
  });

  it('restores a tree large enough to be shared between threads', async () => {
    for (let folder = 0; folder < 30; folder += 1) {
      const at = path.join(snapshotPath, 'many', `d${folder}`);
      await fsp.mkdir(at, { recursive: true });
      await Promise.all(
        Array.from({ length: 80 }, (_, file) => fsp.writeFile(path.join(at, `f${file}`), `${folder}/${file}`)),
      );
    }
    const target = path.join(restores, 'out');
    const report = await restore();
    expect(report.files).toBe(4 + 30 * 80);
    expectSameTree(describeTree(target), describeTree(snapshotPath));
  });

  it('refuses a target that exists and is not empty, touching nothing', async () => {
    const target = path.join(restores, 'out');
    await fsp.mkdir(target);
    await fsp.writeFile(path.join(target, 'mine.txt'), 'keep');
    const before = describeTree(restores);
    await expectFailure(restore(), 'TARGET_EXISTS', /already exists/);
    expect(describeTree(restores)).toEqual(before);
  });

  it('refuses a target that is a file', async () => {
    await fsp.writeFile(path.join(restores, 'out'), 'a file');
    await expectFailure(restore(), 'TARGET_EXISTS');
    expect(await fsp.readFile(path.join(restores, 'out'), 'utf8')).toBe('a file');
  });

  it('fills an empty existing folder', async () => {
    await fsp.mkdir(path.join(restores, 'out'));
    await restore();
    expectSameTree(describeTree(path.join(restores, 'out')), describeTree(snapshotPath));
  });

  it('makes missing parent folders of the target', async () => {
    const target = path.join(restores, 'a', 'b', 'out');
    await restore({ target });
    expect(await fsp.readFile(path.join(target, 'notes.txt'), 'utf8')).toBe('remember\n');
  });

  it('restores only the requested paths, with the folders on their way', async () => {
    const target = path.join(restores, 'out');
    const report = await restore({ paths: ['docs/plan.md', 'frozen'] });
    expect(report.files).toBe(2);
    expect(describeTree(target).map((entry) => entry.path)).toEqual([
      'docs',
      'docs/plan.md',
      'frozen',
      'frozen/ice.txt',
    ]);
    expect((await fsp.stat(path.join(target, 'frozen'))).mode & 0o7777).toBe(0o555);
    // A folder on the way gets the manifest's mode and mtime.
    const docs = await fsp.stat(path.join(target, 'docs'));
    expect(Math.round(docs.mtimeMs)).toBe(2_345_678_500);
  });

  it('fails on a path the snapshot does not hold', async () => {
    await expectFailure(
      restore({ paths: ['docs/nothing'] }),
      'RESTORE_FAILED',
      /path docs\/nothing is not in snapshot/,
    );
    await expectFailure(restore({ paths: ['../backups'] }), 'RESTORE_FAILED');
    expect(await listing(restores)).toEqual([]);
  });

  it('fails with SNAPSHOT_DAMAGED on a file changed since the manifest, leaving no target', async () => {
    const manifestSha256 = await writeManifest();
    // Same size, other bytes.
    await fsp.writeFile(path.join(snapshotPath, 'notes.txt'), 'REMEMBER\n');
    const failure = await expectFailure(restore({ manifestSha256 }), 'SNAPSHOT_DAMAGED', /notes\.txt/);
    expect(failure.problems).toEqual([{ path: 'notes.txt', problem: 'changed' }]);
    expect(await listing(restores)).toEqual([]);
  });

  it('fails with SNAPSHOT_DAMAGED on a missing file or a manifest that changed', async () => {
    const manifestSha256 = await writeManifest();
    await fsp.rm(path.join(snapshotPath, 'docs', 'plan.md'));
    await expectFailure(restore({ manifestSha256 }), 'SNAPSHOT_DAMAGED', /docs\/plan\.md/);
    await expectFailure(restore({ manifestSha256: '0'.repeat(64) }), 'SNAPSHOT_DAMAGED', /manifest/);
    expect(await listing(restores)).toEqual([]);
  });

  it('removes a staging folder an earlier attempt of the job left', async () => {
    const leftover = path.join(restores, '.out.coffer-restore-job-7+a0');
    await fsp.mkdir(path.join(leftover, 'half'), { recursive: true });
    await fsp.writeFile(path.join(leftover, 'half', 'written'), 'partial');
    await fsp.chmod(path.join(leftover, 'half'), 0o555);
    await restore({ attempt: 'a1' });
    expect(await listing(restores)).toEqual(['out']);
  });

  it('puts nothing in place once another attempt owns the job, and leaves no staging', async () => {
    const asked: number[] = [];
    const outcome = restore({
      stillOwned: async () => {
        asked.push(1);
        return false;
      },
    });
    await expect(outcome).rejects.toBeInstanceOf(AttemptSuperseded);
    expect(asked).toHaveLength(1);
    expect(await listing(restores)).toEqual([]);
  });

  it('makes a file that holds no data by its size alone', async () => {
    const big = path.join(snapshotPath, 'hole.img');
    await fsp.writeFile(big, '');
    await fsp.truncate(big, 3 * 1024 * 1024 * 1024);
    await restore();
    const restored = await fsp.stat(path.join(restores, 'out', 'hole.img'));
    expect(restored.size).toBe(3 * 1024 * 1024 * 1024);
    expect(restored.blocks).toBe(0);
  });

  it('names the entry being restored, relative to the snapshot, while inside a big file', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 5);
    await fsp.mkdir(path.join(snapshotPath, 'media'));
    const handle = await fsp.open(path.join(snapshotPath, 'media', 'big.bin'), 'w');
    for (let i = 0; i < 256; i += 1) await handle.write(chunk);
    await handle.close();
    const progress: RestoreProgress[] = [];

    await restore({ onProgress: (counts) => progress.push({ ...counts }) });

    const named = progress.flatMap(({ current }) => (current === null ? [] : [current]));
    expect(named).toContain('media/big.bin');
    const entries = describeTree(snapshotPath).map((entry) => entry.path);
    for (const current of named) expect(entries).toContain(current);
  });

  it('stops when aborted inside a big file: rejects with the reason, leaves neither target nor staging', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const handle = await fsp.open(path.join(snapshotPath, 'big.bin'), 'w');
    for (let i = 0; i < 256; i += 1) await handle.write(chunk);
    await handle.close();
    const controller = new AbortController();
    const reason = new Error('cancelled by test');
    const startedAt = Date.now();
    const outcome = restore({
      signal: controller.signal,
      onProgress: (progress) => {
        if (progress.bytes > 0) controller.abort(reason);
      },
    });
    await expect(outcome).rejects.toBe(reason);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(await listing(restores)).toEqual([]);
  });
});

describe('restoreSnapshot with overwrite', () => {
  const target = () => path.join(restores, 'out');

  it('replaces changed files and links, restores missing ones and leaves extra files alone', async () => {
    await restore();
    await fsp.writeFile(path.join(target(), 'notes.txt'), 'changed locally');
    await fsp.rm(path.join(target(), 'docs', 'plan.md'));
    await fsp.writeFile(path.join(target(), 'docs', 'extra.txt'), 'mine');
    await fsp.rm(path.join(target(), 'plan-link'));
    await fsp.writeFile(path.join(target(), 'plan-link'), 'a file where a link was');
    const report = await restore({ overwrite: true, attempt: 'a2' });
    expect(report.files).toBe(4);
    const restored = describeTree(target()).filter((entry) => entry.path !== 'docs/extra.txt');
    expectSameTree(restored, describeTree(snapshotPath));
    expect(await fsp.readFile(path.join(target(), 'docs', 'extra.txt'), 'utf8')).toBe('mine');
    expect(await fsp.readlink(path.join(target(), 'plan-link'))).toBe('docs/plan.md');
    // No temporary name is left anywhere.
    expect(describeTree(target()).filter((entry) => entry.path.includes('coffer-restore'))).toEqual([]);
  });

  it('never follows a link planted where a folder goes', async () => {
    const outside = path.join(tmp, 'outside');
    await fsp.mkdir(outside);
    await fsp.writeFile(path.join(outside, 'plan.md'), 'outside');
    await fsp.mkdir(target());
    await fsp.symlink(outside, path.join(target(), 'docs'));
    await expectFailure(restore({ overwrite: true }), 'INVALID_TARGET', new RegExp(`${target()}/docs`));
    expect(await listing(outside)).toEqual(['plan.md']);
    expect(await fsp.readFile(path.join(outside, 'plan.md'), 'utf8')).toBe('outside');
  });

  it('replaces a link planted where a file goes, not what it points at', async () => {
    const outside = path.join(tmp, 'outside.txt');
    await fsp.writeFile(outside, 'outside');
    await fsp.mkdir(target());
    await fsp.symlink(outside, path.join(target(), 'notes.txt'));
    await restore({ overwrite: true });
    expect(await fsp.readFile(outside, 'utf8')).toBe('outside');
    expect((await fsp.lstat(path.join(target(), 'notes.txt'))).isFile()).toBe(true);
  });

  it('refuses a target that is a link', async () => {
    const outside = path.join(tmp, 'outside');
    await fsp.mkdir(outside);
    await fsp.symlink(outside, target());
    await expectFailure(restore({ overwrite: true }), 'INVALID_TARGET');
    expect(await listing(outside)).toEqual([]);
  });

  it('keeps the existing file when the snapshot copy is damaged', async () => {
    await restore();
    await fsp.writeFile(path.join(target(), 'notes.txt'), 'local copy');
    const manifestSha256 = await writeManifest();
    await fsp.writeFile(path.join(snapshotPath, 'notes.txt'), 'REMEMBER\n');
    await expectFailure(restore({ manifestSha256, overwrite: true, paths: ['notes.txt'] }), 'SNAPSHOT_DAMAGED');
    expect(await fsp.readFile(path.join(target(), 'notes.txt'), 'utf8')).toBe('local copy');
    expect(await listing(target())).not.toContain('.coffer-restore-job-7+a1');
  });
});

describe('resolveRestoreTarget', () => {
  it('gives the real path of a target, existing or to be made', async () => {
    const real = await fsp.realpath(restores);
    expect(await resolveRestoreTarget(path.join(restores, 'new', 'deep'), [restores], backupRoot)).toBe(
      path.join(real, 'new', 'deep'),
    );
    await fsp.symlink(path.join(restores), path.join(tmp, 'via-link'));
    expect(await resolveRestoreTarget(path.join(tmp, 'via-link', 'x'), [restores], backupRoot)).toBe(
      path.join(real, 'x'),
    );
  });

  it('refuses a target reached through a link into BACKUP_ROOT', async () => {
    await fsp.symlink(backupRoot, path.join(restores, 'store'));
    await expectFailure(
      resolveRestoreTarget(path.join(restores, 'store', 'x'), [tmp], backupRoot),
      'INVALID_TARGET',
      /BACKUP_ROOT/,
    );
    // A target containing the store is refused too.
    await expectFailure(resolveRestoreTarget(tmp, [tmp], backupRoot), 'INVALID_TARGET');
  });

  it('refuses a target reached through a link outside the roots', async () => {
    const outside = path.join(tmp, 'outside');
    await fsp.mkdir(outside);
    await fsp.symlink(outside, path.join(restores, 'escape'));
    await expectFailure(
      resolveRestoreTarget(path.join(restores, 'escape', 'x'), [restores], backupRoot),
      'TARGET_OUTSIDE_ROOTS',
    );
  });

  it('refuses a relative path and a link leading nowhere', async () => {
    await expectFailure(resolveRestoreTarget('restores/x', [restores], backupRoot), 'INVALID_TARGET');
    await fsp.symlink(path.join(tmp, 'missing'), path.join(restores, 'dangling'));
    await expectFailure(
      resolveRestoreTarget(path.join(restores, 'dangling', 'x'), [restores], backupRoot),
      'INVALID_TARGET',
    );
  });
});
