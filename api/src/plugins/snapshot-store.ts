import fp from 'fastify-plugin';
import { createSnapshotCatalog, type SnapshotCatalog } from '@coffer/shared';
import { unavailableOnFailure } from '../unavailable.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The snapshot catalog (written by the log repository, with the log rows). */
    snapshotCatalog: SnapshotCatalog;
  }
}

/** The MySQL snapshot catalog, for reading. */
export default fp(
  async (app) => {
    app.decorate('snapshotCatalog', unavailableOnFailure(createSnapshotCatalog(app.mysql)));
  },
  { name: 'snapshot-store', dependencies: ['mysql'] },
);
