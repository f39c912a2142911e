import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ManifestEntry } from '@coffer/shared/job-contract';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { entryPathBytes, linkTargetBytes, manifestPathOf } from '../src/copy/manifest-file.js';
import { copyTree, createSnapshot, removeTree, type CopyCounts, type SnapshotRequest } from '../src/copy/index.js';

const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');
// A name that is not valid UTF-8: the manifest must keep its bytes.
const LATIN1_NAME = Buffer.from('caf\xe9.txt', 'latin1');
const MIB = 1024 * 1024;

let tmp: string;
let source: string;
let backupRoot: string;
let jobs = 0;

/** Each job runs on the worker's own thread when small (the default), or always on copy threads. */
const MODES = [
  ['inline', undefined],
  ['on threads', false],
] as const;
let inline: SnapshotRequest['inline'];

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'coffer-manifest-'));
  source = path.join(tmp, 'source');
  backupRoot = path.join(tmp, 'backups');
});

afterEach(async () => {
  await removeTree(tmp);
});

/** One snapshot job of `source` into `alpha`, each a second after the one before. */
function snapshot(overrides: Partial<SnapshotRequest> = {}) {
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

/** Every kind of entry a manifest describes, hard links and holes included. */
async function buildTree(): Promise<void> {
  await fsp.mkdir(path.join(source, 'docs', 'empty'), { recursive: true });
  await fsp.writeFile(path.join(source, 'docs', 'plan.md'), '# plan\n');
  await fsp.writeFile(path.join(source, 'empty.bin'), '');
  await fsp.writeFile(path.join(source, 'random.bin'), randomBytes(3 * MIB + 17));
  await fsp.writeFile(path.join(source, 'tool.sh'), '#!/bin/sh\n', { mode: 0o755 });
  await fsp.chmod(path.join(source, 'tool.sh'), 0o755);
  fs.writeFileSync(Buffer.concat([Buffer.from(`${source}/docs/`), LATIN1_NAME]), 'bonjour');
  await fsp.link(path.join(source, 'docs', 'plan.md'), path.join(source, 'plan-again.md'));
  await fsp.symlink('docs/plan.md', path.join(source, 'plan-link'));
  fs.symlinkSync(LATIN1_NAME, path.join(source, 'odd-link'));
  // Data between holes, and a file of nothing but a hole (hashed as zeros, never read).
  execFileSync('truncate', ['-s', '8M', path.join(source, 'sparse.bin')]);
  execFileSync('dd', ['if=/dev/urandom', `of=${source}/sparse.bin`, 'bs=4096', 'seek=100', 'count=3', 'conv=notrunc'], {
    stdio: 'ignore',
  });
  execFileSync('truncate', ['-s', '5M', path.join(source, 'hole.bin')]);
  await fsp.utimes(path.join(source, 'docs', 'plan.md'), OLD_TIME, OLD_TIME);
}

async function manifestOf(snapshotPath: string): Promise<ManifestEntry[]> {
  const text = await fsp.readFile(manifestPathOf(snapshotPath), 'utf8');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ManifestEntry);
}

/** Each file below `root` (its path relative to `root`, as latin1 text of its bytes) and its SHA-256, by `sha256sum`. */
function sha256sums(root: string): Map<string, string> {
  const listing = spawnSync('sh', ['-c', 'find . -type f -print0 | xargs -0 -r sha256sum -z'], { cwd: root });
  expect(listing.status).toBe(0);
  const sums = new Map<string, string>();
  for (const line of listing.stdout.toString('latin1').split('\0')) {
    if (line === '') continue;
    sums.set(line.slice(66).replace(/^\.\//, ''), line.slice(0, 64));
  }
  return sums;
}

/** Every entry below `root`, as latin1 text of its relative path's bytes. */
function entriesBelow(root: Buffer, relative: Buffer = Buffer.alloc(0)): string[] {
  const folder = relative.length === 0 ? root : Buffer.concat([root, Buffer.from('/'), relative]);
  const found: string[] = [];
  for (const entry of fs.readdirSync(folder, { encoding: 'buffer', withFileTypes: true })) {
    const name = entry.name as unknown as Buffer;
    const child = relative.length === 0 ? name : Buffer.concat([relative, Buffer.from('/'), name]);
    found.push(child.toString('latin1'));
    if (entry.isDirectory()) found.push(...entriesBelow(root, child));
  }
  return found;
}

function key(entry: ManifestEntry): string {
  return entryPathBytes(entry).toString('latin1');
}

function checksumOf(entries: ManifestEntry[], relative: string): string | undefined {
  return entries.find((entry) => entry.path === relative)?.sha256;
}

/** Asserts that each line matches the stat of the entry it names, and each file `sha256sum`, one line per entry. */
function expectManifestMatches(snapshotPath: string, entries: ManifestEntry[]): void {
  const sums = sha256sums(snapshotPath);
  expect(entries.map(key).sort()).toEqual(entriesBelow(Buffer.from(snapshotPath)).sort());
  for (const entry of entries) {
    const bytes = entryPathBytes(entry);
    expect(entry.path).toBe(bytes.toString());
    const stats = fs.lstatSync(Buffer.concat([Buffer.from(`${snapshotPath}/`), bytes]));
    const type = stats.isFile() ? 'file' : stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'link' : 'other';
    expect(entry.type, entry.path).toBe(type);
    expect(entry.mode, entry.path).toBe(stats.mode & 0o7777);
    expect(entry.mtime, entry.path).toBe(stats.mtimeMs);
    expect(entry.size, entry.path).toBe(type === 'dir' ? 0 : stats.size);
    if (type === 'file') expect(entry.sha256, entry.path).toBe(sums.get(key(entry)));
    else expect(entry.sha256, entry.path).toBeUndefined();
    if (type === 'link') {
      const target = fs.readlinkSync(Buffer.concat([Buffer.from(`${snapshotPath}/`), bytes]), { encoding: 'buffer' });
      expect(linkTargetBytes(entry).equals(target), entry.path).toBe(true);
    }
  }
}

describe.each(MODES)('a snapshot manifest (%s)', (_mode, limits) => {
  beforeEach(() => {
    inline = limits;
  });
  afterEach(() => {
    inline = undefined;
  });

  it('has a line per entry below the root that matches stat and sha256sum, and its own SHA-256 as reported', async () => {
    await buildTree();

    const result = await snapshot();
    const entries = await manifestOf(result.path);

    expectManifestMatches(result.path, entries);
    const manifestBytes = await fsp.readFile(manifestPathOf(result.path));
    expect(createHash('sha256').update(manifestBytes).digest('hex')).toBe(result.manifestSha256);
    // Spot checks of the fields' meaning.
    const odd = entries.find((entry) => entry.pathBase64 !== undefined);
    expect(odd).toMatchObject({
      type: 'file',
      size: 7,
      pathBase64: Buffer.from('docs/caf\xe9.txt', 'latin1').toString('base64'),
    });
    expect(entries.find((entry) => entry.path === 'odd-link')).toMatchObject({
      type: 'link',
      size: LATIN1_NAME.length,
      targetBase64: LATIN1_NAME.toString('base64'),
    });
    expect(entries.find((entry) => entry.path === 'docs/empty')).toMatchObject({ type: 'dir', size: 0 });
    expect(entries.find((entry) => entry.path === 'docs/plan.md')).toMatchObject({ mtime: OLD_TIME.getTime() });
    expect(checksumOf(entries, 'plan-again.md')).toBe(checksumOf(entries, 'docs/plan.md'));
    const zeros = createHash('sha256')
      .update(Buffer.alloc(5 * MIB))
      .digest('hex');
    expect(checksumOf(entries, 'hole.bin')).toBe(zeros);
    // Holes stay holes: the copy of the hole holds no blocks.
    expect(fs.statSync(path.join(result.path, 'hole.bin')).blocks).toBe(0);
  });

  it('checks with `sha256sum -c` run in the snapshot folder', async () => {
    await buildTree();

    const result = await snapshot();
    const lines = (await manifestOf(result.path))
      .filter((entry) => entry.type === 'file')
      .map((entry) => Buffer.concat([Buffer.from(`${entry.sha256}  `), entryPathBytes(entry), Buffer.from('\n')]));
    const list = path.join(tmp, 'SHA256SUMS');
    await fsp.writeFile(list, Buffer.concat(lines));

    const check = spawnSync('sha256sum', ['-c', '--strict', list], { cwd: result.path, encoding: 'utf8' });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('holds a file source under its own name', async () => {
    await fsp.mkdir(source);
    await fsp.writeFile(path.join(source, 'notes.txt'), 'remember\n');

    const result = await snapshot({ source: path.join(source, 'notes.txt') });

    expect(await manifestOf(result.path)).toEqual([
      expect.objectContaining({ path: 'notes.txt', type: 'file', size: 9, sha256: sha256Hex('remember\n') }),
    ]);
  });

  it('marks a file holding no data over 1 GiB as noData, without a checksum, and copies it by size', async () => {
    await fsp.mkdir(source);
    execFileSync('truncate', ['-s', '3G', path.join(source, 'huge.bin')]);

    const result = await snapshot();

    const [entry] = await manifestOf(result.path);
    expect(entry).toEqual(expect.objectContaining({ path: 'huge.bin', size: 3 * 2 ** 30, noData: true }));
    expect(entry?.sha256).toBeUndefined();
    expect(fs.statSync(path.join(result.path, 'huge.bin')).blocks).toBe(0);
  });

  it('lands beside the snapshot, never inside it, and leaves no scratch files', async () => {
    await buildTree();

    const result = await snapshot();

    const folder = path.dirname(result.path);
    expect((await fsp.readdir(folder)).sort()).toEqual(['.coffer', path.basename(result.path)]);
    expect(spawnSync('diff', ['-r', '--no-dereference', source, result.path]).status).toBe(0);
    expect(manifestPathOf(result.path)).toBe(
      path.join(folder, '.coffer', `${path.basename(result.path)}.manifest.ndjson`),
    );
  });
});

describe.each(MODES)('an incremental snapshot manifest (%s)', (_mode, limits) => {
  beforeEach(() => {
    inline = limits;
  });
  afterEach(() => {
    inline = undefined;
  });

  it('takes the checksums of linked files from the previous manifest, not from reading them', async () => {
    await buildTree();
    const first = await snapshot();
    // A checksum no reading of the files could give: where it shows up, the file was not read.
    // Both names of the plan are one inode, so they get it alike.
    const marked = new Set(['tool.sh', 'docs/plan.md', 'plan-again.md']);
    const marker = 'f'.repeat(64);
    const previous = await manifestOf(first.path);
    const rewritten = previous.map((entry) => (marked.has(entry.path) ? { ...entry, sha256: marker } : entry));
    await fsp.writeFile(manifestPathOf(first.path), rewritten.map((entry) => `${JSON.stringify(entry)}\n`).join(''));

    const second = await snapshot();

    expect(second.filesLinked).toBe(first.files - 1);
    const entries = await manifestOf(second.path);
    for (const name of marked) expect(checksumOf(entries, name), name).toBe(marker);
    // All else as the snapshot holds it, the marker being the only untruth.
    const truth = new Map(previous.map((entry) => [entry.path, entry.sha256]));
    expectManifestMatches(
      second.path,
      entries.map((entry) => (entry.sha256 === marker ? { ...entry, sha256: truth.get(entry.path) } : entry)),
    );
  });

  it('reads the linked files when the previous snapshot has no manifest or no line for them', async () => {
    await buildTree();
    const first = await snapshot();
    const previous = await manifestOf(first.path);
    await fsp.writeFile(
      manifestPathOf(first.path),
      previous
        .filter((entry) => entry.path !== 'random.bin')
        .map((entry) => `${JSON.stringify(entry)}\n`)
        .join(''),
    );
    const second = await snapshot();
    expect(second.filesLinked).toBe(first.files - 1);
    expectManifestMatches(second.path, await manifestOf(second.path));
    await fsp.rm(manifestPathOf(second.path));

    const third = await snapshot();

    expect(third.filesLinked).toBe(second.filesLinked);
    expectManifestMatches(third.path, await manifestOf(third.path));
  });
});

describe('a snapshot that does not complete', () => {
  const folder = () => path.join(backupRoot, 'alpha');

  it('leaves no manifest when it fails', async () => {
    await buildTree();
    const failure = await snapshot({
      onProgress: () => {
        throw new Error('disk on fire');
      },
    }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(Error);
    expect(await fsp.readdir(folder())).toEqual([]);
  });

  it('leaves no manifest when aborted, nor when the job changed hands', async () => {
    await buildTree();
    const controller = new AbortController();
    const reason = new Error('cancelled');
    await expect(snapshot({ signal: controller.signal, onProgress: () => controller.abort(reason) })).rejects.toBe(
      reason,
    );
    await expect(snapshot({ stillOwned: async () => false })).rejects.toThrow('taken over');

    expect(await fsp.readdir(folder())).toEqual([]);
  });

  it("removes an earlier attempt's manifest when the job runs again", async () => {
    await buildTree();
    const earlier = await snapshot({ attempt: 'a' });
    // As if that attempt died after placing its manifest and before the folder got its name.
    await fsp.rm(earlier.path, { recursive: true });
    await fsp.rm(path.join(folder(), '.coffer', `${path.basename(earlier.path)}.json`));

    const again = await snapshot({
      jobId: `job-${jobs}`,
      attempt: 'b',
      startedAt: new Date(Date.UTC(2026, 10, 27, 20)),
    });

    expect((await fsp.readdir(path.join(folder(), '.coffer'))).sort()).toEqual([
      `${path.basename(again.path)}.json`,
      `${path.basename(again.path)}.manifest.ndjson`,
    ]);
  });
});

describe('copying a large file', () => {
  const SIZE = 300 * MIB;
  let bigDir: string;
  let big: string;

  beforeAll(async () => {
    bigDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'coffer-big-'));
    big = path.join(bigDir, 'big.bin');
    const chunk = randomBytes(MIB);
    const fd = fs.openSync(big, 'w');
    for (let i = 0; i < SIZE / MIB; i += 1) fs.writeSync(fd, chunk);
    fs.closeSync(fd);
  });

  afterAll(async () => {
    await removeTree(bigDir);
  });

  it('reports growing bytes while the file is copied', async () => {
    const reports: CopyCounts[] = [];

    const result = await copyTree(big, path.join(tmp, 'copy'), {
      threads: 1,
      onProgress: (counts) => reports.push({ ...counts }),
    });

    const inside = reports.filter((counts) => counts.bytes > 0 && counts.bytes < SIZE).map((counts) => counts.bytes);
    expect(inside.length).toBeGreaterThanOrEqual(2);
    expect([...inside].sort((a, b) => a - b)).toEqual(inside);
    expect(new Set(inside).size).toBe(inside.length);
    expect(result.bytes).toBe(SIZE);
  });

  it('stops inside the file once aborted, and rejects with the reason', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled');
    const target = path.join(tmp, 'copy');

    const copy = copyTree(big, target, {
      threads: 1,
      signal: controller.signal,
      // At the first sign of the file being under way.
      onProgress: (counts) => {
        if (counts.bytes > 0) controller.abort(reason);
      },
    });

    await expect(copy).rejects.toBe(reason);
    // Stopped part way: the rest of the file was never written.
    expect(fs.statSync(path.join(target, 'big.bin')).size).toBeLessThan(SIZE);
  });
});

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
