import { promises as fs } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { JobFailure } from '@coffer/shared';
import { copyTree, type CopyOptions, type CopyReport } from './copy-tree.js';
import { removeTree } from './remove-tree.js';
import { toSnapshotFailure, type SnapshotPaths } from './snapshot-failure.js';

export interface SnapshotRequest {
  /** Real path, already checked against the allowed roots by the caller. */
  source: string;
  /** Absolute. */
  backupRoot: string;
  /** Relative name, already validated (`[A-Za-z0-9._-]` segments separated by `/`, no `..`). */
  destination: string;
  jobId: string;
  /** Names the snapshot folder. */
  startedAt: Date;
  /**
   * Hard-link the files unchanged since the newest complete snapshot in the same folder
   * (same size, mode and mtime) instead of copying them, as `rsync --link-dest`. Each
   * snapshot still holds every file, and deleting an older one never harms a newer one.
   * Default true.
   */
  incremental?: boolean;
  /** Copy threads (see `CopyOptions.threads`). Default: one per core. */
  threads?: number;
  /** Aborting stops the copy, removes the partial folder and rejects with `signal.reason`. */
  signal?: AbortSignal;
  onProgress?: CopyOptions['onProgress'];
}

export interface SnapshotResult extends CopyReport {
  /** The snapshot folder, `<backupRoot>/<destination>/<snapshotName>`. */
  path: string;
  /** Time spent copying, in milliseconds. */
  durationMs: number;
}

// The job id becomes part of a path, so it must stay one harmless name.
const SAFE_JOB_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
// `<timestamp>-<job id>`; the timestamp holds no '-', so the first one after it splits.
const SNAPSHOT_NAME = /^\d{8}T\d{6}\.\d{3}Z-(.+)$/;
const PARTIAL_PREFIX = '.partial-';

/** `20261127T191045.123Z-<jobId>`: UTC, sortable, no ':' (awkward in paths on some systems). */
export function snapshotName(startedAt: Date, jobId: string): string {
  return `${startedAt.toISOString().replace(/[-:]/g, '')}-${jobId}`;
}

/**
 * Copies `source` into a new snapshot, all or nothing: the copy is made in a hidden
 * `.partial-<jobId>` folder beside the snapshot and renamed to its final name only
 * once complete. On failure or abort the partial folder is removed and the error
 * rethrown: a `JobFailure` when its cause is known, the abort reason unchanged,
 * anything else unchanged (transient).
 */
export async function createSnapshot(request: SnapshotRequest): Promise<SnapshotResult> {
  assertSafeJobId(request.jobId);
  request.signal?.throwIfAborted();
  const folder = path.join(request.backupRoot, request.destination);
  const paths: SnapshotPaths = { source: request.source, backupRoot: request.backupRoot, folder };
  let previous: string | undefined;
  try {
    previous = await prepareFolder(folder, request.jobId);
  } catch (error) {
    throw toSnapshotFailure(error, paths, 'destination');
  }
  const partial = path.join(folder, PARTIAL_PREFIX + request.jobId);
  const finalPath = path.join(folder, snapshotName(request.startedAt, request.jobId));
  const started = performance.now();
  try {
    const report = await copyTree(request.source, partial, {
      previous: request.incremental === false ? undefined : previous,
      threads: request.threads,
      signal: request.signal,
      onProgress: request.onProgress,
    });
    // A job cancelled after its last file must not appear as a finished snapshot.
    request.signal?.throwIfAborted();
    await fs.rename(partial, finalPath);
    return { ...report, path: finalPath, durationMs: Math.round(performance.now() - started) };
  } catch (error) {
    await discardPartial(partial);
    if (request.signal?.aborted) throw request.signal.reason;
    throw toSnapshotFailure(error, paths);
  }
}

/**
 * Creates the destination folder and removes what an earlier attempt of the same job
 * left: its partial folder, and a final folder it may have renamed just before
 * crashing, unrecorded. Redoing the copy is safer than trusting either.
 *
 * Returns the newest complete snapshot of another job in the folder, if any: a final
 * name appears only once a copy is complete, and `.partial-*` folders never qualify.
 */
async function prepareFolder(folder: string, jobId: string): Promise<string | undefined> {
  await fs.mkdir(folder, { recursive: true });
  const leftovers: string[] = [];
  let newest: string | undefined;
  // One call for the whole listing: iterating it entry by entry (a promise each) took a
  // tenth of a worker's time on tiny jobs, once a folder held a few dozen snapshots.
  for (const entry of await fs.readdir(folder, { withFileTypes: true })) {
    if (isLeftoverOf(entry.name, jobId)) leftovers.push(path.join(folder, entry.name));
    // The names start with a sortable UTC timestamp.
    else if (entry.isDirectory() && SNAPSHOT_NAME.test(entry.name) && (newest === undefined || entry.name > newest)) {
      newest = entry.name;
    }
  }
  for (const leftover of leftovers) await removeTree(leftover);
  return newest === undefined ? undefined : path.join(folder, newest);
}

function isLeftoverOf(name: string, jobId: string): boolean {
  return name === PARTIAL_PREFIX + jobId || SNAPSHOT_NAME.exec(name)?.[1] === jobId;
}

async function discardPartial(partial: string): Promise<void> {
  try {
    await removeTree(partial);
  } catch {
    // The copy's own error is the one to report. A partial folder that resists
    // removal is hidden (a dot-folder) and the job's next attempt removes it.
  }
}

function assertSafeJobId(jobId: string): void {
  if (!SAFE_JOB_ID.test(jobId)) {
    throw new JobFailure('INVALID_JOB', `job id ${JSON.stringify(jobId)} cannot name a snapshot folder`, true);
  }
}
