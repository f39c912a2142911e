import fp from 'fastify-plugin';
import { createLogRepository, type LogRepository } from '@coffer/shared';
import { batchAppends } from '../batched-append.js';
import { unavailableOnFailure } from '../unavailable.js';

declare module 'fastify' {
  interface FastifyInstance {
    logStore: LogRepository;
  }
}

/** The MySQL log repository; concurrent requests' rows share INSERTs. */
export default fp(
  async (app) => {
    const repository = createLogRepository(app.mysql);
    app.decorate(
      'logStore',
      unavailableOnFailure({ ...repository, append: batchAppends((entries) => repository.append(entries)) }),
    );
  },
  { name: 'log-store', dependencies: ['mysql'] },
);
