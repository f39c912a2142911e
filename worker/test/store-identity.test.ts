import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { STORE_MARKER, createMysqlPool } from '@coffer/shared';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';
import { StoreMismatch, claimStore } from '../src/store-identity.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let env: TestEnvironment;
let pool: Pool;
let folders = 0;

beforeAll(async () => {
  env = await createTestEnvironment();
  pool = createMysqlPool(env.config.mysql);
});

afterAll(async () => {
  await pool.end();
  await env.cleanup();
});

beforeEach(async () => {
  await pool.query('DELETE FROM store');
});

/** A new folder that could be a worker's BACKUP_ROOT. */
async function folder(): Promise<string> {
  folders += 1;
  const dir = join(env.dir, `store-${folders}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function storeRows(): Promise<RowDataPacket[]> {
  const [rows] = await pool.query<RowDataPacket[]>('SELECT store_id, created_by FROM store');
  return rows;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => null,
    (error: unknown) => error,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

describe('the backup store', () => {
  it('is made by the first worker: a marker in BACKUP_ROOT and a row, the same id; later starts find it', async () => {
    const root = await folder();

    const first = await claimStore(root, pool, 'worker-a');
    const again = await claimStore(root, pool, 'worker-b');

    expect(first.created).toBe(true);
    expect(again).toEqual({ id: first.id, created: false });
    const marker = JSON.parse(await readFile(join(root, STORE_MARKER), 'utf8')) as { id: string; createdBy: string };
    expect(marker).toMatchObject({ id: first.id, createdBy: 'worker-a' });
    expect(await storeRows()).toEqual([{ store_id: first.id, created_by: 'worker-a' }]);
    // Nothing else left in the folder.
    expect(await readdir(root)).toEqual([STORE_MARKER]);
  });

  it('refuses a worker whose BACKUP_ROOT is another, empty folder, saying which store it should see', async () => {
    const shared = await folder();
    const { id } = await claimStore(shared, pool, 'worker-a');
    const local = await folder();

    const err = await rejection(claimStore(local, pool, 'worker-b'));

    expect(err).toBeInstanceOf(StoreMismatch);
    expect(err.message).toContain(`BACKUP_ROOT ${local} holds no ${STORE_MARKER} marker`);
    expect(err.message).toContain(`store ${id} (made by worker-a`);
    expect(await readdir(local)).toEqual([]);
  });

  it("refuses a folder that is another store, and one whose marker is not Coffer's", async () => {
    const { id } = await claimStore(await folder(), pool, 'worker-a');
    const other = await folder();
    const otherId = '00000000-0000-4000-8000-000000000000';
    await writeFile(join(other, STORE_MARKER), JSON.stringify({ id: otherId }));
    const garbled = await folder();
    await writeFile(join(garbled, STORE_MARKER), 'not json');

    const mismatch = await rejection(claimStore(other, pool, 'worker-b'));
    const unreadable = await rejection(claimStore(garbled, pool, 'worker-b'));

    expect(mismatch).toBeInstanceOf(StoreMismatch);
    expect(mismatch.message).toContain(
      `BACKUP_ROOT ${other} is store ${otherId}, but this database's snapshots live in store ${id}`,
    );
    expect(unreadable).toBeInstanceOf(StoreMismatch);
    expect(unreadable.message).toContain('is not a Coffer store marker');
  });

  it('adopts a marked folder when the database has no store yet (a database set up anew)', async () => {
    const root = await folder();
    const { id } = await claimStore(root, pool, 'worker-a');
    await pool.query('DELETE FROM store');

    expect(await claimStore(root, pool, 'worker-b')).toEqual({ id, created: false });
    expect(await storeRows()).toEqual([{ store_id: id, created_by: 'worker-b' }]);
  });

  it('gives workers starting together on one new folder one store, and on two folders refuses all but one', async () => {
    const root = await folder();
    const together = await Promise.all([1, 2, 3, 4].map((n) => claimStore(root, pool, `worker-${n}`)));
    expect(new Set(together.map(({ id }) => id)).size).toBe(1);
    expect(together.filter(({ created }) => created)).toHaveLength(1);

    await pool.query('DELETE FROM store');
    await rm(join(root, STORE_MARKER));
    const apart = await Promise.allSettled([folder(), folder()].map(async (dir) => claimStore(await dir, pool, 'w')));
    expect(apart.map(({ status }) => status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(apart.find((outcome) => outcome.status === 'rejected')?.reason).toBeInstanceOf(StoreMismatch);
  });

  it('stops a worker process whose BACKUP_ROOT is not the store, with exit code 1 and the reason', async () => {
    await claimStore(await folder(), pool, 'worker-a');
    const elsewhere = await folder();

    const child = spawn(process.execPath, [join(ROOT, 'worker/dist/main.js')], {
      env: { ...env.variables, BACKUP_ROOT: elsewhere, LOG_LEVEL: 'info', INSTANCE_NAME: 'worker-elsewhere' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));

    expect(code, output).toBe(1);
    expect(output).toContain(`BACKUP_ROOT ${elsewhere} holds no ${STORE_MARKER} marker`);
  });
});
