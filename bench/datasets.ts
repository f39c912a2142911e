import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** A tree of `dirs` folders holding `perDir` files of `size` bytes each, or one file of `size` bytes. */
export interface DatasetSpec {
  name: string;
  kind: 'tree' | 'file';
  dirs: number;
  perDir: number;
  size: number;
  /** A tree's `node_modules` folder beside its folders: `packages` folders of `perPackage` files of `size` bytes. */
  nodeModules?: { packages: number; perPackage: number; size: number };
}

export const DATASETS = {
  bigFile: { name: 'big-1GiB.bin', kind: 'file', dirs: 0, perDir: 0, size: 2 ** 30 },
  // Backed up only to be cancelled inside it.
  hugeFile: { name: 'huge-2GiB.bin', kind: 'file', dirs: 0, perDir: 0, size: 2 ** 31 },
  smallFiles: { name: 'small-20000x4KiB', kind: 'tree', dirs: 200, perDir: 100, size: 4096 },
  // The same tree beside a node_modules of 100,000 files, for backups that exclude it.
  smallFilesWithNodeModules: {
    name: 'small-20000x4KiB+node_modules-100000x1KiB',
    kind: 'tree',
    dirs: 200,
    perDir: 100,
    size: 4096,
    nodeModules: { packages: 1000, perPackage: 100, size: 1024 },
  },
  mediumFiles: { name: 'medium-2000x256KiB', kind: 'tree', dirs: 20, perDir: 100, size: 256 * 1024 },
  tiny: { name: 'tiny-1x100B', kind: 'tree', dirs: 1, perDir: 1, size: 100 },
  // Empty: memory could only grow with the number of entries, and on this disk every 4 KiB
  // block freed costs ~75 µs of discard when the copy is deleted (a minute for a million).
  million: { name: 'million-1000000x0B', kind: 'tree', dirs: 1000, perDir: 1000, size: 0 },
} as const satisfies Record<string, DatasetSpec>;

// Random content, so no layer can compress or deduplicate it; one chunk repeated is enough for that.
const CHUNK = randomFillSync(Buffer.alloc(64 * 2 ** 20));

/**
 * Returns the dataset's path, generating it first unless a finished one (its marker file
 * matches the spec) is there from an earlier run. A tree's root holds the folders only.
 */
export function ensureDataset(dataDir: string, spec: DatasetSpec): string {
  const target = join(dataDir, spec.name);
  const marker = `${target}.ready`;
  const wanted = JSON.stringify(spec);
  if (existsSync(marker) && readFileSync(marker, 'utf8') === wanted) return target;
  const started = performance.now();
  process.stdout.write(`  generating ${spec.name}…`);
  rmSync(target, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  if (spec.kind === 'file') writeFile(target, spec.size);
  else writeTree(target, spec);
  writeFileSync(marker, wanted);
  console.log(` ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return target;
}

function writeFile(file: string, size: number): void {
  const fd = openSync(file, 'w');
  try {
    for (let written = 0; written < size;) {
      written += writeSync(fd, CHUNK, 0, Math.min(CHUNK.length, size - written));
    }
  } finally {
    closeSync(fd);
  }
}

function writeTree(root: string, spec: DatasetSpec): void {
  const content = CHUNK.subarray(0, spec.size);
  const width = String(spec.dirs - 1).length;
  mkdirSync(root);
  for (let dir = 0; dir < spec.dirs; dir += 1) {
    const folder = join(root, `d${String(dir).padStart(width, '0')}`);
    mkdirSync(folder);
    for (let file = 0; file < spec.perDir; file += 1) writeFileSync(join(folder, `f${file}.dat`), content);
  }
  if (spec.nodeModules) writeNodeModules(join(root, 'node_modules'), spec.nodeModules);
}

function writeNodeModules(root: string, { packages, perPackage, size }: NonNullable<DatasetSpec['nodeModules']>): void {
  const content = CHUNK.subarray(0, size);
  mkdirSync(root);
  for (let index = 0; index < packages; index += 1) {
    const folder = join(root, `package-${index}`);
    mkdirSync(folder);
    for (let file = 0; file < perPackage; file += 1) writeFileSync(join(folder, `module-${file}.js`), content);
  }
}
