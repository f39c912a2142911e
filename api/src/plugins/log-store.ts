import fp from 'fastify-plugin';
import { createLogRepository, type LogRepository } from '@coffer/shared';
import { unavailableOnFailure } from '../unavailable.js';

declare module 'fastify' {
  interface FastifyInstance {
    logStore: LogRepository;
  }
}

/** The MySQL log repository. */
export default fp(
  async (app) => {
    app.decorate('logStore', unavailableOnFailure(createLogRepository(app.mysql)));
  },
  { name: 'log-store', dependencies: ['mysql'] },
);
