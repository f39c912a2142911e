import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/helpers/environment.js';
import { excludeMatcher } from '../src/copy/exclude-matcher.js';
import { entryPathBytes, manifestPathOf } from '../src/copy/manifest-file.js';
import {
  copyTree,
  createSnapshot,
  measureTree,
  removeTree,
  type SnapshotRequest,
  type SnapshotResult,
} from '../src/copy/index.js';
import type { Attempt } from '../src/jobs/attempt-lifecycle.js';
import { backupRunner } from '../src/jobs/backup-runner.js';

// The forms the contract names, one of each.
const PATTERNS = ['node_modules/', '*.tmp', '/cache', '**/build', '!keep.tmp'];
const LONG_AGO = new Date('2001-02-03T04:05:06Z');

let tmp: string;
let source: string;
let backupRoot: string;
let jobs = 0;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'coffer-exclude-'));
  source = path.join(tmp, 'source');
  backupRoot = path.join(tmp, 'backups');
  await fsp.mkdir(source);
});

afterEach(async () => {
  await removeTree(tmp);
});

/** Writes `files` (relative path → contents) below `root`, making their folders. */
async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [relative, contents] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(root, relative)), { recursive: true });
    await fsp.writeFile(path.join(root, relative), contents);
  }
}

/** One snapshot job of `source` into `alpha`, each a second after the one before. */
async function snapshot(overrides: Partial<SnapshotRequest> = {}): Promise<SnapshotResult> {
  jobs += 1;
  return createSnapshot({
    source,
    backupRoot,
    destination: 'alpha',
    jobId: `job-${jobs}`,
    startedAt: new Date(Date.UTC(2026, 10, 27, 19, 0, jobs)),
    ...overrides,
  });
}

/** Every entry below `root`, relative, folders with a trailing `/`, sorted. */
async function entriesBelow(root: string): Promise<string[]> {
  const entries = await fsp.readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .map((entry) => {
      const relative = path.relative(root, path.join(entry.parentPath, entry.name));
      return entry.isDirectory() ? `${relative}/` : relative;
    })
    .sort();
}

async function manifestOf(snapshotPath: string): Promise<ManifestEntry[]> {
  const text = await fsp.readFile(manifestPathOf(snapshotPath), 'utf8');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ManifestEntry);
}

/** The manifest's entries as `entriesBelow` lists them. */
function manifestPaths(entries: readonly ManifestEntry[]): string[] {
  return entries.map((entry) => (entry.type === 'dir' ? `${entry.path}/` : entry.path)).sort();
}

/** `dir/name` as bytes, so that a name may hold bytes that are not UTF-8 (given here as latin1 text). */
function bytePath(dir: string | Buffer, latin1Name: string): Buffer {
  return Buffer.concat([Buffer.from(dir), Buffer.from('/'), Buffer.from(latin1Name, 'latin1')]);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('exclude patterns in a backup', () => {
  it('leaves out what each pattern form matches, and keeps everything else', async () => {
    await writeFiles(source, {
      'node_modules/pkg/index.js': 'dependency',
      'app/node_modules/lib/lib.js': 'nested dependency',
      // `node_modules/` names folders only.
      'docs/node_modules': 'a file named like the folder',
      'a.tmp': 'scratch',
      'docs/b.tmp': 'scratch, deeper',
      'keep.tmp': 'kept by the negation',
      'docs/keep.tmp': 'kept by the negation, deeper',
      // Matching is case-sensitive, as git is on Linux.
      'REPORT.TMP': 'not *.tmp',
      'cache/blob': 'top-level cache',
      'docs/cache/blob': '/cache is anchored to the source folder',
      'build/out.js': 'top-level build',
      'src/deep/build/out.js': 'nested build',
      'src/main.ts': 'code',
    });

    const result = await snapshot({ exclude: PATTERNS });

    const kept = [
      'REPORT.TMP',
      'app/',
      'docs/',
      'docs/cache/',
      'docs/cache/blob',
      'docs/keep.tmp',
      'docs/node_modules',
      'keep.tmp',
      'src/',
      'src/deep/',
      'src/main.ts',
    ];
    expect(await entriesBelow(result.path)).toEqual(kept);
    expect(manifestPaths(await manifestOf(result.path))).toEqual(kept);
    // node_modules, app/node_modules, a.tmp, docs/b.tmp, cache, build, src/deep/build.
    expect(result).toMatchObject({ excluded: 7, files: 6, dirs: 5 });
  });

  it('cannot bring back a file of an excluded folder, but can one of a folder whose contents are excluded', async () => {
    await writeFiles(source, {
      'logs/keep.log': 'wanted',
      'logs/noise.log': 'unwanted',
      'runs/keep.log': 'wanted',
      'runs/noise.log': 'unwanted',
    });

    const result = await snapshot({ exclude: ['logs/', '!logs/keep.log', 'runs/*', '!runs/keep.log'] });

    // As git: `logs/` is never entered, so nothing in it can be re-included; `runs/*` excludes
    // entries one by one, and the negation takes one of them back.
    expect(await entriesBelow(result.path)).toEqual(['runs/', 'runs/keep.log']);
    expect(result.excluded).toBe(2);
  });

  it('counts an excluded FIFO as excluded rather than skipped', async () => {
    execFileSync('mkfifo', [path.join(source, 'pipe.tmp'), path.join(source, 'other-pipe')]);
    await writeFiles(source, { 'a.txt': 'a' });

    const result = await copyTree(source, path.join(tmp, 'copy'), { exclude: ['*.tmp'] });

    expect(result).toMatchObject({ files: 1, skipped: 1, excluded: 1 });
  });

  it('reports excluded: 0 when patterns match nothing, and no excluded count without patterns', async () => {
    await writeFiles(source, { 'a.txt': 'a', 'sub/b.txt': 'b' });

    const withPatterns = await snapshot({ exclude: ['*.tmp', 'node_modules/'] });
    const without = await snapshot({ incremental: false });

    expect(withPatterns).toMatchObject({ files: 2, dirs: 1, excluded: 0 });
    expect(without).toMatchObject({ files: 2, dirs: 1 });
    expect(without).not.toHaveProperty('excluded');
  });

  it('applies the patterns in folders handed to other copy threads', async () => {
    const files: Record<string, string> = {};
    for (let folder = 0; folder < 40; folder += 1) {
      files[`f${folder}/data.txt`] = `data ${folder}`;
      files[`f${folder}/scratch.tmp`] = 'scratch';
      files[`f${folder}/inner/node_modules/dep.js`] = 'dependency';
    }
    await writeFiles(source, files);

    const result = await snapshot({ exclude: PATTERNS, threads: 4 });

    expect(result).toMatchObject({ files: 40, excluded: 80 });
    const copied = await entriesBelow(result.path);
    expect(copied.filter((entry) => entry.endsWith('.tmp') || entry.includes('node_modules'))).toEqual([]);
    expect(copied.filter((entry) => entry.endsWith('/data.txt'))).toHaveLength(40);
  });

  it('copies a file source as it is, whatever the patterns say: they apply below a folder source', async () => {
    const file = path.join(source, 'dump.tmp');
    await fsp.writeFile(file, 'the file asked for');

    const result = await snapshot({ source: file, exclude: ['*.tmp', 'dump.tmp'] });

    expect(await fsp.readdir(result.path)).toEqual(['dump.tmp']);
    expect(result).toMatchObject({ files: 1, excluded: 0 });
    expect(await measureTree(file, undefined, { exclude: ['*.tmp'] })).toEqual({ files: 1, bytes: 18 });
  });

  it('matches names that are not UTF-8 by their display text, where each bad byte is U+FFFD', async () => {
    fs.writeFileSync(bytePath(source, 'caf\xe9.tmp'), 'wildcard match');
    fs.writeFileSync(bytePath(source, 'caf\xe9.txt'), 'kept');
    fs.writeFileSync(bytePath(source, 'r\xe9sum\xe9.log'), 'literal match');
    const folder = bytePath(source, 'd\xe9p\xf4t');
    fs.mkdirSync(folder);
    fs.writeFileSync(bytePath(folder, 'inside'), 'in an excluded folder');

    const result = await snapshot({ exclude: ['*.tmp', 'r\uFFFDsum\uFFFD.log', 'd?p?t/'] });

    expect(result).toMatchObject({ files: 1, excluded: 3 });
    const names = fs.readdirSync(result.path, { encoding: 'buffer' }).map((name) => name.toString('latin1'));
    expect(names).toEqual(['caf\xe9.txt']);
    expect((await manifestOf(result.path)).map((entry) => entryPathBytes(entry).toString('latin1'))).toEqual([
      'caf\xe9.txt',
    ]);
  });
});

describe('an excluded folder is never walked', () => {
  it('leaves it out of the progress totals', async () => {
    const files: Record<string, string> = { 'app.js': '12345' };
    for (let index = 0; index < 50; index += 1) files[`node_modules/p${index}/index.js`] = 'dependency';
    await writeFiles(source, files);

    expect(await measureTree(source, undefined, { exclude: ['node_modules/'] })).toEqual({ files: 1, bytes: 5 });
    expect(await measureTree(source, undefined, { exclude: ['*.js', '!app.js', 'p1*/'] })).toEqual({
      files: 1,
      bytes: 5,
    });
    expect(await measureTree(source)).toEqual({ files: 51, bytes: 5 + 50 * 'dependency'.length });
  });

  // Unreadable folders prove nothing when the tests run as root, who reads them anyway. A folder's
  // access time does: listing it sets it (relatime updates an access time older than a day), and
  // nothing else this test does touches it. A folder of the same shape that is copied shows that
  // this file system records the reads; where it does not (noatime), the test says so and skips.
  it('neither the copy nor the totals walk reads it (its access time stays)', async ({ skip }) => {
    await writeFiles(source, {
      'node_modules/pkg/index.js': 'dependency',
      'control/pkg/index.js': 'dependency',
    });
    const watched = ['node_modules', 'node_modules/pkg', 'node_modules/pkg/index.js', 'control', 'control/pkg'];
    for (const entry of watched) {
      const { mtime } = await fsp.stat(path.join(source, entry));
      await fsp.utimes(path.join(source, entry), LONG_AGO, mtime);
    }
    const accessed = async (entry: string) => (await fsp.stat(path.join(source, entry))).atimeMs;

    const [totals, result] = await Promise.all([
      measureTree(source, undefined, { exclude: ['node_modules/'] }),
      snapshot({ exclude: ['node_modules/'] }),
    ]);

    expect(totals).toEqual({ files: 1, bytes: 'dependency'.length });
    expect(result).toMatchObject({ files: 1, excluded: 1 });
    if ((await accessed('control/pkg')) === LONG_AGO.getTime())
      skip('this file system does not record reads (noatime)');
    for (const entry of ['node_modules', 'node_modules/pkg', 'node_modules/pkg/index.js']) {
      expect(await accessed(entry), `access time of ${entry}`).toBe(LONG_AGO.getTime());
    }
  });
});

describe('exclude patterns with incremental snapshots', () => {
  it('copies what was excluded before, leaves out what is excluded now, and still links the rest', async () => {
    await writeFiles(source, {
      'app.log': 'log line\n',
      'scratch.tmp': 'scratch\n',
      'cache/blob': 'cached\n',
      'src/main.ts': 'code\n',
      'README.md': 'readme\n',
    });
    const first = await snapshot({ exclude: ['*.log', '/cache'] });

    const second = await snapshot({ exclude: ['*.tmp'] });

    expect(await entriesBelow(first.path)).toEqual(['README.md', 'scratch.tmp', 'src/', 'src/main.ts']);
    expect(await entriesBelow(second.path)).toEqual([
      'README.md',
      'app.log',
      'cache/',
      'cache/blob',
      'src/',
      'src/main.ts',
    ]);
    expect(second).toMatchObject({ files: 4, filesLinked: 2, excluded: 1 });
    for (const kept of ['README.md', 'src/main.ts']) {
      const [before, after] = await Promise.all(
        [first.path, second.path].map((root) => fsp.stat(path.join(root, kept))),
      );
      expect(after?.ino, `${kept} is linked from the first snapshot`).toBe(before?.ino);
    }
    // Read now, since the first snapshot's manifest has nothing to lend them.
    const manifest = await manifestOf(second.path);
    expect(manifest.find((entry) => entry.path === 'app.log')?.sha256).toBe(sha256('log line\n'));
    expect(manifest.find((entry) => entry.path === 'cache/blob')?.sha256).toBe(sha256('cached\n'));
    expect(manifest.find((entry) => entry.path === 'README.md')?.sha256).toBe(sha256('readme\n'));
  });
});

describe('a backup job with exclude patterns', () => {
  it('reports excluded in its result and leaves excluded files out of its progress totals', async () => {
    const files: Record<string, string> = { 'app.js': '12345' };
    for (let index = 0; index < 20; index += 1) files[`node_modules/p${index}.js`] = 'dependency';
    await writeFiles(source, files);
    const totals: Array<[number, number]> = [];
    const runner = backupRunner({ backupRoot, sourceRoots: [tmp], copyConcurrency: 2 });
    const attempt = (exclude?: string[]): Attempt<'backup'> => ({
      jobId: `runner-${(jobs += 1)}`,
      number: 1,
      tag: 'a1',
      data: { source, destination: 'runner', ...(exclude ? { exclude } : {}) },
      startedAt: new Date(Date.UTC(2026, 10, 28, 0, 0, jobs)),
      logger: pino({ level: 'silent' }),
      signal: undefined,
      stillOwned: async () => true,
      progress: {
        advanced: () => undefined,
        measured: (filesTotal, bytesTotal) => totals.push([filesTotal, bytesTotal]),
        report: () => undefined,
      },
    });

    const { result } = await runner.run(attempt(['node_modules/']));

    expect(result).toMatchObject({ files: 1, bytes: 5, excluded: 1 });
    expect(await waitFor(async () => totals[0], 10_000, 'the progress totals')).toEqual([1, 5]);
    const { result: plain } = await runner.run(attempt());
    expect(plain).not.toHaveProperty('excluded');

    // Queued around the API's check: refused for good before any folder is read.
    const refused = runner.run(attempt(['**/a/**/b']));
    await expect(refused).rejects.toMatchObject({ code: 'INVALID_JOB', permanent: true });
    await expect(refused).rejects.toThrow(/2 "\*\*" segments before its last one/);
  });
});

describe('ExcludeMatcher', () => {
  it('answers the same for trees far larger than the answers it keeps', () => {
    const matcher = excludeMatcher(['*.tmp', 'logs/*', '!logs/keep.log']);
    const answers = new Set<string>();
    for (let folder = 0; folder < 300; folder += 1) {
      for (let file = 0; file < 100; file += 1) {
        const name = `d${folder}/${file % 2 === 0 ? 'a.tmp' : `f${file}.txt`}`;
        answers.add(`${name} ${String(matcher?.excludes(Buffer.from(name), false))}`);
      }
      answers.add(`logs/keep.log ${String(matcher?.excludes(Buffer.from('logs/keep.log'), false))}`);
      answers.add(`logs/other.log ${String(matcher?.excludes(Buffer.from('logs/other.log'), false))}`);
    }
    expect([...answers].filter((answer) => answer.startsWith('logs/'))).toEqual([
      'logs/keep.log false',
      'logs/other.log true',
    ]);
    expect([...answers].filter((answer) => answer.endsWith('.tmp false') || answer.endsWith('.txt true'))).toEqual([]);
  });

  it('has nothing to match without patterns', () => {
    expect(excludeMatcher(undefined)).toBeUndefined();
    expect(excludeMatcher([])).toBeUndefined();
  });
});
