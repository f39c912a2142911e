import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JobFailure } from '@coffer/shared';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AttemptSuperseded,
  createSnapshot,
  removeTree,
  snapshotName,
  type SnapshotRequest,
} from '../src/copy/index.js';

const STARTED_AT = new Date('2026-11-27T19:10:45.123Z');
const isRoot = process.getuid?.() === 0;

/** Each job runs on the worker's own thread when small (the default), or always on copy threads. */
const MODES = [
  ['inline', undefined],
  ['on threads', false],
] as const;
let inline: SnapshotRequest['inline'];

let tmp: string;
let source: string;
let backupRoot: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-copy-'));
  source = path.join(tmp, 'source');
  backupRoot = path.join(tmp, 'backups');
  await fs.mkdir(path.join(source, 'docs', 'empty'), { recursive: true });
  await fs.writeFile(path.join(source, 'docs', 'plan.md'), '# plan\n');
  await fs.writeFile(path.join(source, 'notes.txt'), 'remember\n');
  await fs.symlink('docs/plan.md', path.join(source, 'plan-link'));
  await fs.mkdir(path.join(source, 'frozen'));
  await fs.writeFile(path.join(source, 'frozen', 'ice.txt'), 'cold');
  await fs.chmod(path.join(source, 'frozen'), 0o555);
});

afterEach(async () => {
  await removeTree(tmp);
});

function request(overrides: Partial<SnapshotRequest> = {}): SnapshotRequest {
  return {
    source,
    backupRoot,
    destination: 'projects/alpha',
    jobId: 'job-42',
    startedAt: STARTED_AT,
    inline,
    ...overrides,
  };
}

function expectSameContents(a: string, b: string): void {
  const diff = spawnSync('diff', ['-r', '--no-dereference', a, b], { encoding: 'utf8' });
  expect(diff.stdout).toBe('');
  expect(diff.status).toBe(0);
}

async function manyFiles(root: string, count: number): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  await Promise.all(Array.from({ length: count }, (_, i) => fs.writeFile(path.join(root, `f${i}`), String(i))));
}

describe('snapshotName', () => {
  it('is the UTC start time, sortable and without colons, then the job id', () => {
    expect(snapshotName(STARTED_AT, 'job-42')).toBe('20261127T191045.123Z-job-42');
    expect(snapshotName(new Date('2026-01-02T03:04:05.006+02:00'), '7')).toBe('20260102T010405.006Z-7');
  });
});

describe.each(MODES)('createSnapshot (%s)', (_mode, limits) => {
  beforeEach(() => {
    inline = limits;
  });
  afterEach(() => {
    inline = undefined;
  });

  it('writes the snapshot under <root>/<destination>/<timestamp>-<job id>, and nothing else', async () => {
    const result = await createSnapshot(request());

    const folder = path.join(backupRoot, 'projects', 'alpha');
    expect(result.path).toBe(path.join(folder, '20261127T191045.123Z-job-42'));
    expect(path.basename(result.path)).toMatch(/^\d{8}T\d{6}\.\d{3}Z-job-42$/);
    // Beside the snapshot only Coffer's record of it and its manifest, in a hidden folder.
    expect((await fs.readdir(folder)).sort()).toEqual(['.coffer', path.basename(result.path)]);
    expect((await fs.readdir(path.join(folder, '.coffer'))).sort()).toEqual([
      `${path.basename(result.path)}.json`,
      `${path.basename(result.path)}.manifest.ndjson`,
    ]);
    expectSameContents(source, result.path);
    expect(result).toMatchObject({ files: 3, bytes: 7 + 9 + 4, dirs: 3, links: 1, skipped: 0, filesLinked: 0 });
    expect(result.warnings).toEqual({ count: 0, items: [] });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    expect((await fs.stat(path.join(result.path, 'frozen'))).mode & 0o777).toBe(0o555);
  });

  it('holds a file source under its own name', async () => {
    const result = await createSnapshot(request({ source: path.join(source, 'notes.txt'), destination: 'notes' }));

    expect(await fs.readdir(result.path)).toEqual(['notes.txt']);
    expect(await fs.readFile(path.join(result.path, 'notes.txt'), 'utf8')).toBe('remember\n');
    expect(result).toMatchObject({ files: 1, bytes: 9, dirs: 0, links: 0, skipped: 0 });
  });

  it('removes what a crashed attempt of the same job left, and keeps other snapshots', async () => {
    const folder = path.join(backupRoot, 'projects', 'alpha');
    const partial = path.join(folder, '.partial-job-42+an-earlier-attempt');
    const earlier = path.join(folder, '20261127T180000.000Z-job-42');
    const otherJobs = ['20261127T170000.000Z-7', '20261127T170000.000Z-x-job-42', '20261127T170000.000Z-job-420'];
    await fs.mkdir(path.join(partial, 'half'), { recursive: true });
    await fs.writeFile(path.join(partial, 'half', 'junk'), 'junk');
    await fs.mkdir(path.join(earlier, 'locked'), { recursive: true });
    await fs.writeFile(path.join(earlier, 'stale.txt'), 'stale');
    await fs.chmod(path.join(earlier, 'locked'), 0o555);
    for (const name of otherJobs) await fs.mkdir(path.join(folder, name));

    const result = await createSnapshot(request());

    expect((await fs.readdir(folder)).sort()).toEqual(['.coffer', ...otherJobs, path.basename(result.path)].sort());
    expectSameContents(source, result.path);
  });

  it('fails permanently with SOURCE_NOT_FOUND when the source is gone, leaving no folder behind', async () => {
    const missing = path.join(tmp, 'vanished');

    const failure = await createSnapshot(request({ source: missing })).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(JobFailure);
    expect(failure).toMatchObject({ code: 'SOURCE_NOT_FOUND', permanent: true });
    expect((failure as JobFailure).message).toContain(missing);
    expect(await fs.readdir(path.join(backupRoot, 'projects', 'alpha'))).toEqual([]);
  });

  it('removes the partial folder and rejects with the abort reason when cancelled mid-copy', async () => {
    await manyFiles(path.join(source, 'bulk'), 5000);
    const controller = new AbortController();
    const reason = new Error('cancelled');

    const snapshot = createSnapshot(
      request({
        signal: controller.signal,
        // The first report comes while copying (or, on a fast machine, with the final counts).
        onProgress: () => controller.abort(reason),
      }),
    );

    await expect(snapshot).rejects.toBe(reason);
    expect(await fs.readdir(path.join(backupRoot, 'projects', 'alpha'))).toEqual([]);
  });

  it('removes the partial folder and rethrows unchanged an error it has no code for', async () => {
    const broken = new Error('progress sink broke');

    const snapshot = createSnapshot(
      request({
        onProgress: () => {
          throw broken;
        },
      }),
    );

    await expect(snapshot).rejects.toBe(broken);
    expect(await fs.readdir(path.join(backupRoot, 'projects', 'alpha'))).toEqual([]);
  });

  it('fails with DESTINATION_NOT_WRITABLE, retryable, when the backup root cannot be created', async () => {
    await fs.writeFile(path.join(tmp, 'afile'), 'not a folder');

    const failure = await createSnapshot(request({ backupRoot: path.join(tmp, 'afile', 'backups') })).catch(
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(JobFailure);
    expect(failure).toMatchObject({ code: 'DESTINATION_NOT_WRITABLE', permanent: false });
    expect((failure as JobFailure).message).toMatch(/ENOTDIR/);
  });

  it.skipIf(isRoot)('fails with DESTINATION_NOT_WRITABLE when the backup root denies writing', async () => {
    await fs.mkdir(backupRoot, { mode: 0o555 });

    await expect(createSnapshot(request())).rejects.toMatchObject({
      code: 'DESTINATION_NOT_WRITABLE',
      permanent: false,
    });
  });

  it.skipIf(isRoot)('fails permanently with SOURCE_UNREADABLE when a source folder denies reading', async () => {
    await fs.chmod(path.join(source, 'docs'), 0o000);

    await expect(createSnapshot(request())).rejects.toMatchObject({ code: 'SOURCE_UNREADABLE', permanent: true });
    await fs.chmod(path.join(source, 'docs'), 0o755);
    expect(await fs.readdir(path.join(backupRoot, 'projects', 'alpha'))).toEqual([]);
  });

  it('refuses a job id that cannot name a folder', async () => {
    await expect(createSnapshot(request({ jobId: '../escape' }))).rejects.toMatchObject({
      code: 'INVALID_JOB',
      permanent: true,
    });
    await expect(fs.access(backupRoot)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('createSnapshot with two attempts of one job', () => {
  const folder = () => path.join(backupRoot, 'projects', 'alpha');

  it('gives the final name only to an attempt that still owns the job', async () => {
    const failure = await createSnapshot(request({ attempt: 'a', stillOwned: async () => false })).catch(
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(AttemptSuperseded);
    expect(await fs.readdir(folder())).toEqual([]);
  });

  it('takes its snapshot back when it lost the job while renaming', async () => {
    let checks = 0;
    const failure = await createSnapshot(
      request({
        attempt: 'a',
        stillOwned: async () => {
          checks += 1;
          return checks === 1;
        },
      }),
    ).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(AttemptSuperseded);
    expect(checks).toBe(2);
    expect((await fs.readdir(folder())).filter((name) => name !== '.coffer')).toEqual([]);
    expect(await fs.readdir(path.join(folder(), '.coffer'))).toEqual([]);
  });

  it('never lets a superseded attempt touch the copy of the attempt that owns the job', async () => {
    await manyFiles(path.join(source, 'bulk'), 3000);
    let owner = 'a';
    // Attempt a is paused past its lock, b takes the job over and starts while a still copies.
    const first = createSnapshot(
      request({
        attempt: 'a',
        threads: 1,
        startedAt: new Date(STARTED_AT.getTime() - 1000),
        stillOwned: async () => owner === 'a',
      }),
    ).catch((error: unknown) => error);
    owner = 'b';
    const second = createSnapshot(request({ attempt: 'b', threads: 1, stillOwned: async () => owner === 'b' }));

    const [lost, won] = await Promise.all([first, second]);

    expect(lost).toBeInstanceOf(Error);
    expectSameContents(source, won.path);
    expect(won.files).toBe(3003);
    expect((await fs.readdir(folder())).sort()).toEqual(['.coffer', path.basename(won.path)]);
  });
});

describe('createSnapshot when its process dies while removing a snapshot', () => {
  const folder = () => path.join(backupRoot, 'projects', 'alpha');

  /** Lets `fs.rm` through but for its `nth` call on a path naming `name`: there the process "dies" (the call fails). */
  function dieAtRemoval(name: string, nth: number): void {
    const rm = fs.rm.bind(fs);
    let calls = 0;
    vi.spyOn(fs, 'rm').mockImplementation(async (target, options) => {
      if (String(target).includes(name) && (calls += 1) === nth) throw new Error('killed here');
      return rm(target, options);
    });
  }

  /** Coffer's records in the folder, and the snapshots they should describe, a record and a manifest each. */
  async function recordsAndSnapshots(): Promise<{ records: string[]; snapshots: string[] }> {
    const entries = await fs.readdir(folder());
    const records = entries.includes('.coffer') ? await fs.readdir(path.join(folder(), '.coffer')) : [];
    const snapshots = entries
      .filter((entry) => entry !== '.coffer')
      .flatMap((entry) => [`${entry}.json`, `${entry}.manifest.ndjson`]);
    return { records: records.sort(), snapshots: snapshots.sort() };
  }

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each([1, 2])(
    'leaves no record without its snapshot when a re-run dies at step %i of removing the snapshot of an earlier attempt',
    async (step) => {
      const plain = path.join(tmp, 'plain');
      await fs.mkdir(plain);
      await fs.writeFile(path.join(plain, 'a.txt'), 'a');
      const earlier = await createSnapshot(request({ source: plain, attempt: 'a', startedAt: new Date(0) }));
      dieAtRemoval(path.basename(earlier.path), step);

      await expect(createSnapshot(request({ source: plain, attempt: 'b' }))).rejects.toThrow('killed here');
      vi.restoreAllMocks();
      const last = await createSnapshot(request({ source: plain, attempt: 'c' }));

      const { records, snapshots } = await recordsAndSnapshots();
      expect(records).toEqual(snapshots);
      expect(snapshots).toEqual([`${path.basename(last.path)}.json`, `${path.basename(last.path)}.manifest.ndjson`]);
    },
  );

  it.each([1, 2])(
    'leaves no record without its snapshot when an attempt that lost the job dies at step %i of taking it back',
    async (step) => {
      let checks = 0;
      dieAtRemoval(snapshotName(STARTED_AT, 'job-42'), step);

      // What it rejects with does not matter: a process that died there says nothing more.
      await expect(
        createSnapshot(request({ attempt: 'a', stillOwned: async () => (checks += 1) === 1 })),
      ).rejects.toThrow();
      expect(checks).toBe(2);

      const { records, snapshots } = await recordsAndSnapshots();
      for (const record of records) expect(snapshots).toContain(record);
    },
  );
});

describe('createSnapshot destinations', () => {
  it('refuses a destination that passes through a link, writing nothing where it points', async () => {
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside);
    await fs.mkdir(backupRoot);
    await fs.symlink(outside, path.join(backupRoot, 'esc'));

    const failure = await createSnapshot(request({ destination: 'esc/inner' })).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(JobFailure);
    expect(failure).toMatchObject({ code: 'INVALID_DESTINATION', permanent: true });
    expect((failure as JobFailure).message).toContain('link');
    expect(await fs.readdir(outside)).toEqual([]);
  });

  it('refuses a destination through a link that an earlier snapshot holds', async () => {
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside);
    await fs.symlink(outside, path.join(source, 'esc'));
    const first = await createSnapshot(request({ destination: 'dest' }));

    const failure = await createSnapshot(
      request({ jobId: 'job-43', destination: `dest/${path.basename(first.path)}/esc` }),
    ).catch((error: unknown) => error);

    expect(failure).toMatchObject({ code: 'INVALID_DESTINATION', permanent: true });
    expect(await fs.readdir(outside)).toEqual([]);
  });

  it('fails with DESTINATION_NOT_WRITABLE, retryable, when a file stands where a destination folder goes', async () => {
    await fs.mkdir(backupRoot);
    await fs.writeFile(path.join(backupRoot, 'plain'), 'x');

    await expect(createSnapshot(request({ destination: 'plain/inner' }))).rejects.toMatchObject({
      code: 'DESTINATION_NOT_WRITABLE',
      permanent: false,
    });
  });
});
