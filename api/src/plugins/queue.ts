import fp from 'fastify-plugin';
import { createBackupQueue, createRedis, type BackupQueue, type CofferConfig, type RedisClient } from '@coffer/shared';

declare module 'fastify' {
  interface FastifyInstance {
    backupQueue: BackupQueue;
    /** The producer connection: fails fast while Redis is away. */
    redis: RedisClient;
  }
}

const READY_WAIT_MS = 5000;

/** The BullMQ queue the API adds jobs to, on a connection that never queues commands offline. */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const redis = createRedis(config.redis, 'producer');
    redis.on('error', (err: Error) => app.log.warn({ err: err.message }, 'redis connection error'));
    // Commands fail while disconnected, so give the first connection a moment;
    // if Redis is down at start the API still starts and /ready reports it.
    const ready = new Promise((resolve) => redis.once('ready', resolve));
    const timeout = new Promise((resolve) => setTimeout(resolve, READY_WAIT_MS).unref());
    await Promise.race([ready, timeout]);
    const queue = createBackupQueue(config, redis);
    queue.on('error', (err: Error) => app.log.warn({ err: err.message }, 'queue error'));
    app.decorate('backupQueue', queue);
    app.decorate<RedisClient, 'redis'>('redis', redis);
    app.addHook('onClose', async () => {
      await queue.close();
      redis.disconnect();
    });
  },
  { name: 'queue' },
);
