import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  queueWithHistory,
  type BackupQueue,
  type CofferConfig,
  type JobItem,
  type LogEntry,
  type LogOutbox,
  type RetentionStore,
  type SnapshotCatalog,
} from '@coffer/shared';
import type { CompletedJob } from './attempt-lifecycle.js';

// The backup's snapshot reaches the catalog through the log outbox, a moment after its
// `completed` row is recorded: the prune waits that long, so that it counts the snapshot.
const CATALOG_WAIT_MS = 10_000;

export interface AutoPruneDeps {
  config: Pick<CofferConfig, 'instanceName'>;
  retention: Pick<RetentionStore, 'get'>;
  catalog: Pick<SnapshotCatalog, 'until'>;
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

/**
 * After a completed backup into a destination that has a retention policy, queues a `prune`
 * of that destination, submitted as the backup's actor, the way every job is queued
 * (queueWithHistory). A policy that cannot be read
 * is only logged: the destination's next backup prunes it. The prune is queued once the catalog
 * lists the backup's snapshot, so that the policy counts it.
 */
export function createAutoPrune({ config, retention, catalog, outbox, queue }: AutoPruneDeps) {
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
    if (!(await catalog.until(jobId, 'recorded', CATALOG_WAIT_MS))) {
      logger.warn({ destination }, 'the snapshot is not in the catalog yet; the prune will not count it');
    }

    const prune: JobItem = { name: 'prune', data: actor === undefined ? { destination } : { destination, actor } };
    const id = autoPruneJobId(jobId);
    const sinks = {
      record: (entry: LogEntry) => outbox.record([entry]),
      add: (item: JobItem, itemId: string) => queue.add(item.name, item.data, { jobId: itemId }),
      unrecorded: (err: unknown) => logger.error({ err, jobId: id }, 'cannot close the history of an unqueued prune'),
    };
    await queueWithHistory(sinks, prune, id, config.instanceName, `queued after backup ${jobId}`);
    logger.info({ pruneJobId: id, destination }, 'prune queued after the backup');
  };
}
