import fp from 'fastify-plugin';
import { createLogRepository, createMysqlPool, type CofferConfig, type LogRepository } from '@coffer/shared';
import { LogUnavailable } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    logStore: LogRepository;
  }
}

type AsyncMethods = Record<string, (...args: never[]) => Promise<unknown>>;

/** Any failure of the log becomes a 503 LOG_UNAVAILABLE; the cause stays in the server log. */
function unavailableOnFailure<T extends AsyncMethods>(methods: T): T {
  const wrapped = Object.entries(methods).map(([name, method]) => [
    name,
    async (...args: never[]) => {
      try {
        return await method(...args);
      } catch (err) {
        throw new LogUnavailable({ cause: err });
      }
    },
  ]);
  return Object.fromEntries(wrapped) as T;
}

/** The MySQL log repository, closed with the app. */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const pool = createMysqlPool(config.mysql);
    app.decorate('logStore', unavailableOnFailure(createLogRepository(pool)));
    app.addHook('onClose', async () => {
      await pool.end();
    });
  },
  { name: 'log-store' },
);
