import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { manifestPathOf } from '../src/copy/manifest-file.js';
import { SMALL_JOB, createSnapshot, removeTree, type SnapshotRequest, type SnapshotResult } from '../src/copy/index.js';
import { describeTree } from '../../test/helpers/trees.js';

const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');

let tmp: string;
let source: string;
let backupRoot: string;
let jobs = 0;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-fast-'));
  source = path.join(tmp, 'source');
  backupRoot = path.join(tmp, 'backups');
  await fs.mkdir(path.join(source, 'docs', 'empty'), { recursive: true });
  await fs.writeFile(path.join(source, 'docs', 'plan.md'), '# plan\n');
  await fs.writeFile(path.join(source, 'docs', 'size.txt'), 'four');
  await fs.writeFile(path.join(source, 'docs', 'time.txt'), 'time');
  await fs.writeFile(path.join(source, 'docs', 'mode.txt'), 'mode');
  await fs.writeFile(path.join(source, 'docs', 'gone.txt'), 'gone');
  await fs.writeFile(path.join(source, 'notes.txt'), 'remember\n');
  await fs.writeFile(path.join(source, 'tool.sh'), '#!/bin/sh\n', { mode: 0o755 });
  await fs.chmod(path.join(source, 'tool.sh'), 0o755);
  await fs.link(path.join(source, 'notes.txt'), path.join(source, 'notes-again.txt'));
  await fs.symlink('docs/plan.md', path.join(source, 'plan-link'));
  await fs.mkdir(path.join(source, 'frozen'));
  await fs.writeFile(path.join(source, 'frozen', 'ice.txt'), 'cold');
  await fs.chmod(path.join(source, 'frozen'), 0o555);
  for (const file of ['docs/plan.md', 'docs/size.txt', 'docs/time.txt', 'docs/mode.txt', 'notes.txt', 'tool.sh']) {
    await fs.utimes(path.join(source, file), OLD_TIME, OLD_TIME);
  }
});

afterEach(async () => {
  await fs.chmod(path.join(source, 'frozen'), 0o755).catch(() => undefined);
  await removeTree(tmp);
});

/**
 * One job, each a second after the one before; the first starts a few seconds after the source
 * was made, as a real job does (a source inode changed after the previous job started has its
 * owner checked, see `SyncCopyOptions.index`).
 */
async function snapshot(overrides: Partial<SnapshotRequest> = {}): Promise<SnapshotResult> {
  jobs += 1;
  return createSnapshot({
    source,
    backupRoot,
    destination: 'alpha',
    jobId: `job-${jobs}`,
    startedAt: new Date(Date.now() + 5_000 + jobs * 1_000),
    ...overrides,
  });
}

async function manifestLines(snapshotPath: string): Promise<string[]> {
  return (await fs.readFile(manifestPathOf(snapshotPath), 'utf8')).split('\n').filter(Boolean).sort();
}

function entryOf(lines: string[], name: string): ManifestEntry | undefined {
  return lines.map((line) => JSON.parse(line) as ManifestEntry).find((entry) => entry.path === name);
}

async function sameInode(a: string, b: string): Promise<boolean> {
  const [one, other] = await Promise.all([fs.lstat(a), fs.lstat(b)]);
  return one.ino === other.ino && one.dev === other.dev;
}

/** Whether progress was reported from the caller's own thread: a copy thread's report arrives as a message. */
function progressOnOwnThread(): { seen: () => boolean; onProgress: SnapshotRequest['onProgress'] } {
  let inline = false;
  return {
    seen: () => inline,
    onProgress: () => {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 200;
      try {
        inline ||= (new Error().stack ?? '').includes('runInline');
      } finally {
        Error.stackTraceLimit = limit;
      }
    },
  };
}

describe('a small job', () => {
  it('is copied on its own thread into the same snapshot, manifest and result as on copy threads', async () => {
    const inline = progressOnOwnThread();
    const threaded = progressOnOwnThread();
    const small = await snapshot({ destination: 'inline', onProgress: inline.onProgress });
    const large = await snapshot({
      destination: 'threads',
      inline: false,
      threads: 2,
      onProgress: threaded.onProgress,
    });

    expect(inline.seen()).toBe(true);
    expect(threaded.seen()).toBe(false);
    expect(await describeTree(small.path)).toEqual(await describeTree(large.path));
    expect(await describeTree(small.path)).toEqual(await describeTree(source));
    expect(await manifestLines(small.path)).toEqual(await manifestLines(large.path));
    const strip = ({ path: _path, durationMs: _duration, manifestSha256: _sha, ...rest }: SnapshotResult) => rest;
    expect(strip(small)).toEqual(strip(large));
  });

  it('tells its totals before the copy, from the walk that found it small', async () => {
    const measured: Array<{ files: number; bytes: number }> = [];
    const result = await snapshot({ onMeasured: (size) => measured.push(size) });
    expect(measured).toEqual([{ files: result.files, bytes: result.bytes }]);
  });

  it('goes to copy threads past the limits', async () => {
    const threaded = progressOnOwnThread();
    await snapshot({ inline: { ...SMALL_JOB, entries: 3 }, onProgress: threaded.onProgress });
    expect(threaded.seen()).toBe(false);
  });

  it('stops between files once cancelled, leaving nothing behind', async () => {
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => fs.writeFile(path.join(source, 'docs', `f${i}`), String(i))),
    );
    const controller = new AbortController();
    const own = progressOnOwnThread();
    let lastFiles = 0;
    const failure = await snapshot({
      signal: controller.signal,
      onProgress: (counts, current) => {
        own.onProgress?.(counts, current);
        lastFiles = counts.files;
        if (counts.files === 3) controller.abort('cancelled by request');
      },
    }).catch((error: unknown) => error);

    expect(own.seen()).toBe(true);
    expect(failure).toBe('cancelled by request');
    // Seen before the next entry: no file was copied after the cancel.
    expect(lastFiles).toBe(3);
    expect(await fs.readdir(path.join(backupRoot, 'alpha'))).toEqual([]);
  });
});

describe.each([
  ['inline', undefined],
  ['on threads', false],
] as const)('an incremental re-run (%s)', (_mode, inline) => {
  it('links every unchanged file and copies what changed, new files included, deciding from the manifest', async () => {
    const first = await snapshot({ inline });
    const docs = path.join(source, 'docs');
    await fs.writeFile(path.join(docs, 'size.txt'), 'fourteen');
    await fs.utimes(path.join(docs, 'size.txt'), OLD_TIME, OLD_TIME);
    await fs.utimes(path.join(docs, 'time.txt'), OLD_TIME, new Date(OLD_TIME.getTime() + 1_000));
    await fs.chmod(path.join(docs, 'mode.txt'), 0o600);
    await fs.rm(path.join(docs, 'gone.txt'));
    await fs.writeFile(path.join(docs, 'new.txt'), 'new');

    const second = await snapshot({ inline });

    const linked = ['docs/plan.md', 'notes.txt', 'tool.sh'];
    const copied = ['docs/size.txt', 'docs/time.txt', 'docs/mode.txt'];
    for (const file of linked)
      expect(await sameInode(path.join(first.path, file), path.join(second.path, file)), file).toBe(true);
    for (const file of copied)
      expect(await sameInode(path.join(first.path, file), path.join(second.path, file)), file).toBe(false);
    // The names of one source inode stay one inode, linked from the previous snapshot.
    expect(await sameInode(path.join(second.path, 'notes.txt'), path.join(second.path, 'notes-again.txt'))).toBe(true);
    await expect(fs.access(path.join(second.path, 'docs/gone.txt'))).rejects.toThrow();
    expect(await describeTree(second.path)).toEqual(await describeTree(source));
    // plan.md, notes.txt (notes-again.txt is a link to it), tool.sh, frozen/ice.txt.
    expect(second.filesLinked).toBe(4);
    const lines = await manifestLines(second.path);
    expect(entryOf(lines, 'docs/size.txt')).toMatchObject({ size: 8 });
    expect(entryOf(lines, 'docs/new.txt')).toMatchObject({ size: 3 });
    expect(entryOf(lines, 'docs/gone.txt')).toBeUndefined();
    expect(entryOf(lines, 'notes.txt')).toEqual(entryOf(await manifestLines(first.path), 'notes.txt'));
  });

  it("decides from the previous manifest, not from the previous snapshot's files", async () => {
    const first = await snapshot({ inline });
    // Times of files in the snapshot changed on disk (as `touch` would): a look at the files
    // would copy them; the manifest says they are unchanged, so they are linked.
    for (const file of ['docs/plan.md', 'tool.sh']) {
      await fs.utimes(path.join(first.path, file), new Date(), new Date());
    }

    const second = await snapshot({ inline });

    for (const file of ['docs/plan.md', 'tool.sh']) {
      expect(await sameInode(path.join(first.path, file), path.join(second.path, file)), file).toBe(true);
      // Its line is the previous one, as the previous snapshot recorded it.
      expect(entryOf(await manifestLines(second.path), file)).toEqual(entryOf(await manifestLines(first.path), file));
    }
  });

  it('copies a file removed from the previous snapshot, rather than failing', async () => {
    const first = await snapshot({ inline });
    await fs.rm(path.join(first.path, 'docs', 'plan.md'));
    await fs.rm(path.join(first.path, 'tool.sh'));

    const second = await snapshot({ inline });

    expect(await describeTree(second.path)).toEqual(await describeTree(source));
    expect(await fs.readFile(path.join(second.path, 'docs', 'plan.md'), 'utf8')).toBe('# plan\n');
    expect(second.filesLinked).toBe(first.files - 2 - 1);
  });

  it('never links a file of the previous snapshot replaced by another one', async () => {
    const first = await snapshot({ inline });
    const replaced = path.join(first.path, 'docs', 'plan.md');
    await fs.rm(replaced);
    await fs.writeFile(replaced, '# not the plan, longer\n');
    await fs.utimes(replaced, OLD_TIME, OLD_TIME);

    const second = await snapshot({ inline });

    expect(await fs.readFile(path.join(second.path, 'docs', 'plan.md'), 'utf8')).toBe('# plan\n');
    expect(await describeTree(second.path)).toEqual(await describeTree(source));
  });
});
