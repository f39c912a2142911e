import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import { createMysqlPool, MysqlTimeoutError, type MysqlLimits } from '@coffer/shared';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

let env: TestEnvironment;
const pools: Pool[] = [];

const LIMITS: MysqlLimits = { queryTimeoutMs: 300, acquireTimeoutMs: 200, queueLimit: 100, connectTimeoutMs: 2000 };

function pool(options: { connectionLimit?: number; limits?: Partial<MysqlLimits>; port?: number } = {}): Pool {
  const created = createMysqlPool(
    { ...env.config.mysql, ...(options.port === undefined ? {} : { port: options.port }) },
    { connectionLimit: options.connectionLimit ?? 2, limits: { ...LIMITS, ...options.limits } },
  );
  pools.push(created);
  return created;
}

/** Settles with the outcome of `work`, or fails the test if it has not settled within `ms` (a hang). */
async function settled<T>(work: Promise<T>, ms = 15_000): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([Promise.allSettled([work]).then(([result]) => result as PromiseSettledResult<T>), hang]);
  } finally {
    clearTimeout(timer);
  }
}

beforeAll(async () => {
  env = await createTestEnvironment();
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  await env.cleanup();
});

describe('MySQL pool limits', () => {
  it('sets the limits in every session, under the name the server knows', async () => {
    const [[row]] = await pool({ limits: { queryTimeoutMs: 1500 } }).query<RowDataPacket[]>(
      'SELECT VERSION() AS version, @@session.lock_wait_timeout AS lockWait, @@session.innodb_lock_wait_timeout AS rowLockWait, @@session.time_zone AS zone',
    );
    expect(row).toMatchObject({ lockWait: 2, rowLockWait: 2, zone: '+00:00' });
    const mariadb = /mariadb/i.test(String(row?.version));
    const [[limit]] = await pool({ limits: { queryTimeoutMs: 1500 } }).query<RowDataPacket[]>(
      mariadb ? 'SELECT @@session.max_statement_time AS value' : 'SELECT @@session.max_execution_time AS value',
    );
    expect(Number(limit?.value)).toBe(mariadb ? 1.5 : 1500);
  });

  it('has the server stop a statement that runs too long, and keeps the connection usable', async () => {
    const db = pool({ connectionLimit: 1 });

    const slow = await settled(db.query('SELECT SLEEP(60) AS slept'));

    // MariaDB aborts the statement (max_statement_time); MySQL ends the sleep early (max_execution_time).
    if (slow.status === 'fulfilled') expect(slow.value[0]).toEqual([{ slept: 1 }]);
    else expect(String(slow.reason)).not.toContain('did not answer');
    const [rows] = await db.query<RowDataPacket[]>('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
  });

  it('gives up waiting for a free connection at the deadline, and the pool recovers', async () => {
    const db = pool({ connectionLimit: 1 });
    const held = await db.getConnection();

    const waited = await settled(db.query('SELECT 1'));

    expect(waited.status).toBe('rejected');
    expect(waited.status === 'rejected' && waited.reason).toBeInstanceOf(MysqlTimeoutError);
    held.release();
    const [rows] = await db.query<RowDataPacket[]>('SELECT 2 AS two');
    expect(rows).toEqual([{ two: 2 }]);
  });

  it('refuses callers beyond the queue limit at once', async () => {
    const db = pool({ connectionLimit: 1, limits: { queueLimit: 1, acquireTimeoutMs: 10_000 } });
    const held = await db.getConnection();
    const queued = db.query('SELECT 1 AS one');

    const refused = await settled(db.query('SELECT 1'));

    expect(refused.status).toBe('rejected');
    expect(refused.status === 'rejected' && String(refused.reason)).toContain('Queue limit');
    held.release();
    expect((await queued)[0]).toEqual([{ one: 1 }]);
  });

  it('drops a connection whose server stops answering, at the deadline, and carries on with a new one', async () => {
    const relay = await createFreezableRelay(env.config.mysql.port);
    try {
      const db = pool({ connectionLimit: 1, port: relay.port });
      expect((await db.query<RowDataPacket[]>('SELECT 1 AS one'))[0]).toEqual([{ one: 1 }]);
      relay.freeze();

      const stalled = await settled(db.query('SELECT 2'));

      expect(stalled.status === 'rejected' && stalled.reason).toBeInstanceOf(MysqlTimeoutError);
      relay.thaw();
      expect((await db.query<RowDataPacket[]>('SELECT 3 AS three'))[0]).toEqual([{ three: 3 }]);
    } finally {
      await relay.close();
    }
  });
});

/** A TCP relay to the MySQL server that can stop forwarding what clients send (a server that hangs). */
async function createFreezableRelay(targetPort: number) {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(socket);
      });
    }
    client.on('data', (chunk) => {
      if (!frozen) upstream.write(chunk);
    });
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
