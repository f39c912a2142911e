import { createPool, type Pool } from 'mysql2/promise';
import type { MysqlSettings } from './config.js';

/** A pool for the log database; every session runs in UTC so TIMESTAMP columns round-trip. */
export function createMysqlPool(settings: MysqlSettings, options: { connectionLimit?: number } = {}): Pool {
  const pool = createPool({
    host: settings.host,
    port: settings.port,
    user: settings.user,
    password: settings.password,
    database: settings.database,
    connectionLimit: options.connectionLimit ?? 10,
    timezone: 'Z',
    supportBigNumbers: true,
    connectTimeout: 5000,
    enableKeepAlive: true,
  });
  pool.pool.on('connection', (connection) => {
    connection.query("SET time_zone = '+00:00'");
  });
  return pool;
}
