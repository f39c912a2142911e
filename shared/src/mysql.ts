import { createPool, type Pool, type PoolConnection } from 'mysql2/promise';
import { DEFAULT_MYSQL_LIMITS, type MysqlLimits, type MysqlSettings } from './config.js';

/** A wait on MySQL that passed its deadline: no free connection in time, or no answer. */
export class MysqlTimeoutError extends Error {
  override readonly name = 'MysqlTimeoutError';
  readonly code = 'MYSQL_TIMEOUT';
}

/** How much longer than the server's own limit the client waits before it drops a connection. */
const CLIENT_GRACE_MS = 1000;

/**
 * The session settings of every connection: UTC, so TIMESTAMP columns round-trip, and
 * limits the server enforces itself, so a statement nobody waits for any more does not go
 * on holding or queueing for locks. Lock waits take whole seconds on both servers; the
 * statement limit differs: MariaDB's `max_statement_time` (seconds, every statement)
 * against MySQL 8's `max_execution_time` (milliseconds, SELECT only). Executable comments
 * pick one: MariaDB runs `/*M! … *\/` and ignores `/*!80000 … *\/`; MySQL does the reverse.
 */
export function sessionSettings(queryTimeoutMs: number): string {
  const lockSeconds = Math.max(1, Math.ceil(queryTimeoutMs / 1000));
  return (
    `SET SESSION time_zone = '+00:00', lock_wait_timeout = ${lockSeconds}, innodb_lock_wait_timeout = ${lockSeconds}` +
    ` /*M!, max_statement_time = ${queryTimeoutMs / 1000} */ /*!80000 , max_execution_time = ${queryTimeoutMs} */`
  );
}

async function withDeadline<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MysqlTimeoutError(message)), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

// mysql2's statement methods, reduced to what the wrappers forward (their overloads differ only in types).
type Statement = (sql: unknown, values?: unknown) => Promise<unknown>;

/**
 * Puts a deadline on every wait a pool's users can run into. mysql2 has no acquire
 * timeout (a caller waits for a free connection forever) and no default statement
 * timeout, so `query`, `execute` and `getConnection` of the pool (and the statements
 * of connections it hands out) are wrapped.
 */
function withDeadlines(pool: Pool, limits: MysqlLimits): Pool {
  const statementMs = limits.queryTimeoutMs + CLIENT_GRACE_MS;
  const getConnection = pool.getConnection.bind(pool);

  async function acquire(): Promise<PoolConnection> {
    const pending = getConnection();
    try {
      return await withDeadline(
        pending,
        limits.acquireTimeoutMs,
        `no MySQL connection became free within ${limits.acquireTimeoutMs} ms`,
      );
    } catch (err) {
      // A connection handed over after the deadline goes back at once.
      pending.then(
        (connection) => connection.release(),
        () => undefined,
      );
      throw err;
    }
  }

  function bounded(connection: PoolConnection, method: 'query' | 'execute'): Statement {
    const run = (connection[method] as Statement).bind(connection);
    return async (sql, values) => {
      try {
        return await withDeadline(run(sql, values), statementMs, `MySQL did not answer within ${statementMs} ms`);
      } catch (err) {
        // The connection may still be busy with the statement: drop it rather than reuse it.
        if (err instanceof MysqlTimeoutError) connection.destroy();
        throw err;
      }
    };
  }

  function pooled(method: 'query' | 'execute'): Statement {
    return async (sql, values) => {
      const connection = await acquire();
      try {
        return await bounded(connection, method)(sql, values);
      } finally {
        connection.release();
      }
    };
  }

  return Object.assign(pool, {
    query: pooled('query') as Pool['query'],
    execute: pooled('execute') as Pool['execute'],
    async getConnection(): Promise<PoolConnection> {
      const connection = await acquire();
      return Object.assign(connection, {
        query: bounded(connection, 'query') as PoolConnection['query'],
        execute: bounded(connection, 'execute') as PoolConnection['execute'],
      });
    },
  });
}

/**
 * A pool for the log database. Every wait on it is bounded by `limits` (default: the
 * MYSQL_* variables' defaults), so a held lock or a full pool costs a caller a few
 * seconds and an error, never an open-ended wait.
 */
export function createMysqlPool(
  settings: MysqlSettings,
  options: { connectionLimit?: number; limits?: MysqlLimits } = {},
): Pool {
  const limits = options.limits ?? DEFAULT_MYSQL_LIMITS;
  const pool = createPool({
    host: settings.host,
    port: settings.port,
    user: settings.user,
    password: settings.password,
    database: settings.database,
    connectionLimit: options.connectionLimit ?? 10,
    queueLimit: limits.queueLimit,
    timezone: 'Z',
    supportBigNumbers: true,
    connectTimeout: limits.connectTimeoutMs,
    enableKeepAlive: true,
  });
  const settingsSql = sessionSettings(limits.queryTimeoutMs);
  pool.pool.on('connection', (connection) => {
    // Queued ahead of the caller's first statement. A connection without its limits is not used.
    connection.query(settingsSql, (err: unknown) => {
      if (err) connection.destroy();
    });
  });
  return withDeadlines(pool, limits);
}
