import type { Pool, RowDataPacket } from 'mysql2/promise';
import type { RetentionPolicy } from './retention-policy.js';

/** A destination's retention policy as stored, with who set it last and when. */
export interface StoredRetention {
  destination: string;
  policy: RetentionPolicy;
  updatedBy: string | null;
  updatedAt: Date;
}

function toStored(row: RowDataPacket): StoredRetention {
  return {
    destination: String(row.destination),
    policy: JSON.parse(String(row.policy)) as RetentionPolicy,
    updatedBy: (row.updated_by as string | null) ?? null,
    updatedAt: row.updated_at as Date,
  };
}

/** The `retention_policy` table: set by the API, read by prune jobs when they run. */
export function createRetentionStore(pool: Pool) {
  return {
    async get(destination: string): Promise<StoredRetention | null> {
      const [rows] = await pool.execute<RowDataPacket[]>('SELECT * FROM retention_policy WHERE destination = ?', [
        destination,
      ]);
      const row = rows[0];
      return row ? toStored(row) : null;
    },

    /** Every destination's policy, by destination name. */
    async all(): Promise<Map<string, StoredRetention>> {
      const [rows] = await pool.execute<RowDataPacket[]>('SELECT * FROM retention_policy');
      return new Map(rows.map((row) => [String(row.destination), toStored(row)]));
    },

    /** Sets (or replaces) a destination's policy. */
    async set(destination: string, policy: RetentionPolicy, actor: string | null): Promise<StoredRetention> {
      const updatedAt = new Date();
      await pool.execute(
        'INSERT INTO retention_policy (destination, policy, updated_by, updated_at) VALUES (?, ?, ?, ?)' +
          ' ON DUPLICATE KEY UPDATE policy = VALUES(policy), updated_by = VALUES(updated_by), updated_at = VALUES(updated_at)',
        [destination, JSON.stringify(policy), actor, updatedAt],
      );
      return { destination, policy, updatedBy: actor, updatedAt };
    },

    /** Removes a destination's policy; false when it had none. */
    async remove(destination: string): Promise<boolean> {
      const [result] = await pool.execute('DELETE FROM retention_policy WHERE destination = ?', [destination]);
      return (result as { affectedRows: number }).affectedRows > 0;
    },
  };
}

export type RetentionStore = ReturnType<typeof createRetentionStore>;
