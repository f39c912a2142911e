import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import { STORE_MARKER } from '@coffer/shared';
import { errorCode } from './copy/errno.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The worker's BACKUP_ROOT is not the store this database's snapshots live in. */
export class StoreMismatch extends Error {
  override readonly name = 'StoreMismatch';
}

interface StoreRecord {
  id: string;
  createdBy: string;
  createdAt: string;
}

export interface StoreIdentity {
  id: string;
  /** True when this call made the store's id (first start on this database and folder). */
  created: boolean;
}

/**
 * Makes sure BACKUP_ROOT is the store this database belongs to, so that workers on several
 * hosts never write snapshots into different folders while the catalog lists them as one. The
 * first worker to start records a new id in both places (marker file and `store` row); a folder
 * with a marker but a database without a row (a database set up anew) is adopted. Throws
 * StoreMismatch, with what to do, when the two disagree or the folder has no marker while the
 * database names a store.
 */
export async function claimStore(backupRoot: string, pool: Pool, instanceName: string): Promise<StoreIdentity> {
  const marker = path.join(backupRoot, STORE_MARKER);
  let folder = await readMarker(marker);
  const recorded = await readRow(pool);
  if (recorded && !folder) throw new StoreMismatch(unmarkedMessage(backupRoot, recorded));

  let created = false;
  if (!folder) {
    const id = randomUUID();
    folder = await writeMarker(backupRoot, marker, { id, createdBy: instanceName });
    created = folder.id === id;
  }
  if (!recorded) {
    // Another worker may be doing the same from another folder: the first row wins.
    await pool.query('INSERT IGNORE INTO store (singleton, store_id, created_by) VALUES (1, ?, ?)', [
      folder.id,
      instanceName,
    ]);
  }
  const row = recorded ?? (await readRow(pool));
  if (!row) throw new Error('the store row vanished while it was written');
  if (row.id !== folder.id) throw new StoreMismatch(mismatchMessage(backupRoot, folder.id, row));
  return { id: row.id, created };
}

async function readRow(pool: Pool): Promise<StoreRecord | null> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT store_id, created_by, created_at FROM store WHERE singleton = 1',
  );
  const row = rows[0];
  if (!row) return null;
  return {
    id: String(row.store_id),
    createdBy: String(row.created_by),
    createdAt: new Date(row.created_at as string).toISOString(),
  };
}

async function readMarker(marker: string): Promise<{ id: string } | null> {
  let text: string;
  try {
    text = await fs.readFile(marker, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
  const id = (() => {
    try {
      return (JSON.parse(text) as { id?: unknown }).id;
    } catch {
      return undefined;
    }
  })();
  if (typeof id !== 'string' || !UUID.test(id)) {
    throw new StoreMismatch(`${marker} is not a Coffer store marker (expected {"id": "<uuid>", …}); fix or remove it`);
  }
  return { id };
}

/** Writes the marker whole or not at all; if another worker on the same folder wrote one first, that one is the store's. */
async function writeMarker(
  backupRoot: string,
  marker: string,
  store: { id: string; createdBy: string },
): Promise<{ id: string }> {
  await fs.mkdir(backupRoot, { recursive: true });
  const draft = `${marker}.${store.id}.tmp`;
  const text = `${JSON.stringify({ ...store, createdAt: new Date().toISOString() })}\n`;
  await fs.writeFile(draft, text, { flag: 'wx', mode: 0o644 });
  try {
    await fs.link(draft, marker);
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw error;
    const existing = await readMarker(marker);
    if (!existing) throw new Error(`${marker} was removed while this worker wrote its own`, { cause: error });
    return existing;
  } finally {
    await fs.rm(draft, { force: true });
  }
  return { id: store.id };
}

function unmarkedMessage(backupRoot: string, recorded: StoreRecord): string {
  return (
    `BACKUP_ROOT ${backupRoot} holds no ${STORE_MARKER} marker, but this database's snapshots live in store ` +
    `${recorded.id} (made by ${recorded.createdBy} at ${recorded.createdAt}). Every worker must mount that same ` +
    `shared folder at BACKUP_ROOT. If this folder is that store and only its marker was lost, write it back: ` +
    `echo '{"id":"${recorded.id}"}' > ${path.join(backupRoot, STORE_MARKER)}`
  );
}

function mismatchMessage(backupRoot: string, folderId: string, recorded: StoreRecord): string {
  return (
    `BACKUP_ROOT ${backupRoot} is store ${folderId}, but this database's snapshots live in store ${recorded.id} ` +
    `(made by ${recorded.createdBy} at ${recorded.createdAt}). Every worker must mount the same shared folder at ` +
    `BACKUP_ROOT, and one database serves one store.`
  );
}
