import fp from 'fastify-plugin';
import { createDestinationAccess, type DestinationAccess } from '../destinations/destination-access.js';
import { createDestinationRepository } from '../destinations/destination-repository.js';
import { unavailableOnFailure } from '../unavailable.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Who owns which destination; claims new ones. */
    destinations: DestinationAccess;
  }
}

/** The `destination` table, behind the ownership rules. */
export default fp(
  async (app) => {
    app.decorate('destinations', createDestinationAccess(unavailableOnFailure(createDestinationRepository(app.mysql))));
  },
  { name: 'destination-store', dependencies: ['mysql'] },
);
