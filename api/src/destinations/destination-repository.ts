import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';

/** A destination and the token that owns it. */
export interface DestinationOwner {
  name: string;
  owner: string;
}

// One lock per database: tests and deployments sharing a server do not wait for each other.
// SHA1 keeps the name within MySQL's 64 characters whatever the database is called.
const CLAIM_LOCK = "CONCAT('coffer.destination.', SHA1(DATABASE()))";
// Below MYSQL_QUERY_TIMEOUT_MS (default 5 s), so a long wait is our refusal, not the server aborting the statement.
const CLAIM_LOCK_SECONDS = 2;

/** The folders that hold `name`: `a` and `a/b` for `a/b/c`. */
function ancestors(name: string): string[] {
  const segments = name.split('/');
  return segments.slice(1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

function queries(db: Pool | PoolConnection) {
  /** The token that owns `name`; null while nobody does. */
  async function owner(name: string): Promise<string | null> {
    const [rows] = await db.execute<RowDataPacket[]>('SELECT owner FROM destination WHERE name = ?', [name]);
    const row = rows[0];
    return row ? String(row.owner) : null;
  }

  return {
    owner,

    /**
     * Destinations of tokens other than `except` whose folder holds `name` or lies inside it,
     * nearest first. Names are ASCII compared byte for byte, so everything below `name/` sorts
     * between `name/` and `name0` ('0' follows '/').
     */
    async neighbours(name: string, except: string): Promise<DestinationOwner[]> {
      const above = ancestors(name);
      const conditions = ['(name >= ? AND name < ?)'];
      const params = [`${name}/`, `${name}0`];
      if (above.length > 0) {
        conditions.push(`name IN (${above.map(() => '?').join(', ')})`);
        params.push(...above);
      }
      const [rows] = await db.execute<RowDataPacket[]>(
        `SELECT name, owner FROM destination WHERE (${conditions.join(' OR ')}) AND owner <> ? ORDER BY LENGTH(name) DESC, name LIMIT 10`,
        [...params, except],
      );
      return rows.map((row) => ({ name: String(row.name), owner: String(row.owner) }));
    },

    /** Records `claimant` as the owner of `name` unless someone owns it already; returns the owner. */
    async claim(name: string, claimant: string): Promise<string> {
      await db.execute('INSERT INTO destination (name, owner) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name', [
        name,
        claimant,
      ]);
      const recorded = await owner(name);
      if (recorded === null) throw new Error(`destination "${name}" vanished right after it was claimed`);
      return recorded;
    },
  };
}

export type DestinationQueries = ReturnType<typeof queries>;

/** The `destination` table. Every query is parameterised; not-found is null. */
export function createDestinationRepository(pool: Pool) {
  return {
    async owner(name: string): Promise<string | null> {
      return queries(pool).owner(name);
    },

    /**
     * Runs `work` while no other claim runs against this database (a MySQL named lock), so a
     * check of the neighbours and the claim that follows it are one step: two tokens can never
     * both claim `a` and `a/b`. Claims are rare (the first backup into a destination).
     */
    async serialised<T>(work: (queries: DestinationQueries) => Promise<T>): Promise<T> {
      const connection = await pool.getConnection();
      try {
        const [rows] = await connection.query<RowDataPacket[]>(`SELECT GET_LOCK(${CLAIM_LOCK}, ?) AS got`, [
          CLAIM_LOCK_SECONDS,
        ]);
        if (Number(rows[0]?.got) !== 1) throw new Error('cannot take the destination claim lock');
        try {
          return await work(queries(connection));
        } finally {
          await connection.query(`SELECT RELEASE_LOCK(${CLAIM_LOCK})`);
        }
      } finally {
        connection.release();
      }
    },
  };
}

export type DestinationRepository = ReturnType<typeof createDestinationRepository>;
