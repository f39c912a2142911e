import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import {
  createLogOutbox,
  createLogRepository,
  createMysqlPool,
  createSnapshotCatalog,
  type LogEntry,
  type LogRepository,
  type SnapshotCatalog,
  type SnapshotFacts,
} from '@coffer/shared';
import { createTestEnvironment, silentLogger, type TestEnvironment } from '../../test/helpers/environment.js';

let env: TestEnvironment;
let pool: Pool;
let log: LogRepository;
let catalog: SnapshotCatalog;

beforeAll(async () => {
  env = await createTestEnvironment();
  pool = createMysqlPool(env.config.mysql);
  log = createLogRepository(pool);
  catalog = createSnapshotCatalog(pool);
});

afterAll(async () => {
  await pool.end();
  await env.cleanup();
});

function facts(id: string, destination = 'd', actor: string | null = 'ops'): SnapshotFacts {
  return {
    id,
    destination,
    source: `/srv/${id}`,
    path: `/backups/${destination}/20261129T010203.456Z-${id}`,
    createdAt: '2026-11-29T01:02:03.456Z',
    files: 3,
    bytes: 10,
    filesLinked: 1,
    bytesLinked: 4,
    manifestSha256: 'a'.repeat(64),
    actor,
  };
}

/** A backup's rows as its worker writes them: queued, then completed with its snapshot. */
function completedBackup(snapshot: SnapshotFacts): [LogEntry, LogEntry] {
  const row = {
    action: 'backup',
    parameter: snapshot.source,
    jobId: snapshot.id,
    attempt: 1,
    worker: 'test',
    destination: snapshot.destination,
    actor: snapshot.actor,
  } as const;
  return [
    { ...row, status: 'queued' },
    { ...row, status: 'completed', snapshot: snapshot.path, catalog: { kind: 'snapshot', snapshot } },
  ];
}

function verified(jobId: string, snapshotId: string, verify: 'ok' | 'damaged', at: string): LogEntry {
  return {
    action: 'verify',
    parameter: '/backups/x',
    status: verify === 'ok' ? 'completed' : 'failed',
    jobId,
    attempt: 1,
    worker: 'test',
    snapshotId,
    catalog: { kind: 'verified', snapshotId, verify, at },
  };
}

async function count(table: 'log' | 'snapshot', column: string, id: string): Promise<number> {
  const [rows] = await pool.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${table} WHERE ${column} = ?`, [id]);
  return Number(rows[0]?.n);
}

describe('the snapshot catalog, written with the log', () => {
  it("records a completed backup's snapshot in the transaction of its completed row", async () => {
    const id = randomUUID();
    await log.append(completedBackup(facts(id)));

    expect(await catalog.get(id)).toEqual({
      ...facts(id),
      seq: expect.any(Number) as number,
      createdAt: new Date('2026-11-29T01:02:03.456Z'),
      verifiedAt: null,
      verify: null,
      deletedAt: null,
    });
    expect(await catalog.get(randomUUID())).toBeNull();
  });

  it('changes nothing when the same batch is appended again (the outbox may deliver twice)', async () => {
    const id = randomUUID();
    // As the outbox carries it: through JSON.
    const batch = JSON.parse(JSON.stringify(completedBackup(facts(id)))) as LogEntry[];
    await log.append(batch);
    const first = await catalog.get(id);
    await log.append(batch);

    expect(await catalog.get(id)).toEqual(first);
    expect(await count('snapshot', 'id', id)).toBe(1);
    expect(await count('log', 'job_id', id)).toBe(2);
  });

  it('travels with its row through the log outbox, as a worker records it while MySQL is away', async () => {
    const id = randomUUID();
    const redis = new Redis(env.redisUrl);
    try {
      const outbox = createLogOutbox({ redis, prefix: env.config.queuePrefix, logStore: log, logger: silentLogger });
      // Not started: the rows wait in Redis, as they do while MySQL is down.
      await outbox.record(completedBackup(facts(id)), { path: facts(id).path });
      expect(await catalog.get(id)).toBeNull();

      await outbox.flush();

      expect(await catalog.get(id)).toMatchObject({ id, manifestSha256: 'a'.repeat(64), actor: 'ops' });
      expect(await outbox.backlog()).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('leaves no catalog row when the log INSERT fails', async () => {
    const id = randomUUID();
    const [queued, completed] = completedBackup(facts(id));
    await log.append(queued);
    // NULL into a NOT NULL column fails a one-row INSERT in every SQL mode.
    const broken = { ...completed, parameter: null as unknown as string };

    await expect(log.append(broken)).rejects.toThrow();

    expect(await catalog.get(id)).toBeNull();
  });

  it('leaves no log row when the catalog change fails', async () => {
    const id = randomUUID();
    const snapshot = { ...facts(id), manifestSha256: null as unknown as string };

    await expect(log.append(completedBackup(snapshot))).rejects.toThrow();

    expect(await count('log', 'job_id', id)).toBe(0);
    expect(await catalog.get(id)).toBeNull();
  });

  it('applies no change of a row the log refused: a job that already ended another way', async () => {
    const id = randomUUID();
    const [queued, completed] = completedBackup(facts(id));
    await log.append([queued, { ...queued, status: 'cancelled' }]);

    await log.append(completed);

    expect((await log.history(id)).map((row) => row.status)).toEqual(['queued', 'cancelled']);
    expect(await catalog.get(id)).toBeNull();
  });

  it("records a verification's outcome; an older one delivered late does not overwrite a newer", async () => {
    const id = randomUUID();
    await log.append(completedBackup(facts(id)));

    await log.append(verified(randomUUID(), id, 'damaged', '2026-11-30T00:00:00.000Z'));
    expect(await catalog.get(id)).toMatchObject({
      verify: 'damaged',
      verifiedAt: new Date('2026-11-30T00:00:00.000Z'),
    });

    await log.append(verified(randomUUID(), id, 'ok', '2026-11-29T12:00:00.000Z'));
    expect(await catalog.get(id)).toMatchObject({ verify: 'damaged' });

    await log.append(verified(randomUUID(), id, 'ok', '2026-12-01T00:00:00.000Z'));
    expect(await catalog.get(id)).toMatchObject({ verify: 'ok', verifiedAt: new Date('2026-12-01T00:00:00.000Z') });
  });
});

describe('the snapshot catalog, read', () => {
  const destination = `list-${randomUUID()}`;
  const ids = Array.from({ length: 5 }, () => randomUUID());

  beforeAll(async () => {
    for (const [i, id] of ids.entries()) await log.append(completedBackup(facts(id, destination, `token${i % 2}`)));
  });

  it('lists newest first, paged without overlap, filtered by destination', async () => {
    const seen: string[] = [];
    let cursor: number | undefined;
    for (;;) {
      const page = await catalog.list({ destination, limit: 2, cursor });
      seen.push(...page.items.map((item) => item.id));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it('lists one token’s snapshots when asked', async () => {
    const page = await catalog.list({ destination, actor: 'token1', limit: 10 });
    expect(page.items.map((item) => item.id)).toEqual([ids[3], ids[1]]);
  });

  it('hides snapshots marked deleted unless asked for them', async () => {
    const other = `deleted-${randomUUID()}`;
    const [kept, gone] = [randomUUID(), randomUUID()];
    await log.append([...completedBackup(facts(kept, other)), ...completedBackup(facts(gone, other))]);
    await log.append(removedRow(randomUUID(), gone, '2026-12-02T00:00:00.000Z'));

    expect((await catalog.list({ destination: other, limit: 10 })).items.map((item) => item.id)).toEqual([kept]);
    const all = await catalog.list({ destination: other, deleted: true, limit: 10 });
    expect(all.items.map((item) => item.id)).toEqual([gone, kept]);
    expect(all.items[0]?.deletedAt).toEqual(new Date('2026-12-02T00:00:00.000Z'));
  });

  it('says which snapshots an unfinished restore or verify job is still to read', async () => {
    const [read, free] = [randomUUID(), randomUUID()];
    const job = randomUUID();
    const row = {
      action: 'verify',
      parameter: '/x',
      jobId: job,
      attempt: 1,
      worker: 'test',
      snapshotId: read,
    } as const;
    await log.append({ ...row, status: 'queued' });

    expect(await catalog.holds([read, free])).toEqual(new Set([read]));

    await log.append({ ...row, status: 'completed' });
    expect(await catalog.holds([read, free])).toEqual(new Set());
    expect(await catalog.holds([])).toEqual(new Set());
  });

  it("does not count a prune's own removal rows as a read of the snapshots it removes", async () => {
    const snapshot = randomUUID();
    const prune = randomUUID();
    await log.append([...completedBackup(facts(snapshot)), { ...pruneRow(prune, snapshot), status: 'queued' }]);
    await log.append(removedRow(prune, snapshot, '2026-12-04T00:00:00.000Z'));

    expect(await catalog.holds([snapshot])).toEqual(new Set());
  });

  it("marks a snapshot deleted with the prune's removed row, once, whatever is delivered again", async () => {
    const [first, second] = [randomUUID(), randomUUID()];
    const prune = randomUUID();
    await log.append([...completedBackup(facts(first)), ...completedBackup(facts(second))]);
    await log.append([
      { ...pruneRow(prune, null), status: 'queued' },
      { ...pruneRow(prune, null), status: 'active' },
    ]);
    const removals = [
      removedRow(prune, first, '2026-12-04T00:00:00.000Z'),
      removedRow(prune, second, '2026-12-04T00:00:01.000Z'),
    ];
    await log.append(removals);
    // The outbox may deliver a batch again, later.
    await log.append([first, second].map((snapshotId) => removedRow(prune, snapshotId, '2026-12-05T00:00:00.000Z')));

    const history = await log.history(prune);
    expect(history.map((row) => [row.status, row.snapshotId])).toEqual([
      ['queued', null],
      ['active', null],
      ['removed', first],
      ['removed', second],
    ]);
    expect((await catalog.get(first))?.deletedAt).toEqual(new Date('2026-12-04T00:00:00.000Z'));
    expect((await catalog.get(second))?.deletedAt).toEqual(new Date('2026-12-04T00:00:01.000Z'));
    // Removal rows are not transitions: the prune is still active until its own terminal row.
    const [status] = await pool.query<RowDataPacket[]>('SELECT status FROM job_status WHERE job_id = ?', [prune]);
    expect(status[0]?.status).toBe('active');
    await log.append({ ...pruneRow(prune, null), status: 'completed' });
    const [after] = await pool.query<RowDataPacket[]>('SELECT status FROM job_status WHERE job_id = ?', [prune]);
    expect(after[0]?.status).toBe('completed');
  });
});

describe('waiting for the catalog', () => {
  it('tells when a snapshot is recorded, or deleted, and gives up at its deadline', async () => {
    const id = randomUUID();
    expect(await catalog.until(id, 'recorded', 50)).toBe(false);
    await log.append(completedBackup(facts(id)));
    expect(await catalog.until(id, 'recorded', 50)).toBe(true);
    expect(await catalog.until(id, 'deleted', 50)).toBe(false);
    await log.append(removedRow(randomUUID(), id, '2026-12-06T00:00:00.000Z'));
    expect(await catalog.until(id, 'deleted', 50)).toBe(true);
  });
});

function pruneRow(jobId: string, snapshotId: string | null) {
  return { action: 'prune', parameter: 'd', jobId, attempt: 1, worker: 'test', destination: 'd', snapshotId } as const;
}

function removedRow(jobId: string, snapshotId: string, at: string): LogEntry {
  return {
    ...pruneRow(jobId, snapshotId),
    parameter: `/backups/d/${snapshotId}`,
    status: 'removed',
    attempt: null,
    message: `removed snapshot ${snapshotId}`,
    catalog: { kind: 'deleted', snapshotId, at },
  };
}
