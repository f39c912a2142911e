import fp from 'fastify-plugin';
import { createLogRepository, createMysqlPool, type CofferConfig, type LogRepository } from '@coffer/shared';

declare module 'fastify' {
  interface FastifyInstance {
    logStore: LogRepository;
  }
}

/** The MySQL log repository, closed with the app. */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const pool = createMysqlPool(config.mysql);
    app.decorate('logStore', createLogRepository(pool));
    app.addHook('onClose', async () => {
      await pool.end();
    });
  },
  { name: 'log-store' },
);
