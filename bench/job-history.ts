import { performance } from 'node:perf_hooks';
import { MIGRATIONS_DIR, migrate, type MigrationTarget } from '@coffer/db';
import { createConnection } from 'mysql2/promise';

const quiet = { info() {}, warn() {} };

/** Jobs in the seeded log, and how their histories end (by job number n, 1…1,000,000). */
export const SEEDED_JOBS = 1_000_000;
const DIGITS = Math.log10(SEEDED_JOBS);

// One job per number of a sequence the server generates itself (a cross join of a digits
// table, in order: STRAIGHT_JOIN keeps the outer table the most significant digit), so no
// row crosses the network and every index grows at its end. Of every 20 jobs: 16 completed,
// 2 failed, 1 cancelled before it ran, and 1 still queued or running.
const JOB_ID = "CONCAT('bench-', LPAD(n, 7, '0'))";
const COMMON = `'backup', CONCAT('/srv/data/', n % 1000), ${JOB_ID}, 1, CONCAT('d', n % 1000), IF(n % 2 = 0, 'admin', 'ops')`;
const COLUMNS = 'date, status, action, parameter, job_id, attempt, destination, actor, worker';
const at = (seconds: number) => `TIMESTAMP('2026-01-01') + INTERVAL n * 3 + ${seconds} SECOND`;
const SEED_STATEMENTS = [
  'CREATE TABLE bench_digits (d TINYINT NOT NULL PRIMARY KEY)',
  'INSERT INTO bench_digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)',
  'CREATE TABLE bench_seq (n INT NOT NULL PRIMARY KEY)',
  `INSERT INTO bench_seq SELECT STRAIGHT_JOIN ${Array.from(
    { length: DIGITS },
    (_, i) => `t${i}.d * ${10 ** (DIGITS - 1 - i)}`,
  ).join(' + ')} + 1 FROM ${Array.from({ length: DIGITS }, (_, i) => `bench_digits t${i}`).join(', ')}`,
  `INSERT INTO log (${COLUMNS}) SELECT ${at(0)}, 'queued', ${COMMON}, 'api' FROM bench_seq ORDER BY n`,
  `INSERT INTO log (${COLUMNS}) SELECT ${at(1)}, 'active', ${COMMON}, 'worker' FROM bench_seq
     WHERE n % 20 <> 18 AND n % 40 <> 19 ORDER BY n`,
  `INSERT INTO log (${COLUMNS}, code, files, bytes, duration_ms, snapshot)
   SELECT ${at(2)}, CASE WHEN n % 20 < 16 THEN 'completed' WHEN n % 20 < 18 THEN 'failed' ELSE 'cancelled' END,
     ${COMMON}, 'worker',
     CASE WHEN n % 20 < 16 THEN NULL WHEN n % 20 < 18 THEN 'COPY_FAILED' ELSE 'CANCELLED' END,
     IF(n % 20 < 16, 10, NULL), IF(n % 20 < 16, 40960, NULL), IF(n % 20 < 16, 12, NULL),
     IF(n % 20 < 16, CONCAT('/backups/d', n % 1000, '/snapshot-', n), NULL)
   FROM bench_seq WHERE n % 20 < 19 ORDER BY n`,
  'DROP TABLE bench_seq, bench_digits',
];

/**
 * Creates `target.database` holding the log of a million jobs, as an upgrade would find
 * it: the migrations before 005 applied, the rows written, then the rest applied (005
 * fills job_status from the log). Returns how long the rows and the upgrade took.
 */
export async function seedJobHistory(
  target: MigrationTarget,
): Promise<{ rowsSeconds: number; upgradeSeconds: number }> {
  await migrate(target, quiet, MIGRATIONS_DIR, { before: '005' });
  const started = performance.now();
  const connection = await createConnection(target);
  try {
    for (const statement of SEED_STATEMENTS) await connection.query(statement);
  } finally {
    await connection.end();
  }
  const rowsSeconds = (performance.now() - started) / 1000;
  const upgradeStarted = performance.now();
  await migrate(target, quiet);
  return { rowsSeconds, upgradeSeconds: (performance.now() - upgradeStarted) / 1000 };
}

/** The seeded job with this number. */
export function seededJobId(n: number): string {
  return `bench-${String(n).padStart(DIGITS + 1, '0')}`;
}
