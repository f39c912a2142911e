import fp from 'fastify-plugin';
import { createRetentionStore, type RetentionStore } from '@coffer/shared';
import { unavailableOnFailure } from '../unavailable.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Retention policies per destination. */
    retention: RetentionStore;
  }
}

/** The MySQL retention policies, for the destination routes and prune submissions. */
export default fp(
  async (app) => {
    app.decorate('retention', unavailableOnFailure(createRetentionStore(app.mysql)));
  },
  { name: 'retention-store', dependencies: ['mysql'] },
);
