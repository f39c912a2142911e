import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { JobKind } from './job-contract.js';
import { JOB_STATUSES, isTerminal, type JobStatus } from './job.js';
import { applyCatalogChanges, type CatalogChange } from './snapshot-catalog.js';

type SqlValue = string | number | Date | null;

/**
 * `rejected`: a request refused (no job). `removed`: a snapshot a prune job removed, one row per
 * snapshot (attempt NULL); it is not a transition of that job and never changes its status.
 */
export type LogStatus = JobStatus | 'rejected' | 'removed';
export const LOG_STATUSES: readonly LogStatus[] = [...JOB_STATUSES, 'rejected', 'removed'];

/** One status transition as written; the database adds `id`. */
export interface LogEntry {
  /** The kind of job; every row of a job has the same. */
  action: JobKind;
  /** What the job acts on: a backup's source path as requested, a restore's target, … */
  parameter: string;
  status: LogStatus;
  jobId: string | null;
  attempt: number | null;
  worker: string | null;
  message?: string | null;
  /** A FailureCode, or an API code such as QUEUE_UNAVAILABLE. */
  code?: string | null;
  destination?: string | null;
  snapshot?: string | null;
  /** The snapshot a restore or verify job reads, or a `removed` row's snapshot (its id: the id of the backup that made it). */
  snapshotId?: string | null;
  /** The schedule a backup ran for. */
  schedule?: string | null;
  files?: number | null;
  bytes?: number | null;
  durationMs?: number | null;
  /** Name of the API token that submitted the job (or tried to, on `rejected` rows). */
  actor?: string | null;
  /** When it happened (default: now). Rows that waited in the outbox keep their own time. */
  date?: Date | string;
  /**
   * The catalog change this transition makes (a completed backup's snapshot, a verification's
   * outcome), written in the same transaction as the row, and only if the row is in the log.
   */
  catalog?: CatalogChange;
}

export interface LogRow extends Required<Omit<LogEntry, 'catalog'>> {
  id: number;
  date: Date;
}

export interface LogQuery {
  jobId?: string;
  status?: LogStatus;
  since?: Date;
  until?: Date;
  /** Rows with an id below this one (the previous page's `nextCursor`). */
  cursor?: number;
  limit: number;
  /** Only rows recorded for this token name. */
  actor?: string;
}

export interface JobIdQuery {
  status?: JobStatus;
  kind?: JobKind;
  /** Jobs queued before this `queued` row id (the previous page's `nextCursor`). */
  cursor?: number;
  limit: number;
  /** Only jobs this token submitted. */
  actor?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: number | null;
}

const COLUMNS = [
  'action',
  'parameter',
  'status',
  'job_id',
  'attempt',
  'worker',
  'message',
  'code',
  'destination',
  'snapshot',
  'snapshot_id',
  'files',
  'bytes',
  'duration_ms',
  'actor',
  'schedule',
  'date',
] as const;

const INSERT_PREFIX = `INSERT INTO log (${COLUMNS.join(', ')}) VALUES `;
const ROW_PLACEHOLDERS = `(${COLUMNS.map(() => '?').join(', ')})`;
// A transition is written at most once: retrying a write after a lost reply
// hits a unique key (job_id, attempt, status; one terminal row per job; one `removed` row per
// snapshot) and changes nothing.
const INSERT_SUFFIX = ' ON DUPLICATE KEY UPDATE id = id';

function values(entry: LogEntry): SqlValue[] {
  return [
    entry.action,
    entry.parameter,
    entry.status,
    entry.jobId,
    entry.attempt,
    entry.worker,
    entry.message ?? null,
    entry.code ?? null,
    entry.destination ?? null,
    entry.snapshot ?? null,
    entry.snapshotId ?? null,
    entry.files ?? null,
    entry.bytes ?? null,
    entry.durationMs ?? null,
    entry.actor ?? null,
    entry.schedule ?? null,
    new Date(entry.date ?? Date.now()),
  ];
}

// job_status: each job's current status, the one its view shows: the terminal row's if it has
// one, else the latest row's. `status_seq` orders a job's rows so that the upsert keeps the
// highest whatever order concurrent writers commit in: the row id, plus TERMINAL_SEQ for a
// terminal row, which so outranks every other (ids stay far below 2^52).
const TERMINAL_SEQ = 2 ** 52;
const UPSERT_JOB_STATUS_PREFIX = 'INSERT INTO job_status (job_id, status, status_seq, queued_id, actor, kind) VALUES ';
const UPSERT_JOB_STATUS_SUFFIX =
  ' ON DUPLICATE KEY UPDATE' +
  ' status = IF(VALUES(status_seq) > status_seq, VALUES(status), status),' +
  ' status_seq = GREATEST(status_seq, VALUES(status_seq)),' +
  ' actor = IF(VALUES(queued_id) IS NULL, actor, VALUES(actor)),' +
  ' kind = IF(VALUES(queued_id) IS NULL, kind, VALUES(kind)),' +
  ' queued_id = COALESCE(VALUES(queued_id), queued_id)';

const ER_LOCK_DEADLOCK = 1213;
const TRANSACTION_TRIES = 3;

interface JobStatusRow {
  jobId: string;
  status: string;
  seq: number;
  queuedId: number | null;
  actor: string | null;
  kind: string;
}

/** The job_status rows the given log rows (every row of those jobs) call for. */
function jobStatuses(rows: readonly RowDataPacket[]): JobStatusRow[] {
  const byJob = new Map<string, JobStatusRow>();
  for (const row of rows) {
    const jobId = String(row.job_id);
    const id = Number(row.id);
    const status = String(row.status);
    if (status === 'removed') continue;
    const kind = String(row.action);
    const seq = id + (isTerminal(status) ? TERMINAL_SEQ : 0);
    // Until the queued row is seen, the kind is any row's: a job's rows all have the same action.
    const job = byJob.get(jobId) ?? { jobId, status, seq, queuedId: null, actor: null, kind };
    if (seq >= job.seq) Object.assign(job, { status, seq });
    if (status === 'queued' && (job.queuedId === null || id < job.queuedId)) {
      Object.assign(job, { queuedId: id, actor: (row.actor as string | null) ?? null, kind });
    }
    byJob.set(jobId, job);
  }
  // Always the same lock order, so two writers cannot deadlock on each other's rows.
  return [...byJob.values()].sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
}

/** Every row of these jobs, their own just inserted included, inside the caller's transaction. */
async function jobRows(connection: PoolConnection, jobIds: readonly string[]): Promise<RowDataPacket[]> {
  if (jobIds.length === 0) return [];
  const [rows] = await connection.query<RowDataPacket[]>(
    'SELECT id, job_id, attempt, status, action, actor FROM log WHERE job_id IN (?)',
    [jobIds],
  );
  return rows;
}

/**
 * Brings job_status in step with the log for the jobs of `rows` (every row of those jobs),
 * inside the caller's transaction. It keeps the highest `status_seq`, so a concurrent writer
 * that sees other rows cannot undo it.
 */
async function refreshJobStatus(connection: PoolConnection, rows: readonly RowDataPacket[]): Promise<void> {
  const statuses = jobStatuses(rows);
  if (statuses.length === 0) return;
  await connection.query(
    UPSERT_JOB_STATUS_PREFIX + statuses.map(() => '(?, ?, ?, ?, ?, ?)').join(', ') + UPSERT_JOB_STATUS_SUFFIX,
    statuses.flatMap((job) => [job.jobId, job.status, job.seq, job.queuedId, job.actor, job.kind]),
  );
}

const transitionKey = (jobId: unknown, attempt: unknown, status: unknown) =>
  JSON.stringify([String(jobId), attempt === null ? null : Number(attempt), String(status)]);

/**
 * The catalog changes of the entries whose transition the log holds: one delivered again
 * still counts (its row is there), one the log refused (a second terminal row of a job) does not.
 */
function recordedChanges(entries: readonly LogEntry[], rows: readonly RowDataPacket[]): CatalogChange[] {
  const inLog = new Set(rows.map((row) => transitionKey(row.job_id, row.attempt, row.status)));
  return entries.flatMap((entry) =>
    entry.catalog !== undefined &&
    (entry.jobId === null || inLog.has(transitionKey(entry.jobId, entry.attempt, entry.status)))
      ? [entry.catalog]
      : [],
  );
}

/** Runs `work` in a transaction; a deadlock (the server rolled back) is tried again. */
async function inTransaction(pool: Pool, work: (connection: PoolConnection) => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    const connection = await pool.getConnection();
    try {
      await connection.query('START TRANSACTION');
      await work(connection);
      await connection.query('COMMIT');
      return;
    } catch (err) {
      // A connection that cannot even roll back is not handed to anyone else.
      await connection.query('ROLLBACK').catch(() => connection.destroy());
      if (attempt >= TRANSACTION_TRIES || (err as { errno?: unknown }).errno !== ER_LOCK_DEADLOCK) throw err;
    } finally {
      connection.release();
    }
  }
}

function toRow(raw: RowDataPacket): LogRow {
  return {
    id: Number(raw.id),
    date: raw.date as Date,
    action: raw.action as JobKind,
    parameter: raw.parameter as string,
    status: raw.status as LogStatus,
    jobId: raw.job_id as string | null,
    attempt: raw.attempt === null ? null : Number(raw.attempt),
    worker: raw.worker as string | null,
    message: raw.message as string | null,
    code: raw.code as string | null,
    destination: raw.destination as string | null,
    snapshot: raw.snapshot as string | null,
    snapshotId: (raw.snapshot_id as string | null | undefined) ?? null,
    files: raw.files === null ? null : Number(raw.files),
    bytes: raw.bytes === null ? null : Number(raw.bytes),
    durationMs: raw.duration_ms === null ? null : Number(raw.duration_ms),
    actor: (raw.actor as string | null | undefined) ?? null,
    schedule: (raw.schedule as string | null | undefined) ?? null,
  };
}

function pageOf<T extends { id: number }>(rows: T[], limit: number): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last ? last.id : null };
}

/** The `log` table: appended to by the API and workers, read by dashboards. */
export function createLogRepository(pool: Pool) {
  return {
    /**
     * Appends transitions in one INSERT, in the given order, and in the same transaction brings
     * their jobs' rows of job_status in step and applies their catalog changes. Appending the
     * same entries again changes nothing.
     */
    async append(entries: LogEntry | readonly LogEntry[]): Promise<void> {
      const list: readonly LogEntry[] = Array.isArray(entries) ? entries : [entries as LogEntry];
      if (list.length === 0) return;
      const sql = INSERT_PREFIX + list.map(() => ROW_PLACEHOLDERS).join(', ') + INSERT_SUFFIX;
      const jobIds = [...new Set(list.flatMap((entry) => (entry.jobId === null ? [] : [entry.jobId])))];
      if (jobIds.length === 0 && list.every((entry) => entry.catalog === undefined)) {
        // `rejected` rows only: nothing to keep in step.
        await pool.execute<ResultSetHeader>(sql, list.flatMap(values));
        return;
      }
      await inTransaction(pool, async (connection) => {
        await connection.execute<ResultSetHeader>(sql, list.flatMap(values));
        const rows = await jobRows(connection, jobIds);
        await refreshJobStatus(connection, rows);
        await applyCatalogChanges(connection, recordedChanges(list, rows));
      });
    },

    /** Log rows, newest first, filtered and paged by id. */
    async query(filter: LogQuery): Promise<Page<LogRow>> {
      const where: string[] = [];
      const params: SqlValue[] = [];
      if (filter.jobId !== undefined) {
        where.push('job_id = ?');
        params.push(filter.jobId);
      }
      if (filter.status !== undefined) {
        where.push('status = ?');
        params.push(filter.status);
      }
      if (filter.since !== undefined) {
        where.push('date >= ?');
        params.push(filter.since);
      }
      if (filter.until !== undefined) {
        where.push('date < ?');
        params.push(filter.until);
      }
      if (filter.cursor !== undefined) {
        where.push('id < ?');
        params.push(filter.cursor);
      }
      if (filter.actor !== undefined) {
        where.push('actor = ?');
        params.push(filter.actor);
      }
      const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
      // LIMIT is inlined: prepared statements reject a placeholder there on some servers.
      const sql = `SELECT * FROM log ${clause} ORDER BY id DESC LIMIT ${Math.trunc(filter.limit) + 1}`;
      const [rows] = await pool.execute<RowDataPacket[]>(sql, params);
      return pageOf(rows.map(toRow), filter.limit);
    },

    /** Every row of one job, oldest first; empty when the job is unknown. */
    async history(jobId: string): Promise<LogRow[]> {
      const [rows] = await pool.execute<RowDataPacket[]>('SELECT * FROM log WHERE job_id = ? ORDER BY id', [jobId]);
      return rows.map(toRow);
    },

    /** Rows of several jobs, oldest first, grouped by job id. */
    async histories(jobIds: readonly string[]): Promise<Map<string, LogRow[]>> {
      const byJob = new Map<string, LogRow[]>(jobIds.map((id) => [id, []]));
      if (jobIds.length === 0) return byJob;
      const [rows] = await pool.query<RowDataPacket[]>('SELECT * FROM log WHERE job_id IN (?) ORDER BY id', [jobIds]);
      for (const row of rows.map(toRow)) {
        if (row.jobId !== null) byJob.get(row.jobId)?.push(row);
      }
      return byJob;
    },

    /**
     * Job ids, newest first, by their `queued` row; with `status`, only jobs in that status
     * (the terminal one once they have one, else their latest transition's, as their view
     * says; read from job_status); with `kind`, only jobs of that kind; with `actor`, only
     * jobs that token submitted. The cursor is the `queued` row's id.
     */
    async jobIds(filter: JobIdQuery): Promise<Page<{ id: number; jobId: string }>> {
      const params: SqlValue[] = [];
      let sql: string;
      if (filter.status === undefined) {
        sql = "SELECT id, job_id FROM log WHERE status = 'queued'";
        if (filter.kind !== undefined) {
          sql += ' AND action = ?';
          params.push(filter.kind);
        }
      } else {
        // Served by job_status_status (status, queued_id) or job_status_actor (actor, status, queued_id),
        // with a kind by job_status_kind (kind, status, queued_id) or job_status_actor_kind.
        sql = 'SELECT queued_id AS id, job_id FROM job_status WHERE status = ? AND queued_id IS NOT NULL';
        params.push(filter.status);
        if (filter.kind !== undefined) {
          sql += ' AND kind = ?';
          params.push(filter.kind);
        }
      }
      const order = filter.status === undefined ? 'id' : 'queued_id';
      if (filter.cursor !== undefined) {
        sql += ` AND ${order} < ?`;
        params.push(filter.cursor);
      }
      if (filter.actor !== undefined) {
        sql += ' AND actor = ?';
        params.push(filter.actor);
      }
      sql += ` ORDER BY ${order} DESC LIMIT ${Math.trunc(filter.limit) + 1}`;
      const [rows] = await pool.execute<RowDataPacket[]>(sql, params);
      const items = rows.map((r) => ({ id: Number(r.id), jobId: String(r.job_id) }));
      return pageOf(items, filter.limit);
    },

    async ping(): Promise<void> {
      await pool.query('SELECT 1');
    },
  };
}

export type LogRepository = ReturnType<typeof createLogRepository>;
