import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  promises as fs,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  statfsSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyTreeSync } from '../src/copy/copy-tree-sync.js';
import { countsBlocksHonestly } from '../src/copy/file-data.js';
import { LinkRegistry } from '../src/copy/hard-links.js';
import { copyTree, measureTree, removeTree } from '../src/copy/index.js';
import { copyMode } from '../src/copy/owners.js';

const isRoot = process.geteuid?.() === 0;
const NOBODY = 65534;
const MiB = 1024 * 1024;
const OLD_TIME = new Date('2001-02-03T04:05:06.789Z');

let tmp: string;
let source: string;
let target: string;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-fidelity-'));
  source = path.join(tmp, 'source');
  target = path.join(tmp, 'target');
  mkdirSync(source);
});

afterEach(async () => {
  await removeTree(tmp);
});

/** `dir/name` as bytes, so that a name may hold bytes that are not UTF-8 (given here as latin1 text). */
function bytePath(dir: string | Buffer, latin1Name: string): Buffer {
  return Buffer.concat([Buffer.from(dir), Buffer.from('/'), Buffer.from(latin1Name, 'latin1')]);
}

function inodes(files: string[]): Set<number> {
  return new Set(files.map((file) => lstatSync(file).ino));
}

describe('names that are not UTF-8', () => {
  it('copies files and folders whose names are not UTF-8, byte for byte, as cp -a does', async () => {
    writeFileSync(bytePath(source, 'caf\xe9.txt'), 'latin-1 café');
    const resumes = bytePath(source, 'r\xe9sum\xe9s');
    mkdirSync(resumes);
    writeFileSync(bytePath(resumes, '2026-\xe9t\xe9.txt'), 'cv');

    const result = await copyTree(source, target);

    expect(result).toMatchObject({ files: 2, dirs: 1, warnings: { count: 0, items: [] } });
    expect(readFileSync(bytePath(target, 'caf\xe9.txt'), 'utf8')).toBe('latin-1 café');
    expect(readFileSync(bytePath(bytePath(target, 'r\xe9sum\xe9s'), '2026-\xe9t\xe9.txt'), 'utf8')).toBe('cv');
    expect(spawnSync('diff', ['-r', '--no-dereference', source, target]).status).toBe(0);
  });

  it('reports a name it had to leave out losslessly: display text, and the bytes in base64', () => {
    const folder = bytePath(source, 'd\xe9');
    mkdirSync(folder);
    const names = ['\xe9a', '\xe9b'];
    for (const name of names) writeFileSync(bytePath(folder, name), name);
    let deleted = false;

    // After the first file is copied, the other one vanishes before it is opened.
    const result = copyTreeSync(source, target, {
      onEntry: () => {
        if (deleted) return;
        deleted = true;
        for (const name of names) rmSync(bytePath(folder, name), { force: true });
      },
    });

    expect(result.warnings.count).toBe(1);
    const [warning] = result.warnings.items;
    expect(warning?.code).toBe('ENOENT');
    const raw = Buffer.from(warning?.pathBase64 ?? '', 'base64');
    expect(names.map((name) => Buffer.from(`d\xe9/${name}`, 'latin1').toString('hex'))).toContain(raw.toString('hex'));
    expect(warning?.path).toBe(raw.toString('utf8'));
    expect(warning?.path).toMatch(/^d\uFFFD\/\uFFFD[ab]$/);
  });

  it('counts files whose names are not UTF-8 when measuring', async () => {
    writeFileSync(bytePath(source, 'caf\xe9.txt'), '12345');
    mkdirSync(bytePath(source, 'r\xe9sum\xe9s'));
    writeFileSync(bytePath(bytePath(source, 'r\xe9sum\xe9s'), 'cv\xe9'), '123');

    expect(await measureTree(source)).toEqual({ files: 2, bytes: 8 });
  });
});

describe('sparse files', () => {
  it('keeps the holes of a sparse file and its exact contents', async () => {
    const image = path.join(source, 'disk.img');
    execFileSync('truncate', ['-s', '64M', image]);
    const fd = openSync(image, 'r+');
    writeSync(fd, 'head', 0);
    writeSync(fd, 'middle', 32 * MiB + 1);
    writeSync(fd, 'tail', 64 * MiB - 4);
    closeSync(fd);
    utimesSync(image, OLD_TIME, OLD_TIME);

    const result = await copyTree(source, target);

    const copy = path.join(target, 'disk.img');
    const stats = statSync(copy);
    expect(result).toMatchObject({ files: 1, bytes: 64 * MiB });
    expect(stats.size).toBe(64 * MiB);
    // Three blocks of data, not 64 MiB of zeros.
    expect(stats.blocks * 512).toBeLessThanOrEqual(MiB);
    expect(spawnSync('cmp', [image, copy]).status).toBe(0);
    expect(Math.abs(stats.mtimeMs - statSync(image).mtimeMs)).toBeLessThan(0.002);
  });

  // Elsewhere (ZFS, NFS…) a file without blocks is read through, which for this one would take hours.
  const blocksCounted = countsBlocksHonestly(statfsSync(os.tmpdir()).type);

  it.skipIf(!blocksCounted)('creates a file without any data by its size alone, without reading it', async () => {
    // As large as ext4 allows (16 TiB less a block); reading it would take days.
    execFileSync('truncate', ['-s', '10T', path.join(source, 'huge.img')]);
    execFileSync('truncate', ['-s', '512K', path.join(source, 'small-hole.img')]);

    const result = await copyTree(source, target);

    expect(result).toMatchObject({ files: 2, bytes: 10 * 1024 ** 4 + 512 * 1024 });
    for (const [name, size] of [
      ['huge.img', 10 * 1024 ** 4],
      ['small-hole.img', 512 * 1024],
    ] as const) {
      const stats = statSync(path.join(target, name));
      expect(stats.size, name).toBe(size);
      expect(stats.blocks, name).toBe(0);
    }
  });
});

describe('owners', () => {
  it.skipIf(!isRoot)('keeps the owner and group of files, folders and links when run as root', async () => {
    writeFileSync(path.join(source, 'theirs.txt'), 'theirs');
    chownSync(path.join(source, 'theirs.txt'), NOBODY, NOBODY);
    mkdirSync(path.join(source, 'team'));
    writeFileSync(path.join(source, 'team', 'doc.txt'), 'doc');
    chownSync(path.join(source, 'team', 'doc.txt'), 1234, 5678);
    chownSync(path.join(source, 'team'), 1234, 5678);
    symlinkSync('theirs.txt', path.join(source, 'link'));
    lchownSync(path.join(source, 'link'), 4321, 8765);
    chownSync(source, 2222, 3333);

    await copyTree(source, target);

    for (const name of ['', 'theirs.txt', 'team', 'team/doc.txt', 'link']) {
      const from = lstatSync(path.join(source, name));
      const to = lstatSync(path.join(target, name));
      expect([to.uid, to.gid], name || 'root').toEqual([from.uid, from.gid]);
    }
  });

  it.skipIf(!isRoot)('keeps a setuid program and a setgid folder with the owner they belong to', async () => {
    const program = path.join(source, 'program');
    writeFileSync(program, '#!/bin/sh\n');
    chownSync(program, NOBODY, NOBODY);
    chmodSync(program, 0o4755);
    const shared = path.join(source, 'shared');
    mkdirSync(shared);
    chownSync(shared, 1234, 1234);
    chmodSync(shared, 0o2775);

    await copyTree(source, target);

    const copied = statSync(path.join(target, 'program'));
    expect([copied.uid, copied.gid]).toEqual([NOBODY, NOBODY]);
    expect((copied.mode & 0o7777).toString(8)).toBe('4755');
    const folder = statSync(path.join(target, 'shared'));
    expect([folder.uid, folder.gid]).toEqual([1234, 1234]);
    expect((folder.mode & 0o7777).toString(8)).toBe('2775');
  });

  it.skipIf(!isRoot)('drops setuid and setgid bits from copies that could not keep their owner', () => {
    // The copy runs as nobody, who cannot give files away: its copies are nobody's.
    chmodSync(tmp, 0o755);
    const program = path.join(source, 'program');
    writeFileSync(program, '#!/bin/sh\n');
    chownSync(program, 1234, 1234);
    chmodSync(program, 0o6755);
    const shared = path.join(source, 'shared');
    mkdirSync(shared);
    chownSync(shared, 1234, 1234);
    chmodSync(shared, 0o3775);
    const out = path.join(tmp, 'out');
    mkdirSync(out);
    chownSync(out, NOBODY, NOBODY);
    const engine = new URL('../src/copy/copy-tree-sync.ts', import.meta.url).href;
    const script =
      'const { copyTreeSync } = await import(process.argv[1]); copyTreeSync(process.argv[2], process.argv[3]);';

    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, engine, source, path.join(out, 'copy')],
      { uid: NOBODY, gid: NOBODY, cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8' },
    );

    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    const copied = statSync(path.join(out, 'copy', 'program'));
    expect(copied.uid).toBe(NOBODY);
    expect((copied.mode & 0o7777).toString(8)).toBe('755');
    // The sticky bit is no privilege: it stays.
    expect((statSync(path.join(out, 'copy', 'shared')).mode & 0o7777).toString(8)).toBe('1775');
  });

  it('gives setuid and setgid bits only to a copy that kept the owner they belong to', () => {
    expect(copyMode(0o104755, true)).toBe(0o4755);
    expect(copyMode(0o106755, false)).toBe(0o755);
    expect(copyMode(0o43775, false)).toBe(0o1775);
    expect(copyMode(0o40700, false)).toBe(0o700);
  });
});

describe('hard links', () => {
  it('keeps the hard links inside the source as one inode, also across threads', async () => {
    const original = path.join(source, 'original.bin');
    writeFileSync(original, 'shared bytes');
    const names = ['original.bin', 'again.bin'];
    linkSync(original, path.join(source, 'again.bin'));
    // Names in many folders, so that other threads meet them too.
    for (let i = 0; i < 12; i += 1) {
      mkdirSync(path.join(source, `d${i}`, 'inner'), { recursive: true });
      for (let j = 0; j < 20; j += 1) writeFileSync(path.join(source, `d${i}`, `filler${j}`), `${i}/${j}`);
      linkSync(original, path.join(source, `d${i}`, 'inner', 'link.bin'));
      names.push(`d${i}/inner/link.bin`);
    }

    const result = await copyTree(source, target, { threads: 4 });

    expect(result).toMatchObject({ files: names.length + 12 * 20, filesLinked: 0 });
    const copies = names.map((name) => path.join(target, name));
    expect(inodes(copies).size).toBe(1);
    expect(statSync(copies[0] ?? '').nlink).toBe(names.length);
    expect(readFileSync(copies[0] ?? '', 'utf8')).toBe('shared bytes');
    expect(inodes([original, ...copies]).size).toBe(2);
    expect(existsSync(`${target}.links`)).toBe(false);
  });

  it('removes its scratch folder of links when the copy fails', async () => {
    writeFileSync(path.join(source, 'a'), 'a');
    linkSync(path.join(source, 'a'), path.join(source, 'b'));
    const failure = new Error('progress sink broke');

    await expect(
      copyTree(source, target, {
        onProgress: () => {
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
    expect(existsSync(`${target}.links`)).toBe(false);
  });

  it('links every name of an unchanged hard-linked file to the previous copy', async () => {
    writeFileSync(path.join(source, 'a'), 'same');
    mkdirSync(path.join(source, 'sub'));
    linkSync(path.join(source, 'a'), path.join(source, 'sub', 'b'));
    const first = path.join(tmp, 'first');
    await copyTree(source, first);

    const result = await copyTree(source, target, { previous: first });

    expect(result).toMatchObject({ files: 2, filesLinked: 1 });
    expect(inodes([first, target].flatMap((root) => [path.join(root, 'a'), path.join(root, 'sub', 'b')])).size).toBe(1);
  });

  it('registers the first copy of an inode; another copy of it becomes a link to the first', () => {
    const registry = new LinkRegistry(path.join(tmp, 'registry'));
    const first = Buffer.from(path.join(tmp, 'first'));
    const second = Buffer.from(path.join(tmp, 'second'));
    const third = Buffer.from(path.join(tmp, 'third'));
    writeFileSync(first, 'first');
    writeFileSync(second, 'second');

    expect(registry.linkRegistered('1-2', third)).toBe(false);
    expect(registry.register('1-2', first)).toBe(true);
    // Another thread's copy of the same inode, registered too late: it becomes the first.
    expect(registry.register('1-2', second)).toBe(false);
    expect(registry.linkRegistered('1-2', third)).toBe(true);

    expect(inodes([first, second, third].map(String)).size).toBe(1);
    expect(readFileSync(second, 'utf8')).toBe('first');
    expect(readdirSync(path.join(tmp, 'registry'))).toEqual(['1-2']);
  });
});

describe('incremental copies with owners', () => {
  it.skipIf(!isRoot)('copies a file again when only its owner changed, since a link shares its owner', async () => {
    writeFileSync(path.join(source, 'a.txt'), 'a');
    writeFileSync(path.join(source, 'b.txt'), 'b');
    const first = path.join(tmp, 'first');
    await copyTree(source, first);
    chownSync(path.join(source, 'a.txt'), NOBODY, NOBODY);

    const result = await copyTree(source, target, { previous: first });

    expect(result).toMatchObject({ files: 2, filesLinked: 1 });
    expect(statSync(path.join(target, 'a.txt')).uid).toBe(NOBODY);
    expect(statSync(path.join(first, 'a.txt')).uid).toBe(0);
    expect(statSync(path.join(target, 'b.txt')).ino).toBe(statSync(path.join(first, 'b.txt')).ino);
  });
});
