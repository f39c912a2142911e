import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { migrate } from '@coffer/db';
import {
  createLogOutbox,
  createLogRepository,
  createMysqlPool,
  createRedis,
  createRetentionStore,
  createSnapshotCatalog,
  loadConfig,
  manifestPathOf,
  type CofferConfig,
} from '@coffer/shared';
import { caseResult, type CaseResult } from './report.js';
import { cofferEnvironment, isolate, type Scope } from './stack.js';
import { flushWrites, interleave, timeCommand, timed } from './timing.js';

/** The worker's prune runner and its lock, from its build (types from its sources). */
interface PruneEngine {
  pruneRunner: typeof import('../worker/src/jobs/prune-runner.js').pruneRunner;
  createPruneLocks: typeof import('../worker/src/prune/prune-lock.js').createPruneLocks;
}

async function loadPruneEngine(root: string): Promise<PruneEngine> {
  const load = async (file: string): Promise<unknown> => import(new URL(`worker/dist/${file}`, `file://${root}/`).href);
  const runner = (await load('jobs/prune-runner.js')) as Pick<PruneEngine, 'pruneRunner'>;
  const locks = (await load('prune/prune-lock.js')) as Pick<PruneEngine, 'createPruneLocks'>;
  return { pruneRunner: runner.pruneRunner, createPruneLocks: locks.createPruneLocks };
}

/** Timed runs per side; no warm-up run: each costs ~20 s of `cp -al` before it. */
const RUNS = 3;
const SNAPSHOTS = 1000;
const KEEP = 10;
// 2,000 files of 1 KiB in 20 folders.
const FOLDERS = 20;
const FILES_PER_FOLDER = 100;
const FILE_SIZE = 1024;

const silent = pino({ level: 'silent' });

/** `<UTC timestamp>-<id>`, as a backup names its snapshot; one second apart, oldest first. */
function snapshotName(n: number, id: string): string {
  return `${new Date(Date.UTC(2025, 0, 1) + n * 1000).toISOString().replace(/[-:]/g, '')}-${id}`;
}

function run(command: string, args: readonly string[]): void {
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} failed (${result.status}): ${result.stderr}`);
}

/**
 * `SNAPSHOTS` copies of `base` in `folder`, made as incremental backups leave them: the first
 * a copy, every other one hard links to the same files (`cp -al`), which is also the cheapest
 * way to make them. Returns their names, oldest first.
 */
function makeSnapshots(base: string, folder: string, ids: readonly string[], beside: boolean): string[] {
  mkdirSync(join(folder, '.coffer'), { recursive: true });
  const names = ids.map((id, n) => snapshotName(n, id));
  const [first, ...rest] = names;
  if (first === undefined) return names;
  run('cp', ['-a', base, join(folder, first)]);
  // One shell for the whole loop: a thousand spawns from Node cost more than the links.
  const script = 'first="$1"; shift; for name in "$@"; do cp -al "$first" "$name"; done';
  run('sh', ['-c', script, 'copies', join(folder, first), ...rest.map((name) => join(folder, name))]);
  if (beside) {
    // What Coffer keeps beside each snapshot: its manifest and its record, one small file each.
    for (const name of names) {
      const path = join(folder, name);
      writeFileSync(manifestPathOf(path), '{"path":"f","type":"file"}\n');
      writeFileSync(join(folder, '.coffer', `${name}.json`), '{}\n');
    }
  }
  return names;
}

/**
 * "prune 1,000 snapshots of a 2,000-file tree down to 10": the worker's prune runner (policy
 * keepLast 10 read from MySQL, the catalog listed, each snapshot renamed away, logged through the
 * log outbox into MySQL and deleted) against `rm -rf` of the same 990 folders. Each run gets its
 * own 1,000 hard-linked snapshots, made untimed.
 */
export async function runPruneCase(scope: Scope, root: string, out: string): Promise<CaseResult> {
  console.log('case: prune 1,000 snapshots down to 10');
  const engine = await loadPruneEngine(root);
  const base = join(out, 'base');
  for (let folder = 0; folder < FOLDERS; folder += 1) {
    mkdirSync(join(base, `d${folder}`), { recursive: true });
    for (let file = 0; file < FILES_PER_FOLDER; file += 1) {
      writeFileSync(join(base, `d${folder}`, `f${file}`), Buffer.alloc(FILE_SIZE, folder * FILES_PER_FOLDER + file));
    }
  }
  const backupRoot = join(out, 'backups');
  const config: CofferConfig = loadConfig(
    cofferEnvironment(isolate(scope, 'prune'), {
      SOURCE_ROOTS: base,
      BACKUP_ROOT: backupRoot,
      LOG_LEVEL: 'silent',
      INSTANCE_NAME: 'bench',
    }),
  );
  await migrate(config.mysql, silent);
  const pool = createMysqlPool(config.mysql, { limits: config.mysqlLimits });
  const lockPool = createMysqlPool(config.mysql, { connectionLimit: 1, limits: config.mysqlLimits });
  const redis = createRedis(config.redis, 'worker');
  const outbox = createLogOutbox({
    redis,
    prefix: config.queuePrefix,
    logStore: createLogRepository(pool),
    logger: silent,
  });
  outbox.start();
  const retention = createRetentionStore(pool);
  const runner = engine.pruneRunner({
    config,
    catalog: createSnapshotCatalog(pool),
    retention,
    outbox,
    locks: engine.createPruneLocks(lockPool, config.mysql.database),
  });

  let prepared: { destination: string; names: string[] } | undefined;
  const problems: string[] = [];
  /** Untimed: the run's snapshots on disk and, for Coffer, in the catalog with a policy. */
  async function prepare(side: string, index: number): Promise<void> {
    const destination = `${side}-${index}`;
    const folder = join(backupRoot, destination);
    const ids = Array.from({ length: SNAPSHOTS }, (_, n) => `${side}${index}-${n}`);
    const names = makeSnapshots(base, folder, ids, side === 'coffer');
    if (side === 'coffer') {
      const rows = names.map((name, n) => [
        ids[n],
        destination,
        base,
        join(folder, name),
        new Date(Date.UTC(2025, 0, 1) + n * 1000),
        FOLDERS * FILES_PER_FOLDER,
        FOLDERS * FILES_PER_FOLDER * FILE_SIZE,
        n === 0 ? 0 : FOLDERS * FILES_PER_FOLDER,
        n === 0 ? 0 : FOLDERS * FILES_PER_FOLDER * FILE_SIZE,
        '0'.repeat(64),
        'bench',
      ]);
      await pool.query(
        'INSERT INTO snapshot (id, destination, source, path, created_at, files, bytes, files_linked,' +
          ' bytes_linked, manifest_sha256, actor) VALUES ?',
        [rows],
      );
      await retention.set(destination, { keepLast: KEEP }, 'bench');
    }
    prepared = { destination, names };
    await flushWrites();
  }

  const samples = await interleave(RUNS, [
    {
      name: 'coffer',
      run: async (index) => {
        await prepare('coffer', index);
        const { destination } = prepared ?? { destination: '' };
        return timed(async () => {
          const { result } = await runner.run({
            jobId: `bench-prune-${index}`,
            number: 1,
            tag: 'bench',
            data: { destination },
            startedAt: new Date(),
            logger: silent,
            signal: undefined,
            stillOwned: async () => true,
            progress: { advanced() {}, measured() {}, report() {} },
          });
          if (result.removed.length !== SNAPSHOTS - KEEP) {
            problems.push(`run ${index} removed ${result.removed.length} snapshots`);
          }
        });
      },
    },
    {
      name: 'rm -rf',
      run: async (index) => {
        await prepare('rm', index);
        const { destination, names } = prepared ?? { destination: '', names: [] };
        const doomed = names.slice(0, SNAPSHOTS - KEEP).map((name) => join(backupRoot, destination, name));
        return timeCommand('rm', ['-rf', ...doomed]);
      },
    },
  ]);

  await outbox.stop();
  redis.disconnect();
  await lockPool.end();
  await pool.end();
  return caseResult({
    name: 'prune 1,000 snapshots of a 2,000-file tree down to 10',
    unit: 's',
    target: '<= 1.5',
    baselineName: 'rm -rf',
    coffer: samples.get('coffer') ?? [],
    baseline: samples.get('rm -rf') ?? [],
    ...(problems.length > 0 ? { note: problems.join('; ') } : {}),
  });
}
