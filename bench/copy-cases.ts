import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { basename, join } from 'node:path';
import { DATASETS, ensureDataset } from './datasets.js';
import { caseResult, type CaseResult } from './report.js';
import { DATA_DIR, RUNS } from './settings.js';
import { flushWrites, interleave, interleaveAfterWarmUp, timeCommand, timed } from './timing.js';

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
    trees: async (sources: CopySources) => {
      // Before any timed run: generating it the first time writes 120,000 files.
      const withNodeModules = ensureDataset(DATA_DIR, DATASETS.smallFilesWithNodeModules);
      await flushWrites();
      const results = await runTreeCases(copyCase, snapshot, before, sources, out);
      const backup = backupRunner(engine, snapshot);
      results.push(...(await excludeCases(backup, before, { ...sources, withNodeModules }, join(out, 'exclude'))));
      return results;
    },
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
  exclude?: readonly string[],
) => Promise<{ path: string; files: number; filesLinked: number; excluded?: number }>;

function copyCaseRunner(
  engine: CopyEngine,
  out: string,
): { copyCase: CopyCase; snapshot: Snapshot; before: () => Promise<void> } {
  // Before every timed run: no writeback pending from the run before.
  const before = flushWrites;
  let job = 0;
  const snapshot: Snapshot = (source, backupRoot, destination, exclude) =>
    engine.createSnapshot({
      source,
      backupRoot,
      destination,
      jobId: `bench-${(job += 1)}`,
      startedAt: new Date(),
      exclude,
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

/** One backup as the worker runs it; resolves with what the snapshot holds and excluded. */
type Backup = (
  source: string,
  backupRoot: string,
  destination: string,
  exclude?: readonly string[],
) => Promise<{ seconds: number; files: number; excluded: number | undefined }>;

/** The copy with, beside it, the walk that counts the progress totals (as `backupRunner` does), timed together. */
function backupRunner(engine: CopyEngine, snapshot: Snapshot): Backup {
  return async (source, backupRoot, destination, exclude) => {
    let made: { files: number; excluded?: number } | undefined;
    const seconds = await timed(async () => {
      [, made] = await Promise.all([
        engine.measureTree(source, undefined, { exclude }),
        snapshot(source, backupRoot, destination, exclude),
      ]);
    });
    return { seconds, files: made?.files ?? 0, excluded: made?.excluded };
  };
}

// Ten patterns of the usual kinds, none of which matches a name of the 20k tree (`d042/f7.dat`).
const MATCHING_NOTHING = [
  'node_modules/',
  '*.tmp',
  '/cache',
  '**/build',
  '!keep.tmp',
  '.git/',
  '*.log',
  'coverage/',
  '**/*.swp',
  'dist/**',
];

/** Coffer's side of an exclude case and what each of its runs must report. */
interface ExcludeRun {
  source: string;
  exclude: readonly string[];
  excluded: number;
  /** Untimed, before each run. */
  prepare?: () => void;
}

/** The baseline: the same backup without patterns. */
interface PlainRun {
  source: string;
  name: string;
  prepare?: () => void;
}

/**
 * What exclude patterns cost, each against a baseline of the same run: the 20k tree backed up
 * with ten patterns that match nothing against the same backup without patterns; and the 20k
 * tree beside a `node_modules` of 100,000 files backed up excluding it against the very same
 * tree with that folder moved out of it (a rename, untimed), so both sides read the same files.
 * A Coffer run that copied other than 20,000 files or excluded another count is noted.
 */
async function excludeCases(
  backup: Backup,
  before: () => Promise<void>,
  sources: CopySources & { withNodeModules: string },
  dir: string,
): Promise<CaseResult[]> {
  let cases = 0;
  const compare = async (name: string, coffer: ExcludeRun, baseline: PlainRun): Promise<CaseResult> => {
    console.log(`case: ${name}`);
    cases += 1;
    let unexpected = 0;
    const samples = await interleaveAfterWarmUp(
      RUNS.smallFiles,
      [
        {
          name: 'coffer',
          run: async (run: number) => {
            coffer.prepare?.();
            const made = await backup(coffer.source, dir, `coffer-${cases}-${run}`, coffer.exclude);
            if (made.files !== 20_000 || made.excluded !== coffer.excluded) unexpected += 1;
            return made.seconds;
          },
        },
        {
          name: 'baseline',
          run: async (run: number) => {
            baseline.prepare?.();
            return (await backup(baseline.source, dir, `baseline-${cases}-${run}`)).seconds;
          },
        },
      ],
      before,
    );
    return caseResult({
      name,
      unit: 's',
      target: '<= 1.1',
      baselineName: baseline.name,
      coffer: samples.get('coffer') ?? [],
      baseline: samples.get('baseline') ?? [],
      ...(unexpected > 0
        ? { note: `${unexpected} Coffer runs did not copy 20,000 files or excluded other entries` }
        : {}),
    });
  };

  const results = [
    await compare(
      'back up the 20k tree with 10 exclude patterns matching nothing',
      { source: sources.smallFiles, exclude: MATCHING_NOTHING, excluded: 0 },
      { source: sources.smallFiles, name: 'the same backup without patterns' },
    ),
  ];
  const tree = sources.withNodeModules;
  const nodeModules = join(tree, 'node_modules');
  // Beside the tree, on the same file system, so moving it is a rename.
  const aside = `${tree}.node_modules`;
  const putBack = () => {
    if (existsSync(aside)) renameSync(aside, nodeModules);
  };
  // Left aside by an interrupted run, it is put back first.
  putBack();
  try {
    results.push(
      await compare(
        'back up the 20k tree beside an excluded node_modules of 100,000 files',
        { source: tree, exclude: ['node_modules/'], excluded: 1, prepare: putBack },
        {
          source: tree,
          name: 'the same tree without node_modules',
          prepare: () => {
            if (!existsSync(aside)) renameSync(nodeModules, aside);
          },
        },
      ),
    );
  } finally {
    putBack();
  }
  return results;
}
