import { QueueEvents } from 'bullmq';
import fp from 'fastify-plugin';
import { QUEUE_NAME, createRedis, settlesWithin, type CofferConfig } from '@coffer/shared';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The queue's events (every worker's jobs), read once per API process for all that listen:
     * metrics, event streams and webhooks. Each reader would otherwise read the whole stream again.
     */
    queueEvents: QueueEvents;
  }
}

const CLOSE_WAIT_MS = 1000;

export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    // QueueEvents blocks on a stream read, so it needs a connection of its own.
    const connection = createRedis(config.redis, 'worker');
    connection.on('error', (err: Error) => app.log.debug({ err: err.message }, 'queue events connection error'));
    const queueEvents = new QueueEvents(QUEUE_NAME, { connection, prefix: config.queuePrefix });
    queueEvents.on('error', (err: Error) => app.log.warn({ err: err.message }, 'queue events error'));
    // Listeners of its own for each plugin that reads it.
    queueEvents.setMaxListeners(50);
    app.decorate('queueEvents', queueEvents);
    app.addHook('onClose', async () => {
      // BullMQ's close waits for a first connection that a Redis away at start never gave: bounded.
      const closed = queueEvents.close().catch((err: unknown) => app.log.warn({ err }, 'cannot close queue events'));
      await settlesWithin(closed, CLOSE_WAIT_MS);
      connection.disconnect();
    });
  },
  { name: 'queue-events' },
);
