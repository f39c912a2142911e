import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { BackupRequest } from '../jobs/backup-request.js';

/** A schedule as stored: the truth Redis's job schedulers are made from. */
export interface ScheduleRecord {
  name: string;
  /** Fields separated by single spaces, as checked. */
  cron: string;
  timezone: string;
  /** The backup each run asks for, as the client gave it; checked again at every run. */
  backup: BackupRequest;
  /** The token that created the schedule: each run has its rights. */
  actor: string;
  createdAt: Date;
  updatedAt: Date;
  /** The newest run's job; null until the first run is queued. */
  lastJobId: string | null;
  /** That job's status as the log has it (job_status); null without a run. */
  lastStatus: string | null;
}

export type NewSchedule = Pick<ScheduleRecord, 'name' | 'cron' | 'timezone' | 'backup' | 'actor'>;
export type ScheduleChange = Pick<ScheduleRecord, 'cron' | 'timezone' | 'backup'>;

const SELECT =
  'SELECT s.name, s.cron, s.timezone, s.backup, s.actor, s.created_at, s.updated_at, s.last_job_id,' +
  ' j.status AS last_status FROM schedule s LEFT JOIN job_status j ON j.job_id = s.last_job_id';

function toRecord(row: RowDataPacket): ScheduleRecord {
  return {
    name: String(row.name),
    cron: String(row.cron),
    timezone: String(row.timezone),
    backup: JSON.parse(String(row.backup)) as BackupRequest,
    actor: String(row.actor),
    createdAt: row.created_at as Date,
    updatedAt: row.updated_at as Date,
    lastJobId: (row.last_job_id as string | null) ?? null,
    lastStatus: (row.last_status as string | null | undefined) ?? null,
  };
}

function isDuplicate(err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ER_DUP_ENTRY';
}

/** The `schedule` table. Every query is parameterised; not-found is null (or false). */
export function createScheduleStore(pool: Pool) {
  return {
    async get(name: string): Promise<ScheduleRecord | null> {
      const [rows] = await pool.execute<RowDataPacket[]>(`${SELECT} WHERE s.name = ?`, [name]);
      const row = rows[0];
      return row ? toRecord(row) : null;
    },

    /** Every schedule, or only those `actor` created, by name. */
    async list(actor?: string): Promise<ScheduleRecord[]> {
      const [rows] =
        actor === undefined
          ? await pool.execute<RowDataPacket[]>(`${SELECT} ORDER BY s.name`)
          : await pool.execute<RowDataPacket[]>(`${SELECT} WHERE s.actor = ? ORDER BY s.name`, [actor]);
      return rows.map(toRecord);
    },

    /** Adds a schedule; false when the name is taken. */
    async insert(schedule: NewSchedule): Promise<boolean> {
      try {
        await pool.execute(
          'INSERT INTO schedule (name, cron, timezone, backup, actor, created_at, updated_at)' +
            ' VALUES (?, ?, ?, ?, ?, CURRENT_TIMESTAMP(3), CURRENT_TIMESTAMP(3))',
          [schedule.name, schedule.cron, schedule.timezone, JSON.stringify(schedule.backup), schedule.actor],
        );
        return true;
      } catch (err) {
        if (isDuplicate(err)) return false;
        throw err;
      }
    },

    /** Replaces what a schedule runs and when (its creator and runs stay); false when there is no such schedule. */
    async replace(name: string, change: ScheduleChange): Promise<boolean> {
      const [result] = await pool.execute<ResultSetHeader>(
        'UPDATE schedule SET cron = ?, timezone = ?, backup = ?, updated_at = CURRENT_TIMESTAMP(3) WHERE name = ?',
        [change.cron, change.timezone, JSON.stringify(change.backup), name],
      );
      return result.affectedRows > 0;
    },

    async remove(name: string): Promise<boolean> {
      const [result] = await pool.execute<ResultSetHeader>('DELETE FROM schedule WHERE name = ?', [name]);
      return result.affectedRows > 0;
    },

    /** A job's status as the log has it; null when the log has no row of it. */
    async jobStatus(jobId: string): Promise<string | null> {
      const [rows] = await pool.execute<RowDataPacket[]>('SELECT status FROM job_status WHERE job_id = ?', [jobId]);
      const row = rows[0];
      return row ? String(row.status) : null;
    },
  };
}

export type ScheduleStore = ReturnType<typeof createScheduleStore>;

/** Records the job a run queued, inside the lock `lockSchedule` holds. */
export type RecordRun = (jobId: string) => Promise<void>;

/**
 * Runs `work` holding the schedule's row lock (null when there is no such schedule), so that two
 * runs of one schedule are never decided at once: each sees the job the other queued. A change
 * or removal of the schedule waits for it. Errors roll back and propagate.
 */
export async function lockSchedule<T>(
  pool: Pool,
  name: string,
  work: (schedule: ScheduleRecord | null, recordRun: RecordRun) => Promise<T>,
): Promise<T> {
  const connection: PoolConnection = await pool.getConnection();
  try {
    await connection.query('START TRANSACTION');
    const [rows] = await connection.execute<RowDataPacket[]>(
      'SELECT name, cron, timezone, backup, actor, created_at, updated_at, last_job_id FROM schedule' +
        ' WHERE name = ? FOR UPDATE',
      [name],
    );
    const row = rows[0];
    const recordRun: RecordRun = async (jobId) => {
      await connection.execute('UPDATE schedule SET last_job_id = ? WHERE name = ?', [jobId, name]);
    };
    const outcome = await work(row ? toRecord(row) : null, recordRun);
    await connection.query('COMMIT');
    return outcome;
  } catch (err) {
    // A connection that cannot even roll back is not handed to anyone else.
    await connection.query('ROLLBACK').catch(() => connection.destroy());
    throw err;
  } finally {
    connection.release();
  }
}
