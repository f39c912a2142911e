import { setTimeout as delay } from 'node:timers/promises';
import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import { TERMINAL_STATUSES } from './job.js';

/** What a verification found: every entry as its manifest says, or some not. */
export type VerifyOutcome = 'ok' | 'damaged';

/** A completed backup as the catalog records it; dates are ISO-8601 strings so it survives JSON. */
export interface SnapshotFacts {
  /** The id of the backup job that made it. */
  id: string;
  destination: string;
  source: string;
  /** The snapshot folder. */
  path: string;
  createdAt: string;
  files: number;
  bytes: number;
  filesLinked: number;
  bytesLinked: number;
  manifestSha256: string;
  /** The token that submitted the backup. */
  actor: string | null;
}

/**
 * A change to the catalog, carried by the log entry that reports it, so the two are written in
 * one transaction (and travel together through the log outbox while MySQL is away).
 */
export type CatalogChange =
  | { kind: 'snapshot'; snapshot: SnapshotFacts }
  | { kind: 'verified'; snapshotId: string; verify: VerifyOutcome; at: string }
  /** A prune removed the snapshot's folder and manifest; the row stays, with `deletedAt`. */
  | { kind: 'deleted'; snapshotId: string; at: string };

/** One row of the catalog: the facts of its backup, and what happened to it since. */
export interface SnapshotRecord extends Omit<SnapshotFacts, 'createdAt'> {
  /** The listing's order and cursor. */
  seq: number;
  createdAt: Date;
  verifiedAt: Date | null;
  verify: VerifyOutcome | null;
  deletedAt: Date | null;
}

export interface SnapshotQuery {
  destination?: string;
  /** Also the snapshots marked deleted. Default: only those still kept. */
  deleted?: boolean;
  /** Only snapshots of backups this token submitted. */
  actor?: string;
  /** Snapshots listed after this `seq` (the previous page's `nextCursor`). */
  cursor?: number;
  limit: number;
}

/** How often `until` looks at the catalog again. */
const CATALOG_POLL_MS = 25;

const INSERT_SNAPSHOT =
  'INSERT INTO snapshot (id, destination, source, path, created_at, files, bytes, files_linked, bytes_linked,' +
  ' manifest_sha256, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)' +
  // A change delivered again (outbox retries) finds its snapshot recorded and leaves it as it is.
  ' ON DUPLICATE KEY UPDATE seq = seq';

// The newest verification wins, whatever order deliveries arrive in.
const RECORD_VERIFICATION =
  'UPDATE snapshot SET verify = ?, verified_at = ? WHERE id = ? AND (verified_at IS NULL OR verified_at <= ?)';

// The first removal is kept: a row delivered again does not move it.
const RECORD_DELETION = 'UPDATE snapshot SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL';

/**
 * Applies catalog changes inside the caller's transaction (the log INSERT that reports them).
 * Idempotent: applying the same changes again changes nothing.
 */
export async function applyCatalogChanges(
  connection: PoolConnection,
  changes: readonly CatalogChange[],
): Promise<void> {
  for (const change of changes) {
    if (change.kind === 'snapshot') {
      const s = change.snapshot;
      await connection.execute(INSERT_SNAPSHOT, [
        s.id,
        s.destination,
        s.source,
        s.path,
        new Date(s.createdAt),
        s.files,
        s.bytes,
        s.filesLinked,
        s.bytesLinked,
        s.manifestSha256,
        s.actor,
      ]);
    } else if (change.kind === 'verified') {
      const at = new Date(change.at);
      await connection.execute(RECORD_VERIFICATION, [change.verify, at, change.snapshotId, at]);
    } else {
      await connection.execute(RECORD_DELETION, [new Date(change.at), change.snapshotId]);
    }
  }
}

const nullableDate = (value: unknown): Date | null => (value === null ? null : (value as Date));

function toRecord(raw: RowDataPacket): SnapshotRecord {
  return {
    seq: Number(raw.seq),
    id: String(raw.id),
    destination: String(raw.destination),
    source: String(raw.source),
    path: String(raw.path),
    createdAt: raw.created_at as Date,
    files: Number(raw.files),
    bytes: Number(raw.bytes),
    filesLinked: Number(raw.files_linked),
    bytesLinked: Number(raw.bytes_linked),
    manifestSha256: String(raw.manifest_sha256),
    actor: raw.actor as string | null,
    verifiedAt: nullableDate(raw.verified_at),
    verify: raw.verify as VerifyOutcome | null,
    deletedAt: nullableDate(raw.deleted_at),
  };
}

/** The `snapshot` table: written with the log (applyCatalogChanges), read by the API and workers. */
export function createSnapshotCatalog(pool: Pool) {
  /** One snapshot, deleted or not; null when the catalog has none with this id. */
  async function get(id: string): Promise<SnapshotRecord | null> {
    const [rows] = await pool.execute<RowDataPacket[]>('SELECT * FROM snapshot WHERE id = ?', [id]);
    const row = rows[0];
    return row ? toRecord(row) : null;
  }

  return {
    get,

    /**
     * Snapshots, newest first (the order they were recorded in, which is the order their
     * backups completed), paged by `seq`. Served by snapshot_destination or snapshot_actor.
     */
    async list(filter: SnapshotQuery): Promise<{ items: SnapshotRecord[]; nextCursor: number | null }> {
      const where: string[] = [];
      const params: (string | number)[] = [];
      if (filter.destination !== undefined) {
        where.push('destination = ?');
        params.push(filter.destination);
      }
      if (filter.actor !== undefined) {
        where.push('actor = ?');
        params.push(filter.actor);
      }
      if (filter.deleted !== true) where.push('deleted_at IS NULL');
      if (filter.cursor !== undefined) {
        where.push('seq < ?');
        params.push(filter.cursor);
      }
      const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
      // LIMIT is inlined: prepared statements reject a placeholder there on some servers.
      const sql = `SELECT * FROM snapshot ${clause} ORDER BY seq DESC LIMIT ${Math.trunc(filter.limit) + 1}`;
      const [rows] = await pool.execute<RowDataPacket[]>(sql, params);
      const items = rows.slice(0, filter.limit).map(toRecord);
      const last = items.at(-1);
      return { items, nextCursor: rows.length > filter.limit && last ? last.seq : null };
    },

    /**
     * Waits, at most `timeoutMs`, until the catalog shows snapshot `id` recorded (or deleted):
     * a worker's rows reach MySQL through the log outbox a moment after it recorded them.
     * False when the deadline passed first.
     */
    async until(id: string, shows: 'recorded' | 'deleted', timeoutMs: number): Promise<boolean> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const record = await get(id);
        if (record !== null && (shows === 'recorded' || record.deletedAt !== null)) return true;
        if (Date.now() > deadline) return false;
        await delay(CATALOG_POLL_MS);
      }
    },

    /**
     * The snapshots among `ids` that an unfinished restore or verify job is still to read (or
     * reading): a prune keeps them. Served by log_snapshot_id.
     */
    async holds(ids: readonly string[]): Promise<Set<string>> {
      if (ids.length === 0) return new Set();
      const [rows] = await pool.query<RowDataPacket[]>(
        'SELECT DISTINCT log.snapshot_id FROM log JOIN job_status ON job_status.job_id = log.job_id' +
          " WHERE log.snapshot_id IN (?) AND job_status.kind IN ('restore', 'verify')" +
          ' AND job_status.status NOT IN (?)',
        [ids, TERMINAL_STATUSES],
      );
      return new Set(rows.map((row) => String(row.snapshot_id)));
    },
  };
}

export type SnapshotCatalog = ReturnType<typeof createSnapshotCatalog>;
