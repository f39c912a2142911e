import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisTarget } from './config.js';

/** A connection to Coffer's Redis: one server (or a Sentinel-watched primary), or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** Options a caller may add to the role's defaults, for every kind of target. */
export interface ConnectionExtras {
  /** Connect on the first command instead of at once. */
  lazyConnect?: boolean;
  /** Try once: no reconnection after the connection is lost or refused. */
  once?: boolean;
  /** Leave re-subscribing after a reconnection to the caller (one server or Sentinel). */
  ownSubscriptions?: boolean;
}

/**
 * `producer`: fails commands at once while Redis is away, so the API can answer
 * 503 instead of hanging. `worker`: waits for Redis forever, as BullMQ's workers
 * require (`maxRetriesPerRequest: null`). `target` is a REDIS_URL or the configured target.
 */
export function createRedis(
  target: RedisTarget | string,
  role: 'producer' | 'worker',
  extras: ConnectionExtras = {},
): RedisClient {
  const roleOptions: RedisOptions =
    role === 'producer'
      ? { maxRetriesPerRequest: 1, connectTimeout: 2000 }
      : { maxRetriesPerRequest: null, connectTimeout: 5000 };
  // Reconnect with a capped backoff instead of giving up.
  const retry = (times: number) => (extras.once ? null : Math.min(times * 200, 2000));
  const resolved: RedisTarget = typeof target === 'string' ? { mode: 'single', url: target } : target;
  const offlineQueue = role === 'worker';
  const lazyConnect = extras.lazyConnect ?? false;
  const autoResubscribe = !extras.ownSubscriptions;
  switch (resolved.mode) {
    case 'single':
      return new Redis(resolved.url, {
        ...roleOptions,
        enableOfflineQueue: offlineQueue,
        lazyConnect,
        autoResubscribe,
        retryStrategy: retry,
      });
    case 'sentinel':
      return new Redis({
        ...roleOptions,
        enableOfflineQueue: offlineQueue,
        lazyConnect,
        autoResubscribe,
        sentinels: resolved.sentinels.map(({ host, port }) => ({ host, port })),
        name: resolved.name,
        username: resolved.username,
        password: resolved.password,
        sentinelPassword: resolved.sentinelPassword,
        // Not ioredis's `failoverDetector`: with it, a client that lost its primary stopped
        // reconnecting after the failover in our tests. A lost primary is noticed anyway.
        retryStrategy: retry,
        sentinelRetryStrategy: retry,
      });
    case 'cluster': {
      const options: ClusterOptions = {
        enableOfflineQueue: offlineQueue,
        lazyConnect,
        clusterRetryStrategy: retry,
        // A master that died answers nothing until its replica is promoted (about the
        // cluster's node timeout): commands wait for the new slot map rather than fail.
        retryDelayOnFailover: 200,
        retryDelayOnClusterDown: 200,
        redisOptions: { ...roleOptions, username: resolved.username, password: resolved.password },
      };
      return new Cluster(
        resolved.nodes.map(({ host, port }) => ({ host, port })),
        options,
      );
    }
  }
}

/**
 * A connection of its own subscribed to `channel`, again on every reconnection. It subscribes
 * itself rather than through ioredis's `autoResubscribe`, which leaves the promise of its
 * SUBSCRIBE unhandled: a connection lost again during it would end the process with an
 * unhandled rejection. A cluster client moves its subscription to another node itself.
 */
export function createSubscriber(
  target: RedisTarget | string,
  channel: string,
  handlers: { subscribed?: () => void; failed: (err: unknown) => void },
): RedisClient {
  const subscriber = createRedis(target, 'worker', { ownSubscriptions: true });
  subscriber.on('ready', () => {
    subscriber.subscribe(channel).then(() => handlers.subscribed?.(), handlers.failed);
  });
  return subscriber;
}
