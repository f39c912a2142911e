import type { Pool, ResultSetHeader, RowDataPacket } from 'mysql2/promise';

type SqlValue = string | number | Date | null;
import type { JobStatus } from './job.js';

export type LogStatus = JobStatus | 'rejected';

/** One status transition as written; the database adds `id`. */
export interface LogEntry {
  action: 'backup';
  /** The source path as requested. */
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
  files?: number | null;
  bytes?: number | null;
  durationMs?: number | null;
  /** Name of the API token that submitted the job (or tried to, on `rejected` rows). */
  actor?: string | null;
  /** When it happened (default: now). Rows that waited in the outbox keep their own time. */
  date?: Date | string;
}

export interface LogRow extends Required<LogEntry> {
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
  'files',
  'bytes',
  'duration_ms',
  'actor',
  'date',
] as const;

const INSERT_PREFIX = `INSERT INTO log (${COLUMNS.join(', ')}) VALUES `;
const ROW_PLACEHOLDERS = `(${COLUMNS.map(() => '?').join(', ')})`;
// A transition is written at most once: retrying a write after a lost reply
// hits the unique key (job_id, attempt, status) and changes nothing.
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
    entry.files ?? null,
    entry.bytes ?? null,
    entry.durationMs ?? null,
    entry.actor ?? null,
    new Date(entry.date ?? Date.now()),
  ];
}

function toRow(raw: RowDataPacket): LogRow {
  return {
    id: Number(raw.id),
    date: raw.date as Date,
    action: raw.action as 'backup',
    parameter: raw.parameter as string,
    status: raw.status as LogStatus,
    jobId: raw.job_id as string | null,
    attempt: raw.attempt === null ? null : Number(raw.attempt),
    worker: raw.worker as string | null,
    message: raw.message as string | null,
    code: raw.code as string | null,
    destination: raw.destination as string | null,
    snapshot: raw.snapshot as string | null,
    files: raw.files === null ? null : Number(raw.files),
    bytes: raw.bytes === null ? null : Number(raw.bytes),
    durationMs: raw.duration_ms === null ? null : Number(raw.duration_ms),
    actor: (raw.actor as string | null | undefined) ?? null,
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
    /** Appends transitions in one round trip, in the given order. */
    async append(entries: LogEntry | readonly LogEntry[]): Promise<void> {
      const list = Array.isArray(entries) ? entries : [entries as LogEntry];
      if (list.length === 0) return;
      const sql = INSERT_PREFIX + list.map(() => ROW_PLACEHOLDERS).join(', ') + INSERT_SUFFIX;
      await pool.execute<ResultSetHeader>(sql, list.flatMap(values));
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
     * Job ids, newest first, by their `queued` row; with `status`, only jobs whose
     * latest transition is that status; with `actor`, only jobs that token submitted.
     * The cursor is the `queued` row's id.
     */
    async jobIds(filter: {
      status?: JobStatus;
      cursor?: number;
      limit: number;
      actor?: string;
    }): Promise<Page<{ id: number; jobId: string }>> {
      const params: SqlValue[] = [];
      let sql = "SELECT q.id, q.job_id FROM log q WHERE q.status = 'queued'";
      if (filter.cursor !== undefined) {
        sql += ' AND q.id < ?';
        params.push(filter.cursor);
      }
      if (filter.actor !== undefined) {
        sql += ' AND q.actor = ?';
        params.push(filter.actor);
      }
      if (filter.status !== undefined) {
        sql += ' AND (SELECT l.status FROM log l WHERE l.job_id = q.job_id ORDER BY l.id DESC LIMIT 1) = ?';
        params.push(filter.status);
      }
      sql += ` ORDER BY q.id DESC LIMIT ${Math.trunc(filter.limit) + 1}`;
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
