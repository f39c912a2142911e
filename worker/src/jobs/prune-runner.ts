import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  JobFailure,
  checkDestination,
  planRetention,
  type CofferConfig,
  type LogEntry,
  type LogOutbox,
  type PruneResult,
  type RetentionStore,
  type SnapshotCatalog,
  type SnapshotRecord,
} from '@coffer/shared';
import { AttemptSuperseded } from '../copy/index.js';
import { openDestination, type DestinationHandle } from '../prune/destination-handle.js';
import type { PruneLock, PruneLocks } from '../prune/prune-lock.js';
import {
  detach,
  dropBeside,
  leftovers,
  placement,
  pruningName,
  snapshotFolderName,
  type Placement,
} from '../prune/snapshot-removal.js';
import { createTreeRemover, type TreeRemover } from '../prune/tree-remover.js';
import type { Attempt, KindRunner } from './attempt-lifecycle.js';

/** Catalog rows read per query while listing a destination. */
const PAGE_SIZE = 1000;
// Folders deleted behind the removals: one being deleted and one waiting per remove thread, so
// none idles while the next snapshot is renamed and logged, and a cancel leaves little half done.
const DELETIONS_IN_FLIGHT = 4;
/** How long the end of a prune waits for the catalog to show its removals (the log outbox moves them there). */
const CATALOG_CATCH_UP_MS = 10_000;
/** How many refused snapshots a failure names. */
const NAMED_IN_MESSAGE = 3;

export interface PruneDeps {
  config: Pick<CofferConfig, 'backupRoot' | 'instanceName'>;
  catalog: Pick<SnapshotCatalog, 'list' | 'get' | 'holds' | 'until'>;
  retention: Pick<RetentionStore, 'get'>;
  /** Where `removed` rows go: in order with the job's own rows, and on to MySQL. */
  outbox: Pick<LogOutbox, 'record'>;
  locks: PruneLocks;
  /** How long a prune waits for another prune of its destination to end. Default: `DEFAULT_LOCK_WAIT_MS`. */
  lockWaitMs?: number;
}

type PruneAttempt = Attempt<'prune'>;

/** Every snapshot of the destination the catalog still keeps, newest first. */
async function listAll(catalog: PruneDeps['catalog'], destination: string): Promise<SnapshotRecord[]> {
  const all: SnapshotRecord[] = [];
  let cursor: number | undefined;
  do {
    const page = await catalog.list({ destination, limit: PAGE_SIZE, cursor });
    all.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return all;
}

function ids(records: readonly SnapshotRecord[]): string[] {
  return records.map((record) => record.id);
}

/**
 * Removes a destination's snapshots as its retention policy, read when the job runs, says:
 * one prune per destination at a time (a MySQL lock), snapshots a restore or verify still reads
 * kept until it ends, every removal logged as a `removed` row that marks the catalog. With
 * `dryRun`, only says what it would remove.
 */
export function pruneRunner(deps: PruneDeps): KindRunner<'prune'> {
  const { config, catalog, retention, locks } = deps;

  return {
    async run(attempt) {
      const { data, signal, logger } = attempt;
      const { destination } = data;
      const started = performance.now();
      const problem = checkDestination(destination);
      if (problem) throw new JobFailure('INVALID_DESTINATION', problem.message, true);
      const lock = await locks.acquire({ destination, signal, waitMs: deps.lockWaitMs });
      const remover = createTreeRemover();
      // A cancel or shutdown also cuts short the folder being deleted; the next prune finishes it.
      const stopRemoving = () => remover.stop();
      signal?.addEventListener('abort', stopRemoving, { once: true });
      let folder: DestinationHandle | null = null;
      try {
        const stored = await retention.get(destination);
        const dryRun = data.dryRun === true;
        folder = await openDestination(config.backupRoot, destination, !dryRun);
        const prune = new Prune(deps, attempt, { folder, remover, lock });
        // An earlier prune's decisions are finished first: they were made, and logged or not.
        const finished = dryRun || folder === null ? [] : await prune.finishLeftovers();
        const listed = (await listAll(catalog, destination)).filter((record) => !finished.includes(record.id));
        let outcome: { result: PruneResult; message: string };
        if (stored === null) {
          outcome = {
            result: { kept: ids(listed), removed: finished },
            message: `destination "${destination}" has no retention policy: all ${listed.length} snapshots kept`,
          };
        } else {
          const plan = planRetention(
            listed.map(({ id, createdAt }) => ({ id, createdAt })),
            stored.policy,
          );
          outcome = await prune.apply(listed, new Set(plan.remove), dryRun);
          outcome.result.removed.push(...finished);
        }
        await prune.catalogCaughtUp();
        logger.info({ removed: outcome.result.removed.length, kept: outcome.result.kept.length }, outcome.message);
        const durationMs = Math.round(performance.now() - started);
        return { result: outcome.result, row: { message: outcome.message, durationMs } };
      } finally {
        signal?.removeEventListener('abort', stopRemoving);
        await remover.close();
        await folder?.close();
        await lock.release();
      }
    },
  };
}

/** One prune's work in its destination folder (null: the folder does not exist). */
class Prune {
  readonly #deps: PruneDeps;
  readonly #attempt: PruneAttempt;
  readonly #folder: DestinationHandle | null;
  readonly #remover: TreeRemover;
  readonly #lock: PruneLock;
  readonly #inFlight: Promise<void>[] = [];
  /** The last snapshot this prune logged as removed: once the catalog shows it, it shows them all. */
  #lastLogged: string | undefined;

  constructor(
    deps: PruneDeps,
    attempt: PruneAttempt,
    work: { folder: DestinationHandle | null; remover: TreeRemover; lock: PruneLock },
  ) {
    this.#deps = deps;
    this.#attempt = attempt;
    this.#folder = work.folder;
    this.#remover = work.remover;
    this.#lock = work.lock;
  }

  get #destination(): string {
    return this.#attempt.data.destination;
  }

  /** The destination folder as catalog paths name it. */
  get #folderPath(): string {
    return this.#folder?.path ?? path.join(this.#deps.config.backupRoot, this.#destination);
  }

  /**
   * Finishes removals an interrupted prune left in `.coffer`: logs those the catalog still
   * keeps, then deletes the folders. Returns the ids it logged.
   */
  async finishLeftovers(): Promise<string[]> {
    const folder = this.#folder;
    if (folder === null) return [];
    const logged: string[] = [];
    for (const { name, id } of await leftovers(folder)) {
      this.#attempt.signal?.throwIfAborted();
      await dropBeside(folder, name);
      const record = await this.#deps.catalog.get(id);
      const kept = record !== null && record.deletedAt === null && record.destination === this.#destination;
      if (kept && path.posix.basename(record.path) === name) {
        await this.#log(record, `removal of snapshot ${id} finished after an interrupted prune`);
        logged.push(id);
      }
      await this.#delete(name);
    }
    await this.#drain();
    if (logged.length > 0) this.#attempt.logger.info({ snapshots: logged }, 'finished an interrupted prune');
    return logged;
  }

  /** Removes (or, dry, names) the snapshots of `listed` in `planned`, but those a job reads. */
  async apply(
    listed: readonly SnapshotRecord[],
    planned: ReadonlySet<string>,
    dryRun: boolean,
  ): Promise<{ result: PruneResult; message: string }> {
    const { catalog } = this.#deps;
    const held = await catalog.holds([...planned]);
    const doomed = listed.filter((record) => planned.has(record.id) && !held.has(record.id));
    const names = await this.#check(doomed);
    const removed = new Set<string>();
    if (!dryRun) {
      const { progress } = this.#attempt;
      progress.measured(doomed.length, 0);
      // Oldest first: a prune stopped half-way leaves the newer ones, as the policy would.
      for (const record of [...doomed].reverse()) {
        const name = names.get(record.id) ?? '';
        if (await this.#removeOne(record, name)) removed.add(record.id);
        else held.add(record.id);
        progress.advanced(removed.size + held.size, 0);
      }
      await this.#drain();
    } else {
      for (const record of doomed) removed.add(record.id);
    }
    const result: PruneResult = {
      kept: ids(listed.filter((record) => !removed.has(record.id))),
      removed: ids(listed.filter((record) => removed.has(record.id))),
      held: ids(listed.filter((record) => held.has(record.id))),
    };
    const heldNote = result.held?.length ? ` (${result.held.length} held by a restore or verify)` : '';
    const verb = dryRun ? 'dry run: would remove' : 'removed';
    return {
      result,
      message: `${verb} ${result.removed.length} of ${listed.length} snapshots; kept ${result.kept.length}${heldNote}`,
    };
  }

  /** Waits, briefly, until the catalog shows this prune's removals, so that the next prune lists what it left. */
  async catalogCaughtUp(): Promise<void> {
    const last = this.#lastLogged;
    if (last === undefined) return;
    if (!(await this.#deps.catalog.until(last, 'deleted', CATALOG_CATCH_UP_MS))) {
      this.#attempt.logger.warn('the catalog does not show the removals yet; the log outbox will bring them');
    }
  }

  /**
   * Checks every snapshot about to be removed before removing any: a catalog path that is not a
   * snapshot folder of this destination, or a link or file where the folder should be, refuses
   * the whole prune. Returns each one's folder name.
   */
  async #check(doomed: readonly SnapshotRecord[]): Promise<Map<string, string>> {
    const names = new Map<string, string>();
    const problems: string[] = [];
    for (const record of doomed) {
      try {
        const name = snapshotFolderName(this.#folderPath, record.id, record.path);
        if (this.#folder !== null) await placement(this.#folder, name);
        names.set(record.id, name);
      } catch (err) {
        if (!(err instanceof JobFailure)) throw err;
        problems.push(err.message);
      }
    }
    if (problems.length > 0) {
      const more = problems.length > NAMED_IN_MESSAGE ? `; and ${problems.length - NAMED_IN_MESSAGE} more` : '';
      throw new JobFailure(
        'PRUNE_FAILED',
        `prune refused, nothing removed: ${problems.slice(0, NAMED_IN_MESSAGE).join('; ')}${more}`,
        true,
      );
    }
    if (this.#folder === null && doomed.length > 0) {
      throw new JobFailure(
        'PRUNE_FAILED',
        `the folder of destination "${this.#destination}" (${this.#folderPath}) is missing while the catalog lists ` +
          `${doomed.length} snapshots to remove; nothing removed (is BACKUP_ROOT mounted?)`,
        true,
      );
    }
    return names;
  }

  /** Removes one snapshot; false when a restore or verify started reading it meanwhile (it stays). */
  async #removeOne(record: SnapshotRecord, name: string): Promise<boolean> {
    const { signal, stillOwned, jobId } = this.#attempt;
    const folder = this.#folder;
    if (folder === null) return false;
    // Between snapshots: a cancel, another attempt taking the job, or a lost lock stops here.
    signal?.throwIfAborted();
    if (!(await stillOwned())) throw new AttemptSuperseded(jobId);
    await this.#lock.assertHeld();
    if ((await this.#deps.catalog.holds([record.id])).size > 0) return false;
    const placed: Placement = await detach(folder, name);
    await this.#log(
      record,
      placed === 'present'
        ? `snapshot ${record.id} removed by retention policy`
        : `snapshot ${record.id} was already gone from disk; recorded as removed`,
    );
    if (placed === 'present') await this.#delete(name);
    return true;
  }

  /** Logs the snapshot removed: a `removed` row of this job that marks the catalog. */
  async #log(record: SnapshotRecord, message: string): Promise<void> {
    const { jobId, data } = this.#attempt;
    const row: LogEntry = {
      action: 'prune',
      parameter: record.path,
      status: 'removed',
      jobId,
      attempt: null,
      worker: this.#deps.config.instanceName,
      destination: this.#destination,
      snapshotId: record.id,
      actor: data.actor ?? null,
      message,
      catalog: { kind: 'deleted', snapshotId: record.id, at: new Date().toISOString() },
    };
    await this.#deps.outbox.record([row]);
    this.#lastLogged = record.id;
  }

  /** Deletes the renamed folder of snapshot `name` behind the removals, a bounded number at a time. */
  async #delete(name: string): Promise<void> {
    const target = this.#folder?.metadata(pruningName(name));
    if (target === null || target === undefined) return;
    const deletion = this.#remover.remove(target);
    // Awaited below or by #drain; until then a failure must not count as unhandled.
    deletion.catch(() => undefined);
    this.#inFlight.push(deletion);
    if (this.#inFlight.length >= DELETIONS_IN_FLIGHT) await this.#inFlight.shift();
  }

  async #drain(): Promise<void> {
    while (this.#inFlight.length > 0) await this.#inFlight.shift();
  }
}
