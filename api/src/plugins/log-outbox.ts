import fp from 'fastify-plugin';
import { createLogOutbox, type CofferConfig, type LogOutbox } from '@coffer/shared';

declare module 'fastify' {
  interface FastifyInstance {
    /** The workers' log outbox in Redis: rows written while MySQL is away land when it returns. */
    logOutbox: LogOutbox;
  }
}

/**
 * The log outbox, for rows the API must not lose while MySQL is away: every submitted job's
 * `queued` row (and `failed` row when the queue refuses it), a cancel's. The API
 * drains it too, so its rows land even when no worker runs; the drain lock keeps one
 * drainer at a time across API and workers.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const outbox = createLogOutbox({
      redis: app.redis,
      prefix: config.queuePrefix,
      logStore: app.logStore,
      logger: app.log,
    });
    app.decorate('logOutbox', outbox);
    app.addHook('onReady', async () => outbox.start());
    app.addHook('onClose', async () => {
      await outbox.stop();
    });
  },
  { name: 'log-outbox', dependencies: ['log-store', 'queue'] },
);
