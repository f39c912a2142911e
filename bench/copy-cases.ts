import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { caseResult, type CaseResult } from './report.js';
import { RUNS } from './settings.js';
import { flushWrites, interleave, timeCommand, timed } from './timing.js';

/** The copy engine the worker uses, from its build (types from its sources). */
export type CopyEngine = typeof import('../worker/src/copy/index.js');

export async function loadCopyEngine(root: string): Promise<CopyEngine> {
  return (await import(new URL('worker/dist/copy/index.js', `file://${root}/`).href)) as CopyEngine;
}

export interface CopySources {
  smallFiles: string;
  mediumFiles: string;
}

type CopyCase = (
  label: string,
  source: { path: string; isFile: boolean },
  runs: number,
  withRsync: boolean,
) => Promise<Map<string, number[]>>;

/**
 * The copy cases: Coffer's `createSnapshot` (from start to a complete, renamed snapshot, with
 * its checksummed manifest) against `cp -a` followed by hashing the copy (`cp+hash`: what the
 * same checksums take with standard tools), and `rsync -a`, each into a fresh folder. Outputs
 * stay until the end of the benchmark: deleting them before a timed run would slow the file
 * creation it measures.
 * The 1 GiB case is separate, to run last: writing gigabytes leaves this disk slow for a while.
 */
export function copyCases(engine: CopyEngine, out: string) {
  const { copyCase, snapshot, before } = copyCaseRunner(engine, out);
  return {
    trees: (sources: CopySources) => runTreeCases(copyCase, snapshot, before, sources, out),
    bigFile: async (bigFile: string): Promise<CaseResult> => {
      console.log('case: copy one 1 GiB file');
      const big = await copyCase('big', { path: bigFile, isFile: true }, RUNS.bigFile, false);
      return caseResult({
        name: 'copy one 1 GiB file',
        unit: 's',
        target: '<= 0.9',
        baselineName: CP_AND_HASH,
        coffer: big.get('coffer') ?? [],
        baseline: big.get('cp+hash') ?? [],
      });
    },
  };
}

const CP_AND_HASH = 'cp -a + openssl dgst -sha256 ×2';

/**
 * `cp -a source copy`, then the SHA-256 of every file of the copy by two `openssl` processes
 * at a time, timed together: the baseline for a copy that also yields checksums.
 */
function copyAndHash(source: string, copy: string): number {
  const copying = timeCommand('cp', ['-a', source, copy]);
  const hashing = timeCommand('sh', [
    '-c',
    'find "$1" -type f -print0 | xargs -0 -P 2 -n 200 openssl dgst -sha256 >/dev/null',
    'cp+hash',
    copy,
  ]);
  return copying + hashing;
}

type Snapshot = (
  source: string,
  backupRoot: string,
  destination: string,
) => Promise<{ path: string; filesLinked: number }>;

function copyCaseRunner(
  engine: CopyEngine,
  out: string,
): { copyCase: CopyCase; snapshot: Snapshot; before: () => Promise<void> } {
  // Before every timed run: no writeback pending from the run before.
  const before = flushWrites;
  let job = 0;
  const snapshot = (source: string, backupRoot: string, destination: string) =>
    engine.createSnapshot({
      source,
      backupRoot,
      destination,
      jobId: `bench-${(job += 1)}`,
      startedAt: new Date(),
    });
  const fresh = (dir: string) => {
    mkdirSync(dir, { recursive: true });
    return dir;
  };

  const copyCase: CopyCase = async (label, source, runs, withRsync) => {
    const dir = join(out, label);
    // A file is copied into a folder under its own name, as Coffer does.
    const cpTarget = (name: string) =>
      source.isFile ? join(fresh(join(dir, name)), basename(source.path)) : join(fresh(dir), name);
    const contenders = [
      { name: 'coffer', run: (run: number) => timed(() => snapshot(source.path, join(dir, 'coffer'), `run-${run}`)) },
      { name: 'cp+hash', run: async (run: number) => copyAndHash(source.path, cpTarget(`cp-${run}`)) },
    ];
    if (withRsync) {
      contenders.push({
        name: 'rsync',
        run: async (run: number) =>
          timeCommand('rsync', ['-a', `${source.path}/`, `${join(fresh(dir), `rsync-${run}`)}/`]),
      });
    }
    // Warm-up: the sources into the page cache, the copy thread started.
    for (const contender of contenders) await contender.run(-1);
    return interleave(runs, contenders, before);
  };

  return { copyCase, snapshot, before };
}

async function runTreeCases(
  copyCase: CopyCase,
  snapshot: Snapshot,
  before: () => Promise<void>,
  sources: CopySources,
  out: string,
): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  console.log('case: copy 20,000 × 4 KiB files in 200 folders');
  const small = await copyCase('small', { path: sources.smallFiles, isFile: false }, RUNS.smallFiles, true);
  results.push(
    caseResult({
      name: 'copy 20,000 × 4 KiB files in 200 folders',
      unit: 's',
      target: '<= 1.0',
      baselineName: CP_AND_HASH,
      coffer: small.get('coffer') ?? [],
      baseline: small.get('cp+hash') ?? [],
    }),
    caseResult({
      name: 'copy 20,000 × 4 KiB files: below rsync',
      unit: 's',
      target: '< 1',
      baselineName: 'rsync -a',
      coffer: small.get('coffer') ?? [],
      baseline: small.get('rsync') ?? [],
    }),
  );

  console.log('case: copy 2,000 × 256 KiB files');
  const medium = await copyCase('medium', { path: sources.mediumFiles, isFile: false }, RUNS.mediumFiles, false);
  results.push(
    caseResult({
      name: 'copy 2,000 × 256 KiB files',
      unit: 's',
      target: '<= 0.9',
      baselineName: CP_AND_HASH,
      coffer: medium.get('coffer') ?? [],
      baseline: medium.get('cp+hash') ?? [],
    }),
  );

  console.log('case: incremental snapshot of the unchanged 20k tree');
  results.push(await incrementalCase(snapshot, sources.smallFiles, join(out, 'incremental'), before));
  return results;
}

/**
 * Each side keeps a chain of snapshots of the unchanged tree, each linked from the one
 * before: Coffer into one destination folder (it finds its previous snapshot itself),
 * rsync with `--link-dest` naming its previous copy.
 */
async function incrementalCase(
  snapshot: Snapshot,
  source: string,
  dir: string,
  before: () => Promise<void>,
): Promise<CaseResult> {
  const rsyncDir = join(dir, 'rsync');
  mkdirSync(rsyncDir, { recursive: true });
  let previousRsync = join(rsyncDir, 'full');
  // Untimed: the first, full copies the chains start from, then one warm-up run each.
  timeCommand('rsync', ['-a', `${source}/`, `${previousRsync}/`]);
  await snapshot(source, join(dir, 'coffer'), 'tree');
  let unlinked = 0;
  const contenders = [
    {
      name: 'coffer',
      run: async () => {
        let linked = 0;
        const seconds = await timed(async () => {
          linked = (await snapshot(source, join(dir, 'coffer'), 'tree')).filesLinked;
        });
        if (linked !== 20_000) unlinked += 1;
        return seconds;
      },
    },
    {
      name: 'rsync',
      run: async (run: number) => {
        const next = join(rsyncDir, `run-${run}`);
        const seconds = timeCommand('rsync', ['-a', `--link-dest=${previousRsync}`, `${source}/`, `${next}/`]);
        previousRsync = next;
        return seconds;
      },
    },
  ];
  for (const contender of contenders) await contender.run(-1);
  const samples = await interleave(RUNS.incremental, contenders, before);
  return caseResult({
    name: 'incremental snapshot of the unchanged 20k tree',
    unit: 's',
    target: '<= 1.0',
    baselineName: 'rsync -a --link-dest',
    coffer: samples.get('coffer') ?? [],
    baseline: samples.get('rsync') ?? [],
    ...(unlinked > 0 ? { note: `${unlinked} Coffer runs did not link every file` } : {}),
  });
}
