import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Where data sets (kept between runs, ~6 GiB) and outputs (removed at the end) live: outside
 * the repository, so linters and test runners never walk a million files.
 */
export const BENCH_DIR = process.env.COFFER_BENCH_DIR ?? '/var/tmp/coffer-bench';
export const DATA_DIR = join(BENCH_DIR, 'data');
export const OUT_DIR = join(BENCH_DIR, 'out');
export const RESULTS_FILE = join(ROOT, 'bench', 'results', 'latest.json');

/** Timed runs per side of each case (after one untimed warm-up run each). */
export const RUNS = {
  bigFile: 7,
  smallFiles: 9,
  mediumFiles: 7,
  incremental: 7,
  verifyTree: 7,
  verifyBigFile: 5,
  restoreTree: 7,
  cancel: 3,
  httpRounds: 3,
  endToEnd: 3,
};

/** Seconds autocannon runs per round. */
export const HTTP_SECONDS = 5;
export const HTTP_CONNECTIONS = 50;
/** Clients listing jobs at once: as many as the API's MySQL pool has connections. */
export const LIST_CONNECTIONS = 10;
/** Jobs per end-to-end round, and how many each worker process runs at once (both sides). */
export const E2E_JOBS = 3000;
export const E2E_WORKER_CONCURRENCY = 16;
