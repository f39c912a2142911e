import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobFailure, createMysqlPool } from '@coffer/shared';
import { createPruneLocks, pruneLockName } from '../src/prune/prune-lock.js';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';

// The lock that keeps prunes of one destination apart, against the real MariaDB.

let env: TestEnvironment;
let pool: Pool;
let observer: Pool;
/** GET_LOCK calls made through `pool`, by MySQL connection id. */
const tries = new Map<number, number>();

beforeAll(async () => {
  env = await createTestEnvironment();
  pool = counting(createMysqlPool(env.config.mysql, { connectionLimit: 4 }));
  observer = createMysqlPool(env.config.mysql, { connectionLimit: 1 });
});

afterAll(async () => {
  await pool?.end();
  await observer?.end();
  await env?.cleanup();
});

/** `pool`, its connections counting their GET_LOCK calls in `tries`: a test sees a prune waiting. */
function counting(inner: Pool): Pool {
  const getConnection = inner.getConnection.bind(inner);
  return Object.assign(inner, {
    async getConnection(): Promise<PoolConnection> {
      const connection = await getConnection();
      const query = connection.query.bind(connection) as (sql: string, values?: unknown) => Promise<unknown>;
      return Object.assign(connection, {
        query: (async (sql: string, values?: unknown) => {
          if (sql.includes('GET_LOCK')) tries.set(connection.threadId, (tries.get(connection.threadId) ?? 0) + 1);
          return query(sql, values);
        }) as PoolConnection['query'],
      });
    },
  });
}

async function holder(name: string): Promise<number | null> {
  const [rows] = await observer.query<RowDataPacket[]>('SELECT IS_USED_LOCK(?) AS holder', [name]);
  const value = rows[0]?.holder as number | null | undefined;
  return value === null || value === undefined ? null : Number(value);
}

describe('the prune lock of a destination', () => {
  it('is named per database and destination, within the 64 characters MySQL allows', () => {
    const names = [
      pruneLockName('db1', 'a'),
      pruneLockName('db2', 'a'),
      pruneLockName('db1', 'b'),
      pruneLockName('db1', 'x/'.repeat(500) + 'y'),
    ];
    expect(new Set(names).size).toBe(4);
    for (const name of names) expect(name.length).toBeLessThanOrEqual(64);
  });

  it('makes a second prune of the same destination wait until the first releases it, then hands it over', async () => {
    tries.clear();
    const locks = createPruneLocks(pool, env.config.mysql.database);
    const name = pruneLockName(env.config.mysql.database, 'same');
    const first = await locks.acquire({ destination: 'same' });
    const firstHolder = await holder(name);
    expect(firstHolder).not.toBeNull();

    let secondHeld = false;
    const second = locks.acquire({ destination: 'same' }).then((lock) => {
      secondHeld = true;
      return lock;
    });
    // The second has asked, been refused and asked again: it is waiting.
    await waitFor(async () =>
      [...tries.entries()].some(([id, n]) => id !== firstHolder && n >= 2) ? true : undefined,
    );
    expect(secondHeld).toBe(false);
    expect(await holder(name)).toBe(firstHolder);

    await first.release();
    const lock = await second;
    const secondHolder = await holder(name);
    expect(secondHolder).not.toBeNull();
    expect(secondHolder).not.toBe(firstHolder);
    await lock.assertHeld();
    await lock.release();
    expect(await holder(name)).toBeNull();
  });

  it('lets prunes of other destinations run at once', async () => {
    const locks = createPruneLocks(pool, env.config.mysql.database);
    const [a, b] = await Promise.all([locks.acquire({ destination: 'one' }), locks.acquire({ destination: 'two' })]);
    await a.release();
    await b.release();
  });

  it('gives up after the bounded wait with a transient PRUNE_FAILED', async () => {
    const locks = createPruneLocks(pool, env.config.mysql.database);
    const first = await locks.acquire({ destination: 'busy' });
    try {
      const err: unknown = await locks.acquire({ destination: 'busy', waitMs: 300 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(JobFailure);
      expect(err).toMatchObject({ code: 'PRUNE_FAILED', permanent: false });
    } finally {
      await first.release();
    }
  });

  it('stops waiting when the job is cancelled', async () => {
    const locks = createPruneLocks(pool, env.config.mysql.database);
    const first = await locks.acquire({ destination: 'cancelled' });
    try {
      const controller = new AbortController();
      const waiting = locks.acquire({ destination: 'cancelled', signal: controller.signal }).catch((e: unknown) => e);
      controller.abort('cancelled by request');
      expect(await waiting).toBe('cancelled by request');
    } finally {
      await first.release();
    }
  });

  it('tells when its connection dropped and the lock with it', async () => {
    const locks = createPruneLocks(pool, env.config.mysql.database);
    const lock = await locks.acquire({ destination: 'dropped' });
    const id = await holder(pruneLockName(env.config.mysql.database, 'dropped'));
    await observer.query(`KILL ${Number(id)}`);
    await expect(lock.assertHeld()).rejects.toThrow();
    await lock.release();
    // Freed with its connection: another prune takes it at once.
    const next = await locks.acquire({ destination: 'dropped', waitMs: 0 });
    await next.release();
  });
});
