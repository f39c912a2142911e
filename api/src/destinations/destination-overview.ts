import type { Pool, RowDataPacket } from 'mysql2/promise';
import type { RetentionPolicy, RetentionStore } from '@coffer/shared';

/** One destination as `GET /destinations` shows it. */
export interface DestinationSummary {
  name: string;
  /** Snapshots still kept (not removed by a prune). */
  snapshots: number;
  /** When the newest kept snapshot was made; null when none is kept. */
  lastSnapshotAt: Date | null;
  /** When the newest completed backup was made, its snapshot kept or not; null before the first. */
  lastSuccessAt: Date | null;
  /** When the newest failed backup into it failed, as the log says; null when none did. */
  lastFailureAt: Date | null;
  retention: RetentionPolicy | null;
}

interface SnapshotTotals {
  kept: number;
  lastKept: Date | null;
  lastAny: Date | null;
}

const dateOrNull = (value: unknown): Date | null => (value === null || value === undefined ? null : (value as Date));

/** ` AND destination IN (?)` for `names` (expanded by the driver), or nothing when every destination is wanted. */
function onlyNames(names: readonly string[] | null): { sql: string; params: string[][] } {
  return names === null ? { sql: '', params: [] } : { sql: ' AND destination IN (?)', params: [[...names]] };
}

/**
 * What `GET /destinations` reads: the owners (`destination`), the catalog (`snapshot`), failed
 * backups (`log`) and the policies. Every destination that has an owner, a snapshot or a policy
 * is listed. Each query reads one table once; none walks the whole log.
 */
export function createDestinationOverview(pool: Pool, retention: Pick<RetentionStore, 'all'>) {
  /**
   * Destination names, by owner when one is given. Reads the `destination` table, one row per
   * destination (no index on `owner`: the table is as small as the number of destinations).
   */
  async function owned(owner: string | null): Promise<string[]> {
    const [rows] = await pool.execute<RowDataPacket[]>(
      owner === null ? 'SELECT name FROM destination' : 'SELECT name FROM destination WHERE owner = ?',
      owner === null ? [] : [owner],
    );
    return rows.map((row) => String(row.name));
  }

  /**
   * Per destination: how many snapshots are kept, the newest kept one, the newest of all.
   * Reads every catalog row of the destinations asked for once, along snapshot_destination
   * (destination, seq), so the rows arrive grouped; a count of kept snapshots needs each of them.
   */
  async function snapshotTotals(names: readonly string[] | null): Promise<Map<string, SnapshotTotals>> {
    const only = onlyNames(names);
    const [rows] = await pool.query<RowDataPacket[]>(
      'SELECT destination, SUM(deleted_at IS NULL) AS kept,' +
        ' MAX(CASE WHEN deleted_at IS NULL THEN created_at END) AS last_kept, MAX(created_at) AS last_any' +
        ` FROM snapshot WHERE 1 = 1${only.sql} GROUP BY destination`,
      only.params,
    );
    return new Map(
      rows.map((row) => [
        String(row.destination),
        { kept: Number(row.kept), lastKept: dateOrNull(row.last_kept), lastAny: dateOrNull(row.last_any) },
      ]),
    );
  }

  /**
   * Per destination, when its newest failed backup failed. Reads only the `failed` rows of the
   * log, along log_status (status, id); the rest of the log is never touched.
   */
  async function lastFailures(names: readonly string[] | null): Promise<Map<string, Date>> {
    const only = onlyNames(names);
    const [rows] = await pool.query<RowDataPacket[]>(
      "SELECT destination, MAX(date) AS last_failure FROM log WHERE status = 'failed' AND action = 'backup'" +
        ` AND destination IS NOT NULL${only.sql} GROUP BY destination`,
      only.params,
    );
    return new Map(rows.map((row) => [String(row.destination), row.last_failure as Date]));
  }

  return {
    /**
     * Every destination, sorted by name; with `owner`, only the destinations that token owns.
     * The policies come from the retention store (the whole `retention_policy` table, one row
     * per policy).
     */
    async list(owner?: string): Promise<DestinationSummary[]> {
      const ownedNames = await owned(owner ?? null);
      // An operator's view is bounded by what it owns: with nothing owned, nothing else to read.
      if (owner !== undefined && ownedNames.length === 0) return [];
      const names = owner === undefined ? null : ownedNames;
      const [totals, failures, policies] = await Promise.all([
        snapshotTotals(names),
        lastFailures(names),
        retention.all(),
      ]);
      const listed = new Set(ownedNames);
      if (names === null) {
        for (const name of totals.keys()) listed.add(name);
        for (const name of policies.keys()) listed.add(name);
      }
      // Names are ASCII: code-unit order is byte order, as MySQL's ascii_bin sorts them.
      return [...listed].sort().map((name) => {
        const snapshot = totals.get(name);
        return {
          name,
          snapshots: snapshot?.kept ?? 0,
          lastSnapshotAt: snapshot?.lastKept ?? null,
          lastSuccessAt: snapshot?.lastAny ?? null,
          lastFailureAt: failures.get(name) ?? null,
          retention: policies.get(name)?.policy ?? null,
        };
      });
    },
  };
}

export type DestinationOverview = ReturnType<typeof createDestinationOverview>;
