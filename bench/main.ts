// `pnpm bench`: Coffer against cp, rsync, sha256sum, openssl and bare BullMQ on this machine. See the README's
// "Performance" section; results go to stdout and bench/results/latest.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runClusterCase } from './cluster-cases.js';
import { copyCases, loadCopyEngine } from './copy-cases.js';
import { DATASETS, ensureDataset } from './datasets.js';
import { describeMachine, ensureRsync, fileSystemSettler } from './machine.js';
import { runPruneCase } from './prune-cases.js';
import { runPeerCases } from './rclone-cases.js';
import { formatNotes, formatTable, writeResults, type CaseResult } from './report.js';
import { runCancelCase, runEndToEndCase, runHttpCase, runJobsListCase, runMemoryCase } from './service-cases.js';
import { loadSnapshotEngine, snapshotCases } from './snapshot-cases.js';
import { BENCH_DIR, DATA_DIR, OUT_DIR, QUICK, RESULTS_FILE, ROOT } from './settings.js';
import { cleanup, createScope } from './stack.js';

const started = performance.now();
// Groups: copy verify http jobs e2e cluster peer memory prune cancel. No argument: all but the slow ones; `all`: every one.
const SLOW_GROUPS = ['memory', 'cluster'];
const only = process.argv.slice(2);
const selected = (group: string) =>
  only.includes(group) || only.includes('all') || (only.length === 0 && !SLOW_GROUPS.includes(group));

ensureRsync();
mkdirSync(OUT_DIR, { recursive: true });
// Outputs of an interrupted run: moved aside now, deleted with this run's at the end.
for (const leftover of readdirSync(OUT_DIR)) renameSync(join(OUT_DIR, leftover), join(OUT_DIR, `old-${leftover}`));
const out = join(OUT_DIR, `run-${Date.now()}`);
mkdirSync(join(out, 'logs'), { recursive: true });

console.log(`data in ${DATA_DIR}, outputs in ${out}`);
if (QUICK) console.log('BENCH_QUICK=1: fewer rounds and jobs, to check the cases run; the figures mean little');
// Only the data sets the selected groups read ('' for the others).
const needed = (groups: readonly string[], spec: (typeof DATASETS)[keyof typeof DATASETS]) =>
  groups.some(selected) ? ensureDataset(DATA_DIR, spec) : '';
const sources = {
  bigFile: needed(['copy', 'verify'], DATASETS.bigFile),
  smallFiles: needed(['copy', 'verify', 'peer'], DATASETS.smallFiles),
  mediumFiles: needed(['copy'], DATASETS.mediumFiles),
  tiny: needed(['http', 'e2e', 'cluster', 'peer'], DATASETS.tiny),
  million: selected('memory') ? ensureDataset(DATA_DIR, DATASETS.million) : '',
  hugeFile: selected('cancel') ? ensureDataset(DATA_DIR, DATASETS.hugeFile) : '',
};
spawnSync('sync');
const { settle, record: settling } = fileSystemSettler(join(out, 'probe'));
await settle(120_000);
const machine = describeMachine(BENCH_DIR);

const cases: CaseResult[] = [];
const scope = createScope(join(out, 'logs'));
try {
  const engine = await loadCopyEngine(ROOT);
  const copy = copyCases(engine, join(out, 'copy'));
  const snapshots = snapshotCases(await loadSnapshotEngine(ROOT, engine), join(out, 'snapshots'));
  if (selected('copy')) cases.push(...(await copy.trees(sources)));
  if (selected('verify')) cases.push(...(await snapshots.tree(sources.smallFiles)));
  const dirs = { sourceRoot: DATA_DIR, out: join(out, 'services') };
  if (selected('http')) cases.push(await runHttpCase(scope, dirs, sources.tiny));
  if (selected('jobs')) cases.push(...(await runJobsListCase(scope, dirs)));
  if (selected('e2e')) {
    await settle();
    cases.push(await runEndToEndCase(scope, dirs, sources.tiny));
  }
  if (selected('cluster')) {
    await settle();
    cases.push(await runClusterCase(scope, dirs, sources.tiny));
  }
  if (selected('peer')) {
    await settle();
    cases.push(...(await runPeerCases(scope, dirs, sources, engine)));
  }
  if (selected('memory')) {
    await settle();
    cases.push(await runMemoryCase(scope, dirs, sources.million));
  }
  if (selected('copy')) cases.push(await copy.bigFile(sources.bigFile));
  if (selected('verify')) cases.push(await snapshots.bigFile(sources.bigFile));
  if (selected('prune')) {
    await settle();
    cases.push(await runPruneCase(scope, ROOT, join(out, 'prune')));
  }
  // Last: each cancelled backup leaves up to 2 GiB to delete.
  if (selected('cancel')) cases.push(await runCancelCase(scope, dirs, sources.hugeFile));
} finally {
  await cleanup(scope);
}

const runtimeSeconds = Math.round((performance.now() - started) / 1000);
const results = {
  ...machine,
  loadAverageAtEnd: os.loadavg().map((load) => Number(load.toFixed(2))),
  fileSystemWaits: settling,
  runtimeSeconds,
};
writeResults(RESULTS_FILE, results, cases);
console.log(`\n${formatTable(cases)}\n\n${formatNotes(cases)}\n`);
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.fileSystem}`);
console.log(`results: ${RESULTS_FILE}; ${runtimeSeconds} s`);

// Last, so no timed run followed a large delete (ext4 here creates files slowly for a while after one).
const cleanupStarted = performance.now();
for (const entry of readdirSync(OUT_DIR)) {
  const path = join(OUT_DIR, entry);
  if (existsSync(path)) spawnSync('rm', ['-rf', path]);
}
console.log(`outputs removed in ${((performance.now() - cleanupStarted) / 1000).toFixed(0)} s`);
