import { createHash } from 'node:crypto';
import { promises as fs, type Stats } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobFailure } from '@coffer/shared/failure';
import type { JobProgress, ManifestEntry } from '@coffer/shared/job-contract';
import { manifestPathOf } from '../src/copy/manifest-file.js';
import { verifySnapshot, type VerifyReport } from '../src/copy/verify-snapshot.js';

const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');
// Not valid UTF-8: a Latin-1 "é".
const LATIN1_NAME = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]);

let tmp: string;
let snapshot: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-verify-'));
  snapshot = path.join(tmp, 'dest', '20250101T000000Z-job1');
});

afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** A small snapshot with every kind of entry; returns its files' count and bytes. */
async function buildSnapshot(root: string): Promise<{ files: number; bytes: number }> {
  await fs.mkdir(path.join(root, 'docs', 'deep'), { recursive: true });
  await fs.writeFile(path.join(root, 'a.txt'), 'hello\n');
  await fs.writeFile(path.join(root, 'empty.bin'), '');
  await fs.writeFile(path.join(root, 'docs', 'readme.md'), '# readme\n');
  await fs.writeFile(path.join(root, 'docs', 'deep', 'leaf.txt'), 'leaf');
  await fs.writeFile(path.join(root, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 17, 7));
  await fs.writeFile(Buffer.concat([Buffer.from(`${root}/docs/`), LATIN1_NAME]), 'latin');
  await fs.symlink('../a.txt', path.join(root, 'docs', 'link-up'));
  await fs.utimes(path.join(root, 'a.txt'), OLD_TIME, OLD_TIME);
  return { files: 6, bytes: 6 + 9 + 4 + 3 * 1024 * 1024 + 17 + 5 };
}

/** Writes the manifest of the folder `root` as a backup would, and returns its SHA-256. */
async function writeManifest(root: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (relative: Buffer): Promise<void> => {
    const folder = Buffer.concat([Buffer.from(`${root}/`), relative]);
    for (const name of await fs.readdir(folder, { encoding: 'buffer' })) {
      const entryRelative = relative.length === 0 ? name : Buffer.concat([relative, Buffer.from('/'), name]);
      const full = Buffer.concat([Buffer.from(`${root}/`), entryRelative]);
      const stats = await fs.lstat(full);
      const entry: ManifestEntry = {
        path: displayed(entryRelative).text,
        type: stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'link' : 'file',
        size: stats.isDirectory() ? 0 : stats.size,
        mode: stats.mode & 0o7777,
        mtime: stats.mtimeMs,
      };
      const base64 = displayed(entryRelative).base64;
      if (base64 !== undefined) entry.pathBase64 = base64;
      // As a backup records a file holding only a hole too large to hash.
      if (stats.isFile() && stats.blocks === 0 && stats.size > 1024 * 1024) entry.noData = true;
      else if (stats.isFile())
        entry.sha256 = createHash('sha256')
          .update(await fs.readFile(full))
          .digest('hex');
      if (stats.isSymbolicLink()) {
        const target = displayed(await fs.readlink(full, 'buffer'));
        entry.target = target.text;
        if (target.base64 !== undefined) entry.targetBase64 = target.base64;
      }
      lines.push(JSON.stringify(entry));
      if (stats.isDirectory()) await walk(entryRelative);
    }
  };
  await walk(Buffer.alloc(0));
  const data = lines.map((line) => `${line}\n`).join('');
  const file = manifestPathOf(root);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, data);
  return createHash('sha256').update(data).digest('hex');
}

/** Bytes as a manifest records them: as text, and in base64 too when they are not UTF-8. */
function displayed(bytes: Buffer): { text: string; base64?: string } {
  return isUtf8(bytes)
    ? { text: bytes.toString('utf8') }
    : { text: bytes.toString('utf8'), base64: bytes.toString('base64') };
}

/** The snapshot built and recorded, then checked after `damage`. */
async function verifyAfter(damage: () => Promise<void>): Promise<VerifyReport> {
  await buildSnapshot(snapshot);
  const manifestSha256 = await writeManifest(snapshot);
  await damage();
  return verifySnapshot({ snapshotPath: snapshot, manifestSha256 });
}

/** Runs `action`, then gives `folders` back their times, so only what `action` did to entries shows. */
async function keepingTimes(folders: string[], action: () => Promise<void>): Promise<void> {
  const times = await Promise.all(folders.map(async (folder) => ({ folder, stats: await fs.stat(folder) })));
  await action();
  await Promise.all(times.map(({ folder, stats }) => fs.utimes(folder, ...secondsOf(stats))));
}

/** An entry's times as seconds to the microsecond (a Date keeps only milliseconds). */
function secondsOf(stats: Stats): [number, number] {
  return [stats.atimeMs / 1000, stats.mtimeMs / 1000];
}

function problemsOf(report: VerifyReport): Array<[string, string]> {
  return report.problems.items.map((item) => [item.path, item.problem] as [string, string]).sort();
}

describe('verifySnapshot', () => {
  it('finds nothing wrong with an intact snapshot, and reads every file', async () => {
    const totals = await buildSnapshot(snapshot);
    const manifestSha256 = await writeManifest(snapshot);
    const report = await verifySnapshot({ snapshotPath: snapshot, manifestSha256 });
    expect(report.problems).toEqual({ count: 0, items: [] });
    expect({ files: report.files, bytes: report.bytes }).toEqual(totals);
    expect(report.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('finds a file whose bytes changed though its size and mtime did not', async () => {
    const file = path.join(snapshot, 'docs', 'readme.md');
    const report = await verifyAfter(async () => {
      const stats = await fs.stat(file);
      await fs.writeFile(file, '# README\n');
      await fs.utimes(file, ...secondsOf(stats));
    });
    expect(problemsOf(report)).toEqual([['docs/readme.md', 'changed']]);
  });

  it('finds a change in the middle of a file read in several chunks', async () => {
    const file = path.join(snapshot, 'big.bin');
    const report = await verifyAfter(async () => {
      const stats = await fs.stat(file);
      const handle = await fs.open(file, 'r+');
      await handle.write(Buffer.from([8]), 0, 1, 2 * 1024 * 1024 + 5);
      await handle.close();
      await fs.utimes(file, ...secondsOf(stats));
    });
    expect(problemsOf(report)).toEqual([['big.bin', 'changed']]);
  });

  it('finds a deleted file missing and an added one extra', async () => {
    const folders = [path.join(snapshot, 'docs'), path.join(snapshot, 'docs', 'deep')];
    const report = await verifyAfter(() =>
      keepingTimes(folders, async () => {
        await fs.rm(path.join(snapshot, 'docs', 'deep', 'leaf.txt'));
        await fs.writeFile(path.join(snapshot, 'docs', 'new.txt'), 'new');
        await fs.mkdir(path.join(snapshot, 'new-folder'));
        await fs.writeFile(path.join(snapshot, 'new-folder', 'inside.txt'), 'inside');
      }),
    );
    expect(problemsOf(report)).toEqual([
      ['docs/deep/leaf.txt', 'missing'],
      ['docs/new.txt', 'extra'],
      ['new-folder', 'extra'],
    ]);
    expect(report.problems.count).toBe(3);
  });

  it('finds a change of mode', async () => {
    const report = await verifyAfter(() => fs.chmod(path.join(snapshot, 'a.txt'), 0o600));
    expect(problemsOf(report)).toEqual([['a.txt', 'changed']]);
  });

  it('finds a link given another target', async () => {
    const link = path.join(snapshot, 'docs', 'link-up');
    const report = await verifyAfter(() =>
      keepingTimes([path.join(snapshot, 'docs')], async () => {
        // Of the same length and times: only the target differs.
        const stats = await fs.lstat(link);
        await fs.rm(link);
        await fs.symlink('../b.txt', link);
        await fs.lutimes(link, ...secondsOf(stats));
      }),
    );
    expect(problemsOf(report)).toEqual([['docs/link-up', 'changed']]);
  });

  it('checks names that are not UTF-8 by their bytes, and reports them with their bytes', async () => {
    await buildSnapshot(snapshot);
    const name = Buffer.concat([Buffer.from(`${snapshot}/docs/`), LATIN1_NAME]);
    const manifestSha256 = await writeManifest(snapshot);
    const clean = await verifySnapshot({ snapshotPath: snapshot, manifestSha256 });
    expect(clean.problems.count).toBe(0);
    await fs.writeFile(name, 'LATIN');
    const report = await verifySnapshot({ snapshotPath: snapshot, manifestSha256 });
    const docsLatin = Buffer.concat([Buffer.from('docs/'), LATIN1_NAME]);
    expect(report.problems.items).toEqual([
      { path: docsLatin.toString('utf8'), pathBase64: docsLatin.toString('base64'), problem: 'changed' },
    ]);
  });

  it('throws SNAPSHOT_DAMAGED when the manifest was edited', async () => {
    await buildSnapshot(snapshot);
    const manifestSha256 = await writeManifest(snapshot);
    await fs.appendFile(manifestPathOf(snapshot), '{"path":"forged","type":"dir","size":0,"mode":511,"mtime":0}\n');
    const failure = await verifySnapshot({ snapshotPath: snapshot, manifestSha256 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(JobFailure);
    expect(failure).toMatchObject({ code: 'SNAPSHOT_DAMAGED', permanent: true });
  });

  it('throws SNAPSHOT_NOT_FOUND when the snapshot folder is gone', async () => {
    await buildSnapshot(snapshot);
    const manifestSha256 = await writeManifest(snapshot);
    await fs.rm(snapshot, { recursive: true });
    await expect(verifySnapshot({ snapshotPath: snapshot, manifestSha256 })).rejects.toMatchObject({
      code: 'SNAPSHOT_NOT_FOUND',
    });
  });

  it('never follows a link out of the snapshot, even one standing where a folder or file was', async () => {
    const totals = await buildSnapshot(snapshot);
    const manifestSha256 = await writeManifest(snapshot);
    // Outside: the same names, with other contents, whose reading would show in the totals.
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(path.join(outside, 'deep'), { recursive: true });
    await fs.writeFile(path.join(outside, 'readme.md'), '# outside\n');
    await fs.writeFile(path.join(outside, 'deep', 'leaf.txt'), 'outside leaf');
    await fs.writeFile(path.join(outside, 'outside-only.bin'), Buffer.alloc(100_000));
    await fs.writeFile(path.join(tmp, 'a.txt'), 'hello\n');
    await fs.rm(path.join(snapshot, 'docs'), { recursive: true });
    await fs.symlink(outside, path.join(snapshot, 'docs'));
    await fs.rm(path.join(snapshot, 'a.txt'));
    await fs.symlink(path.join(tmp, 'a.txt'), path.join(snapshot, 'a.txt'));

    const report = await verifySnapshot({ snapshotPath: snapshot, manifestSha256 });
    const problems = problemsOf(report);
    expect(problems).toContainEqual(['docs', 'changed']);
    expect(problems).toContainEqual(['a.txt', 'changed']);
    expect(problems).toContainEqual(['docs/readme.md', 'missing']);
    expect(problems).toContainEqual(['docs/deep/leaf.txt', 'missing']);
    expect(problems.map(([name]) => name)).not.toContain('docs/outside-only.bin');
    // Only what is still inside was read: big.bin and empty.bin.
    expect({ files: report.files, bytes: report.bytes }).toEqual({ files: 2, bytes: totals.bytes - 6 - 9 - 4 - 5 });
  });

  it('checks a file holding no data by its size and blocks alone', async () => {
    await buildSnapshot(snapshot);
    const hole = path.join(snapshot, 'hole.bin');
    const handle = await fs.open(hole, 'w');
    await handle.truncate(2 * 1024 * 1024 * 1024);
    await handle.close();
    const manifestSha256 = await writeManifest(snapshot);
    expect(await fs.readFile(manifestPathOf(snapshot), 'utf8')).toContain('"noData":true');
    const started = Date.now();
    const report = await verifySnapshot({ snapshotPath: snapshot, manifestSha256 });
    expect(report.problems.count).toBe(0);
    expect(report.files).toBe(7);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('reports progress against the totals of the manifest', async () => {
    const totals = await buildSnapshot(snapshot);
    const manifestSha256 = await writeManifest(snapshot);
    const seen: JobProgress[] = [];
    await verifySnapshot({ snapshotPath: snapshot, manifestSha256, onProgress: (progress) => seen.push(progress) });
    expect(seen.length).toBeGreaterThan(0);
    for (const [index, progress] of seen.entries()) {
      expect(progress).toMatchObject({ filesTotal: totals.files, bytesTotal: totals.bytes });
      expect(progress.files).toBeGreaterThanOrEqual(seen[index - 1]?.files ?? 0);
      expect(progress.bytes).toBeGreaterThanOrEqual(seen[index - 1]?.bytes ?? 0);
    }
    expect(seen.at(-1)).toEqual({
      files: totals.files,
      filesTotal: totals.files,
      bytes: totals.bytes,
      bytesTotal: totals.bytes,
      current: null,
    });
  });

  it('names the entry being checked, relative to the snapshot, while inside a big file', async () => {
    await fs.mkdir(path.join(snapshot, 'media'), { recursive: true });
    await fs.writeFile(path.join(snapshot, 'small.txt'), 'small\n');
    // 512 MiB, written (not a hole): hashing it takes longer than a progress interval.
    const handle = await fs.open(path.join(snapshot, 'media', 'big.bin'), 'w');
    const chunk = Buffer.alloc(16 * 1024 * 1024, 3);
    for (let written = 0; written < 512 * 1024 * 1024; written += chunk.length) await handle.write(chunk);
    await handle.close();
    const manifestSha256 = await writeManifest(snapshot);
    const seen: JobProgress[] = [];

    await verifySnapshot({ snapshotPath: snapshot, manifestSha256, onProgress: (progress) => seen.push(progress) });

    const named = seen.flatMap(({ current }) => (current ? [current] : []));
    expect(named).toContain('media/big.bin');
    for (const current of named) expect(['media', 'media/big.bin', 'small.txt']).toContain(current);
    expect(seen.at(-1)?.current).toBeNull();
  });

  it('stops within a second of an abort, even inside a big file, rejecting with the reason', async () => {
    await fs.mkdir(snapshot, { recursive: true });
    // 512 MiB, written (not a hole), takes longer to hash than a progress interval.
    const handle = await fs.open(path.join(snapshot, 'huge.bin'), 'w');
    const chunk = Buffer.alloc(16 * 1024 * 1024, 1);
    for (let written = 0; written < 512 * 1024 * 1024; written += chunk.length) await handle.write(chunk);
    await handle.close();
    const manifestSha256 = await writeManifest(snapshot);
    const controller = new AbortController();
    const reason = new Error('stop now');
    let abortedAt = 0;
    let bytesAtAbort = 0;
    const verifying = verifySnapshot({
      snapshotPath: snapshot,
      manifestSha256,
      signal: controller.signal,
      onProgress: ({ bytes, bytesTotal }) => {
        if (bytes === 0 || abortedAt !== 0) return;
        expect(bytes).toBeLessThan(bytesTotal);
        bytesAtAbort = bytes;
        abortedAt = Date.now();
        controller.abort(reason);
      },
    });
    await expect(verifying).rejects.toBe(reason);
    expect(bytesAtAbort).toBeGreaterThan(0);
    expect(Date.now() - abortedAt).toBeLessThan(1_000);
  });

  it('lists the first 100 problems and counts them all', async () => {
    const report = await verifyAfter(() =>
      keepingTimes([path.join(snapshot, 'docs')], async () => {
        for (let index = 0; index < 120; index += 1)
          await fs.writeFile(path.join(snapshot, 'docs', `extra-${index}`), '');
      }),
    );
    expect(report.problems.count).toBe(120);
    expect(report.problems.items).toHaveLength(100);
  });

  it('rejects with the error a progress callback threw', async () => {
    await buildSnapshot(snapshot);
    const manifestSha256 = await writeManifest(snapshot);
    const thrown = new Error('no more progress');
    const onProgress = () => {
      throw thrown;
    };
    await expect(verifySnapshot({ snapshotPath: snapshot, manifestSha256, onProgress })).rejects.toBe(thrown);
  });

  it('rejects at once when aborted before it starts', async () => {
    const controller = new AbortController();
    controller.abort(new Error('never mind'));
    await expect(
      verifySnapshot({ snapshotPath: snapshot, manifestSha256: 'x', signal: controller.signal }),
    ).rejects.toThrow('never mind');
  });
});
