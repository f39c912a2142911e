import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import { JobFailure } from '@coffer/shared';

/** How long a prune waits for another prune of the same destination to end. */
export const DEFAULT_LOCK_WAIT_MS = 5 * 60_000;
// GET_LOCK is asked without waiting and asked again after this: a waiting GET_LOCK would have
// to stay under the server's statement limit (MYSQL_QUERY_TIMEOUT_MS), and a pause here is
// one a cancel can cut short.
const POLL_MS = 200;

/**
 * The name of the MySQL lock of one destination. Named locks are server-wide, so the name
 * holds the database (two Coffer installations, or two test runs, share a server); hashed,
 * since a destination may be far longer than the 64 characters a lock name may have.
 */
export function pruneLockName(database: string, destination: string): string {
  const digest = createHash('sha256').update(database).update('\0').update(destination).digest('hex');
  return `coffer-prune-${digest.slice(0, 48)}`;
}

/** One held lock: one prune of its destination runs. */
export interface PruneLock {
  /** Throws unless the lock is still this one's (its connection may have dropped, which frees it). */
  assertHeld(): Promise<void>;
  /** Frees the lock and its connection; never throws. */
  release(): Promise<void>;
}

export interface LockRequest {
  destination: string;
  /** A cancel stops the wait. */
  signal?: AbortSignal;
  /** How long to wait for another prune to end. Default `DEFAULT_LOCK_WAIT_MS`. */
  waitMs?: number;
}

/**
 * One prune per destination at a time, across every worker: a MySQL named lock, held by a
 * connection of `pool` taken for the prune's whole run. `pool` must be the locks' own, with a
 * connection per job a worker runs at once, so that holding a lock never starves other queries.
 */
export function createPruneLocks(pool: Pool, database: string) {
  return {
    async acquire({ destination, signal, waitMs = DEFAULT_LOCK_WAIT_MS }: LockRequest): Promise<PruneLock> {
      const name = pruneLockName(database, destination);
      const deadline = Date.now() + waitMs;
      const connection = await pool.getConnection();
      try {
        for (;;) {
          signal?.throwIfAborted();
          const [rows] = await connection.query<RowDataPacket[]>('SELECT GET_LOCK(?, 0) AS got', [name]);
          if (Number(rows[0]?.got) === 1) return heldLock(connection, name);
          if (Date.now() >= deadline) {
            throw new JobFailure(
              'PRUNE_FAILED',
              `another prune of destination "${destination}" has been running for more than ${Math.round(waitMs / 1000)} s`,
              false,
            );
          }
          await delay(POLL_MS, undefined, { signal });
        }
      } catch (err) {
        connection.release();
        // An aborted pause rejects with its own error; the abort's reason is what callers match.
        if (signal?.aborted) throw signal.reason;
        throw err;
      }
    },
  };
}

export type PruneLocks = ReturnType<typeof createPruneLocks>;

function heldLock(connection: PoolConnection, name: string): PruneLock {
  let released = false;
  return {
    async assertHeld() {
      const [rows] = await connection.query<RowDataPacket[]>('SELECT IS_USED_LOCK(?) = CONNECTION_ID() AS mine', [
        name,
      ]);
      if (Number(rows[0]?.mine) !== 1)
        throw new Error(`the prune lock ${name} was lost (its MySQL connection dropped)`);
    },
    async release() {
      if (released) return;
      released = true;
      try {
        await connection.query('DO RELEASE_LOCK(?)', [name]);
        connection.release();
      } catch {
        // Closing the connection frees every lock it holds.
        connection.destroy();
      }
    },
  };
}
