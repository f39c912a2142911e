import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import {
  jobLogRow,
  type BackupQueue,
  type CofferConfig,
  type JobItem,
  type LogOutbox,
  type RetentionStore,
  type SnapshotCatalog,
} from '@coffer/shared';
import type { CompletedJob } from './attempt-lifecycle.js';

// The backup's snapshot reaches the catalog through the log outbox, a moment after its
// `completed` row is recorded: the prune waits that long, so that it counts the snapshot.
const CATALOG_WAIT_MS = 10_000;
const CATALOG_POLL_MS = 25;

export interface AutoPruneDeps {
  config: Pick<CofferConfig, 'instanceName'>;
  retention: Pick<RetentionStore, 'get'>;
  catalog: Pick<SnapshotCatalog, 'get'>;
  outbox: Pick<LogOutbox, 'record'>;
  queue: Pick<BackupQueue, 'add'>;
}

/**
 * The id of the prune queued after the backup `backupJobId`: always the same, so that a
 * worker confirming the backup after a crash queues it at most once. Shaped as a UUID
 * (version 8, application-made), like the ids the API gives.
 */
export function autoPruneJobId(backupJobId: string): string {
  const hex = createHash('sha256').update('coffer auto-prune\0').update(backupJobId).digest('hex');
  const variant = ((parseInt(hex.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * After a completed backup into a destination that has a retention policy, queues a `prune`
 * of that destination, submitted as the backup's actor. It is queued the way every job is:
 * its `queued` row recorded first (so no `active` can precede it), then the job added, and
 * its history closed with a `failed` row if the queue refuses it. A policy that cannot be read
 * is only logged: the destination's next backup prunes it. The prune is queued once the catalog
 * lists the backup's snapshot, so that the policy counts it.
 */
export function createAutoPrune({ config, retention, catalog, outbox, queue }: AutoPruneDeps) {
  /** False when the snapshot is not in the catalog within CATALOG_WAIT_MS. */
  async function catalogued(snapshotId: string): Promise<boolean> {
    const deadline = Date.now() + CATALOG_WAIT_MS;
    while ((await catalog.get(snapshotId)) === null) {
      if (Date.now() > deadline) return false;
      await delay(CATALOG_POLL_MS);
    }
    return true;
  }

  return async function afterCompleted({ jobId, item }: CompletedJob, logger: Logger): Promise<void> {
    if (item.name !== 'backup') return;
    const { destination, actor } = item.data;
    let stored;
    try {
      stored = await retention.get(destination);
    } catch (err) {
      logger.warn({ err, destination }, 'cannot read the retention policy; the next backup will prune');
      return;
    }
    if (stored === null) return;
    if (!(await catalogued(jobId))) {
      logger.warn({ destination }, 'the snapshot is not in the catalog yet; the prune will not count it');
    }

    const prune: JobItem = { name: 'prune', data: actor === undefined ? { destination } : { destination, actor } };
    const id = autoPruneJobId(jobId);
    const row = jobLogRow(prune, id, 1, config.instanceName);
    await outbox.record([{ ...row, status: 'queued', message: `queued after backup ${jobId}` }]);
    try {
      await queue.add(prune.name, prune.data, { jobId: id });
    } catch (err) {
      const failure = { code: 'QUEUE_UNAVAILABLE', message: `not queued: ${message(err)}` };
      await outbox.record([{ ...row, status: 'failed', ...failure }], failure);
      throw err;
    }
    logger.info({ pruneJobId: id, destination }, 'prune queued after the backup');
  };
}
