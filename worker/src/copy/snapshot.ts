import { promises as fs } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { JobFailure } from '@coffer/shared/failure';
import { copyTree, type CopyOptions, type CopyReport } from './copy-tree.js';
import { openDestinationFolder } from './destination-folder.js';
import { errorCode } from './errno.js';
import { measureIfSmall, type SmallLimits, type TreeSize } from './measure-tree-sync.js';
import { removeTree } from './remove-tree.js';
import { METADATA_FOLDER, manifestPathOf } from './manifest-file.js';
import { metadataPathOf } from '@coffer/shared/path-policy';
import { toSnapshotFailure, type SnapshotPaths } from './snapshot-failure.js';

export interface SnapshotRequest {
  /** Real path, already checked against the allowed roots by the caller. */
  source: string;
  /** Absolute. */
  backupRoot: string;
  /** Relative name (`[A-Za-z0-9._-]` segments separated by `/`, no `..`); checked again here. */
  destination: string;
  jobId: string;
  /**
   * Names this attempt's private folders (`[A-Za-z0-9_-]`), so that two attempts of one job
   * (one of them paused past its lock) never write into, or remove, each other's copy.
   * Default: `0`.
   */
  attempt?: string;
  /** Names the snapshot folder. */
  startedAt: Date;
  /**
   * Hard-link the files unchanged since the newest complete snapshot of the same source in
   * the same folder (same size, mode, owner and mtime) instead of copying them, as
   * `rsync --link-dest`. Each snapshot still holds every file, and deleting an older one
   * never harms a newer one. Default true.
   */
  incremental?: boolean;
  /**
   * `.gitignore` patterns relative to a folder source: what they match is not in the snapshot
   * nor its manifest, and `excluded` counts it (see `CopyOptions.exclude`). The previous
   * snapshot serves as base whatever its patterns were: files are matched by path, so one
   * excluded then is copied now. Default: none, and no `excluded` in the result.
   */
  exclude?: readonly string[];
  /** Copy threads (see `CopyOptions.threads`). Default: one per core. */
  threads?: number;
  /** Aborting stops the copy, removes the partial folder and rejects with `signal.reason`. */
  signal?: AbortSignal;
  onProgress?: CopyOptions['onProgress'];
  /**
   * Asked just before the complete copy gets its final name, and again just after: false means
   * the job now belongs to another attempt, so this one removes its copy and rejects with
   * `AttemptSuperseded`. Default: always true.
   */
  stillOwned?: () => Promise<boolean>;
  /**
   * Called once with the source's files and bytes, for progress totals (see
   * `CopyOptions.onMeasured`). Default: not counted.
   */
  onMeasured?: (size: TreeSize) => void;
  /**
   * A source within these limits (a file, or a folder, see `measureIfSmall`) whose previous
   * snapshot's manifest is small too is copied on the caller's thread (`CopyOptions.inline`):
   * no thread hop for a tiny job, while the event loop (lock renewals, cancels) waits at most
   * the copy of that much. `false`: always on threads. Default: `SMALL_JOB`.
   */
  inline?: SmallLimits | false;
}

/**
 * The largest job copied on the worker's own thread: about a millisecond of walking to find out,
 * and some tens of milliseconds of copying at most on a warm cache.
 */
export const SMALL_JOB: SmallLimits = { entries: 200, bytes: 8 * 1024 * 1024 };
// A previous manifest larger than this is read on a thread (about 1,000 lines).
const SMALL_MANIFEST_BYTES = 256 * 1024;

export interface SnapshotResult extends CopyReport {
  /** The snapshot folder, `<backupRoot>/<destination>/<snapshotName>`. */
  path: string;
  /** SHA-256 (hex) of the snapshot's manifest file (see `manifestPathOf`), for the catalog. */
  manifestSha256: string;
  /** Time spent copying, in milliseconds. */
  durationMs: number;
}

/** The job was taken over by another attempt (this one lost its lock); nothing of this attempt remains. */
export class AttemptSuperseded extends Error {
  override readonly name = 'AttemptSuperseded';
  constructor(jobId: string) {
    super(`job ${jobId} was taken over by another attempt; this attempt stopped`);
  }
}

// The job id becomes part of a path, so it must stay one harmless name.
const SAFE_JOB_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const SAFE_ATTEMPT = /^[A-Za-z0-9_-]+$/;
// `<timestamp>-<job id>`; the timestamp holds no '-', so the first one after it splits.
const SNAPSHOT_NAME = /^\d{8}T\d{6}\.\d{3}Z-(.+)$/;
const PARTIAL_PREFIX = '.partial-';
// Job ids never hold '+', so `.partial-<id>+…` belongs to exactly one job.
const ATTEMPT_SEPARATOR = '+';
// A manifest's name is its snapshot's followed by this (see `manifestPathOf`).
const MANIFEST_SUFFIX = path.basename(manifestPathOf('snapshot')).slice('snapshot'.length);

/** What Coffer records beside each snapshot, in `<folder>/.coffer/<snapshot name>.json`. */
interface SnapshotMetadata {
  /** The real path that was copied: only a snapshot of the same source may serve as incremental base. */
  source: string;
  jobId: string;
}

/** `20261127T191045.123Z-<jobId>`: UTC, sortable, no ':' (awkward in paths on some systems). */
export function snapshotName(startedAt: Date, jobId: string): string {
  return `${startedAt.toISOString().replace(/[-:]/g, '')}-${jobId}`;
}

/**
 * Copies `source` into a new snapshot, all or nothing: the copy is made in a hidden
 * `.partial-<jobId>+<attempt>` folder beside the snapshot and renamed to its final name only
 * once complete, and only while this attempt still owns the job. Its manifest is written
 * beside the partial folder, as `.partial-<jobId>+<attempt>.manifest`, and moved to its place
 * (see `manifestPathOf`) just before the folder gets its name, so a snapshot never lacks one. On failure or abort the partial folder
 * and the manifest are removed and the error rethrown: a `JobFailure` when its cause is known,
 * the abort reason unchanged, `AttemptSuperseded` when the job changed hands, anything else
 * unchanged (transient).
 */
export async function createSnapshot(request: SnapshotRequest): Promise<SnapshotResult> {
  const attempt = request.attempt ?? '0';
  assertSafeNames(request.jobId, attempt);
  request.signal?.throwIfAborted();
  const folder = await openDestinationFolder(request.backupRoot, request.destination);
  const paths: SnapshotPaths = { source: request.source, backupRoot: request.backupRoot, folder };
  let previous: string | undefined;
  try {
    previous = await prepareFolder(folder, request.jobId, request.source);
  } catch (error) {
    throw toSnapshotFailure(error, paths, 'destination');
  }
  const name = snapshotName(request.startedAt, request.jobId);
  const partial = path.join(folder, `${PARTIAL_PREFIX}${request.jobId}${ATTEMPT_SEPARATOR}${attempt}`);
  const finalPath = path.join(folder, name);
  const manifest = manifestPathOf(finalPath);
  // Named as the partial folder, so that the next attempt removes it along with that.
  const manifestDraft = `${partial}.manifest`;
  // Only a manifest this attempt renamed is its own to remove: another attempt's may have the same name.
  let manifestPlaced = false;
  const stillOwned = request.stillOwned ?? (async () => true);
  const started = performance.now();
  try {
    const base = request.incremental === false ? undefined : previous;
    const previousManifest = base && manifestPathOf(base);
    const small = await smallSource(request, previousManifest);
    if (small) request.onMeasured?.(small);
    const { manifestSha256, ...report } = await copyTree(request.source, partial, {
      previous: base,
      threads: request.threads,
      exclude: request.exclude,
      signal: request.signal,
      onProgress: request.onProgress,
      inline: small !== undefined,
      onMeasured: request.onMeasured,
      manifest: {
        file: manifestDraft,
        previous: previousManifest,
        previousStartedMs: base === undefined ? undefined : startedMsOf(base),
      },
    });
    if (manifestSha256 === undefined) throw new Error('the copy wrote no manifest');
    // A job cancelled after its last file must not appear as a finished snapshot.
    request.signal?.throwIfAborted();
    if (!(await stillOwned())) throw new AttemptSuperseded(request.jobId);
    await fs.mkdir(path.dirname(manifest), { recursive: true });
    await fs.rename(manifestDraft, manifest);
    manifestPlaced = true;
    await fs.rename(partial, finalPath);
    // After the rename, so a record never outlives a snapshot that never got its name.
    await writeMetadata(folder, name, { source: request.source, jobId: request.jobId });
    // Paused between the check and the rename, this attempt may have lost the job meanwhile:
    // then the snapshot is the new owner's to make, not this one's.
    if (!(await stillOwned())) {
      await fs.rm(metadataPath(folder, name), { force: true });
      await fs.rm(manifest, { force: true });
      await discard(finalPath);
      throw new AttemptSuperseded(request.jobId);
    }
    return { ...report, path: finalPath, manifestSha256, durationMs: Math.round(performance.now() - started) };
  } catch (error) {
    await fs.rm(manifestDraft, { force: true }).catch(() => undefined);
    if (manifestPlaced) await fs.rm(manifest, { force: true }).catch(() => undefined);
    await discard(partial);
    if (request.signal?.aborted) throw request.signal.reason;
    if (error instanceof AttemptSuperseded) throw error;
    throw toSnapshotFailure(error, paths);
  }
}

/** The size of the request's source when the job is small enough to copy inline (see `SnapshotRequest.inline`). */
async function smallSource(
  request: SnapshotRequest,
  previousManifest: string | undefined,
): Promise<TreeSize | undefined> {
  const limits = request.inline ?? SMALL_JOB;
  if (limits === false) return undefined;
  if (previousManifest !== undefined) {
    const manifestSize = await fs.stat(previousManifest).then(
      ({ size }) => size,
      () => 0,
    );
    if (manifestSize > SMALL_MANIFEST_BYTES) return undefined;
  }
  try {
    return measureIfSmall(request.source, limits, request.exclude);
  } catch {
    // The copy meets the same problem and reports it as it should.
    return undefined;
  }
}

/** When the snapshot at `snapshotPath` started, from its name (ms); undefined when its name does not tell. */
function startedMsOf(snapshotPath: string): number | undefined {
  const stamp = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z-/.exec(path.basename(snapshotPath));
  if (stamp === null) return undefined;
  const [, year, month, day, hours, minutes, seconds, ms] = stamp.map(Number);
  const at = Date.UTC(year ?? 0, (month ?? 1) - 1, day, hours, minutes, seconds, ms);
  return Number.isFinite(at) ? at : undefined;
}

/**
 * Removes what earlier attempts of the same job left: their partial folders, and a final
 * folder one may have renamed just before dying, unrecorded (redoing the copy is safer than
 * trusting it), and their manifests, whole or partial. An attempt runs only once the earlier
 * ones lost the job, so none of theirs is still wanted.
 *
 * Returns the newest complete snapshot of the same source in the folder, if any: a final name
 * appears only once a copy is complete, `.partial-*` folders never qualify, and a snapshot of
 * another source (or one without Coffer's record of its source) is never a base.
 */
async function prepareFolder(folder: string, jobId: string, source: string): Promise<string | undefined> {
  const leftovers: string[] = [];
  const snapshots: string[] = [];
  // One call for the whole listing: iterating it entry by entry (a promise each) took a
  // tenth of a worker's time on tiny jobs, once a folder held a few dozen snapshots.
  for (const entry of await fs.readdir(folder, { withFileTypes: true })) {
    const snapshotJob = SNAPSHOT_NAME.exec(entry.name)?.[1];
    if (isPartialOf(entry.name, jobId) || snapshotJob === jobId) {
      leftovers.push(entry.name);
    } else if (snapshotJob !== undefined && entry.isDirectory()) {
      snapshots.push(entry.name);
    }
  }
  // Before their folders, so that an attempt dying in between leaves no manifest of a folder
  // that no longer exists; what it leaves is named after this job, and the next one removes it.
  for (const manifest of await manifestsOf(folder, jobId)) await fs.rm(manifest, { force: true });
  for (const leftover of leftovers) {
    // The record before its folder, as it is written after: an attempt that dies in between
    // leaves a folder named after this job, which the next attempt removes, never a record
    // of a folder that no longer exists (which no later attempt would find to remove).
    await fs.rm(metadataPath(folder, leftover), { force: true });
    await removeTree(path.join(folder, leftover));
  }
  // The names start with a sortable UTC timestamp: newest first.
  for (const name of snapshots.sort().reverse()) {
    if ((await readMetadata(folder, name))?.source === source) return path.join(folder, name);
  }
  return undefined;
}

/** The manifests of snapshots named after `jobId` in `folder`. */
async function manifestsOf(folder: string, jobId: string): Promise<string[]> {
  const metadata = path.join(folder, METADATA_FOLDER);
  let names: string[];
  try {
    names = await fs.readdir(metadata);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
  return names
    .filter(
      (name) =>
        name.endsWith(MANIFEST_SUFFIX) && SNAPSHOT_NAME.exec(name.slice(0, -MANIFEST_SUFFIX.length))?.[1] === jobId,
    )
    .map((name) => path.join(metadata, name));
}

function isPartialOf(name: string, jobId: string): boolean {
  const prefix = PARTIAL_PREFIX + jobId;
  // A bare `.partial-<id>` is what attempts made before attempts had their own folders.
  return name === prefix || name.startsWith(prefix + ATTEMPT_SEPARATOR);
}

function metadataPath(folder: string, snapshot: string): string {
  return metadataPathOf(path.join(folder, snapshot));
}

async function writeMetadata(folder: string, snapshot: string, metadata: SnapshotMetadata): Promise<void> {
  await fs.mkdir(path.join(folder, METADATA_FOLDER), { recursive: true });
  await fs.writeFile(metadataPath(folder, snapshot), `${JSON.stringify(metadata)}\n`, { mode: 0o600 });
}

async function readMetadata(folder: string, snapshot: string): Promise<SnapshotMetadata | null> {
  let text: string;
  try {
    text = await fs.readFile(metadataPath(folder, snapshot), 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as Partial<SnapshotMetadata>;
    return typeof parsed.source === 'string' && typeof parsed.jobId === 'string'
      ? { source: parsed.source, jobId: parsed.jobId }
      : null;
  } catch {
    // A damaged record only costs the incremental base: the next copy is a full one.
    return null;
  }
}

async function discard(folder: string): Promise<void> {
  try {
    await removeTree(folder);
  } catch {
    // The copy's own error is the one to report. A partial folder that resists
    // removal is hidden (a dot-folder) and the job's next attempt removes it.
  }
}

function assertSafeNames(jobId: string, attempt: string): void {
  if (!SAFE_JOB_ID.test(jobId)) {
    throw new JobFailure('INVALID_JOB', `job id ${JSON.stringify(jobId)} cannot name a snapshot folder`, true);
  }
  if (!SAFE_ATTEMPT.test(attempt)) {
    throw new JobFailure('INVALID_JOB', `attempt ${JSON.stringify(attempt)} cannot name a folder`, true);
  }
}
