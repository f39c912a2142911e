// The steps of removing one snapshot from disk, each safe to repeat after a crash: the folder
// leaves its final name in one rename (into `.coffer/pruning-<name>`), its manifest and record
// go, and only then, once the removal is logged, is the renamed folder deleted.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { JobFailure, manifestPathOf, metadataPathOf } from '@coffer/shared';
import { errorCode } from '../copy/errno.js';
import type { DestinationHandle } from './destination-handle.js';

/** A snapshot's folder name, `<UTC timestamp>-<id>`; the timestamp holds no `-`. */
const SNAPSHOT_FOLDER = /^\d{8}T\d{6}\.\d{3}Z-([A-Za-z0-9_-][A-Za-z0-9._-]*)$/;
/** What a snapshot's folder is renamed to inside `.coffer` while it is deleted. */
const PRUNING_PREFIX = 'pruning-';
// What Coffer keeps beside each snapshot in `.coffer`: its manifest, and the record of its
// source that a backup reads to choose its incremental base (see copy/snapshot.ts).
const manifestName = (name: string) => path.posix.basename(manifestPathOf(name));
const recordName = (name: string) => path.posix.basename(metadataPathOf(name));

/** Whether a snapshot's folder was there to remove, or already gone. */
export type Placement = 'present' | 'missing';

export function pruningName(name: string): string {
  return PRUNING_PREFIX + name;
}

function refused(message: string): JobFailure {
  return new JobFailure('PRUNE_FAILED', message, true);
}

/**
 * The folder name of the snapshot `id` whose catalog path is `snapshotPath`, checked as text:
 * the path must name `<destination folder>/<timestamp>-<id>` exactly, so that nothing the
 * catalog says can make a prune touch anything else. Throws a permanent `PRUNE_FAILED`.
 */
export function snapshotFolderName(folder: string, id: string, snapshotPath: string): string {
  const name = path.posix.basename(snapshotPath);
  const inside = path.posix.normalize(snapshotPath) === snapshotPath && path.posix.dirname(snapshotPath) === folder;
  if (!inside || SNAPSHOT_FOLDER.exec(name)?.[1] !== id) {
    throw refused(`the catalog places snapshot ${id} at ${snapshotPath}, which is not a snapshot folder of ${folder}`);
  }
  return name;
}

/** Where the snapshot folder `name` stands: a real folder, or gone. Anything else (a link, a file) is refused. */
export async function placement(destination: DestinationHandle, name: string): Promise<Placement> {
  let stats;
  try {
    stats = await fs.lstat(destination.entry(name));
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return 'missing';
    throw err;
  }
  if (stats.isDirectory()) return 'present';
  const kind = stats.isSymbolicLink() ? 'a link' : 'not a folder';
  throw refused(`${path.join(destination.path, name)} is ${kind}; a prune never follows or removes it`);
}

/**
 * Takes the snapshot folder `name` out of its final name, atomically, into `.coffer`, then
 * removes its manifest and record. Returns whether the folder was still there. The rename
 * moves whatever has the name without following it; the renamed folder is deleted later.
 */
export async function detach(destination: DestinationHandle, name: string): Promise<Placement> {
  const from = destination.entry(name);
  const to = destination.metadata(pruningName(name));
  if (to === null) throw new Error(`no ${path.join(destination.path, '.coffer')} to move ${name} into`);
  let placed = await placement(destination, name);
  if (placed === 'present') {
    try {
      await fs.rename(from, to);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      placed = 'missing';
    }
  }
  await dropBeside(destination, name);
  return placed;
}

/** Removes the manifest and the record Coffer keeps beside the snapshot `name`. */
export async function dropBeside(destination: DestinationHandle, name: string): Promise<void> {
  for (const beside of [manifestName(name), recordName(name)]) {
    const file = destination.metadata(beside);
    if (file !== null) await fs.rm(file, { force: true });
  }
}

/** Snapshots an interrupted prune left renamed in `.coffer`, by folder name and id. */
export async function leftovers(destination: DestinationHandle): Promise<{ name: string; id: string }[]> {
  const found: { name: string; id: string }[] = [];
  for (const entry of await destination.metadataNames()) {
    if (!entry.startsWith(PRUNING_PREFIX)) continue;
    const name = entry.slice(PRUNING_PREFIX.length);
    const id = SNAPSHOT_FOLDER.exec(name)?.[1];
    if (id !== undefined) found.push({ name, id });
  }
  return found;
}
