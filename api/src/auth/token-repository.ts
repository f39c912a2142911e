import type { Pool, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { Role } from './roles.js';

/** One row of `api_token`. `tokenHash` never leaves the API. */
export interface TokenRecord {
  id: number;
  name: string;
  tokenHash: string;
  role: Role;
  sourceRoots: string[] | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface NewToken {
  name: string;
  tokenHash: string;
  role: Role;
  sourceRoots: readonly string[] | null;
}

const COLUMNS = 'id, name, token_hash, role, source_roots, created_at, last_used_at, revoked_at';

function parseRoots(value: unknown): string[] | null {
  if (typeof value !== 'string') return null;
  const parsed: unknown = JSON.parse(value);
  return Array.isArray(parsed) ? parsed.map(String) : null;
}

function toRecord(raw: RowDataPacket): TokenRecord {
  return {
    id: Number(raw.id),
    name: raw.name as string,
    tokenHash: raw.token_hash as string,
    role: raw.role as Role,
    sourceRoots: parseRoots(raw.source_roots),
    createdAt: raw.created_at as Date,
    lastUsedAt: raw.last_used_at as Date | null,
    revokedAt: raw.revoked_at as Date | null,
  };
}

function isDuplicate(err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ER_DUP_ENTRY';
}

/** The `api_token` table. Every query is parameterised; not-found is null. */
export function createTokenRepository(pool: Pool) {
  async function one(where: string, value: string | number): Promise<TokenRecord | null> {
    const [rows] = await pool.execute<RowDataPacket[]>(`SELECT ${COLUMNS} FROM api_token WHERE ${where} = ?`, [value]);
    const row = rows[0];
    return row ? toRecord(row) : null;
  }

  return {
    /** Inserts a token; null when its name (or hash) is taken. */
    async insert(token: NewToken): Promise<number | null> {
      try {
        const [result] = await pool.execute<ResultSetHeader>(
          'INSERT INTO api_token (name, token_hash, role, source_roots) VALUES (?, ?, ?, ?)',
          [token.name, token.tokenHash, token.role, token.sourceRoots ? JSON.stringify(token.sourceRoots) : null],
        );
        return result.insertId;
      } catch (err) {
        if (isDuplicate(err)) return null;
        throw err;
      }
    },

    async byHash(tokenHash: string): Promise<TokenRecord | null> {
      return one('token_hash', tokenHash);
    },

    async byId(id: number): Promise<TokenRecord | null> {
      return one('id', id);
    },

    async byName(name: string): Promise<TokenRecord | null> {
      return one('name', name);
    },

    /** Every token, revoked ones too, oldest first. */
    async list(): Promise<TokenRecord[]> {
      const [rows] = await pool.execute<RowDataPacket[]>(`SELECT ${COLUMNS} FROM api_token ORDER BY id`);
      return rows.map(toRecord);
    },

    /** Revokes a token (a second call keeps the first date); returns it, or null when there is no such token. */
    async revoke(id: number): Promise<TokenRecord | null> {
      await pool.execute('UPDATE api_token SET revoked_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND revoked_at IS NULL', [
        id,
      ]);
      return one('id', id);
    },

    /** Gives an admin token a new secret (the old one stops working at once) and un-revokes it. */
    async rotate(id: number, tokenHash: string): Promise<void> {
      await pool.execute(
        "UPDATE api_token SET token_hash = ?, role = 'admin', revoked_at = NULL, last_used_at = NULL WHERE id = ?",
        [tokenHash, id],
      );
    },

    /** The hashes of every revoked token, for the revocation list in Redis. */
    async revokedHashes(): Promise<string[]> {
      const [rows] = await pool.execute<RowDataPacket[]>(
        'SELECT token_hash FROM api_token WHERE revoked_at IS NOT NULL',
      );
      return rows.map((row) => String(row.token_hash));
    },

    async touch(id: number): Promise<void> {
      await pool.execute('UPDATE api_token SET last_used_at = CURRENT_TIMESTAMP(3) WHERE id = ?', [id]);
    },

    async activeAdmins(): Promise<number> {
      const [rows] = await pool.execute<RowDataPacket[]>(
        "SELECT COUNT(*) AS n FROM api_token WHERE role = 'admin' AND revoked_at IS NULL",
      );
      return Number(rows[0]?.n ?? 0);
    },
  };
}

export type TokenRepository = ReturnType<typeof createTokenRepository>;
