import type { FastifyInstance } from 'fastify';
import type { SnapshotRecord } from '@coffer/shared';
import { maySeeJob, type Principal } from '../auth/roles.js';
import { SnapshotNotFound } from '../errors.js';

/** The snapshot fields a restore or verify job carries, so its worker needs no catalog lookup. */
export function snapshotReference(snapshot: SnapshotRecord) {
  return {
    snapshot: snapshot.id,
    snapshotPath: snapshot.path,
    source: snapshot.source,
    destination: snapshot.destination,
    manifestSha256: snapshot.manifestSha256,
  };
}

/**
 * The snapshot `id` if this token may see it: one in the catalog that (for an operator) was made
 * by one of its own jobs; any other is unknown to it (404), as jobs are. Deleted (pruned)
 * snapshots count only with `deleted`.
 */
export async function visibleSnapshot(
  app: FastifyInstance,
  principal: Principal,
  id: string,
  { deleted = false }: { deleted?: boolean } = {},
): Promise<SnapshotRecord> {
  const snapshot = await app.snapshotCatalog.get(id);
  if (!snapshot || (!deleted && snapshot.deletedAt !== null) || !maySeeJob(principal, snapshot.actor)) {
    throw new SnapshotNotFound(id);
  }
  return snapshot;
}
