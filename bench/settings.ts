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

/**
 * `BENCH_QUICK=1`: one timed round per case (two where a case needs a pair), shorter HTTP runs
 * and fewer end-to-end jobs, to check that the cases run end to end; its figures mean little.
 */
export const QUICK = process.env.BENCH_QUICK === '1';
const quick = (full: number, reduced: number) => (QUICK ? reduced : full);

/** Timed runs per side of each case (after one untimed warm-up run each). */
export const RUNS = {
  bigFile: quick(7, 1),
  smallFiles: quick(9, 1),
  mediumFiles: quick(7, 1),
  incremental: quick(7, 2),
  verifyTree: quick(7, 1),
  verifyBigFile: quick(5, 1),
  restoreTree: quick(7, 1),
  cancel: quick(3, 1),
  httpRounds: quick(3, 1),
  endToEnd: quick(3, 1),
  /** Rounds of each peer case (Coffer against `rclone rcd` and `rclone copy`). */
  peer: quick(5, 1),
};

/** Seconds autocannon runs per round. */
export const HTTP_SECONDS = quick(5, 2);
export const HTTP_CONNECTIONS = 50;
/** Clients listing jobs at once: as many as the API's MySQL pool has connections. */
export const LIST_CONNECTIONS = 10;
/** Jobs per end-to-end round, and how many each worker process runs at once (both sides). */
export const E2E_JOBS = quick(3000, 500);
export const E2E_WORKER_CONCURRENCY = 16;
/**
 * How often the end-to-end cases ask whether the round's last job has finished, the same on
 * every side: a round ends at most this late after its last job did.
 */
export const E2E_POLL_MS = 20;
/** Against `rclone rcd`: submissions per round of the accepted-rate case, and tiny jobs per end-to-end round. */
export const PEER_SUBMISSIONS = 2000;
export const PEER_JOBS = 500;
