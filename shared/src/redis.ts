import { Redis, type RedisOptions } from 'ioredis';

/**
 * `producer`: fails commands at once while Redis is away, so the API can answer
 * 503 instead of hanging. `worker`: waits for Redis forever, as BullMQ's workers
 * require (`maxRetriesPerRequest: null`).
 */
export function createRedis(url: string, role: 'producer' | 'worker', extra: RedisOptions = {}): Redis {
  const options: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 }
      : { maxRetriesPerRequest: null, connectTimeout: 5000 };
  return new Redis(url, {
    ...options,
    // Reconnect with a capped backoff instead of giving up.
    retryStrategy: (times) => Math.min(times * 200, 2000),
    ...extra,
  });
}

/**
 * A connection of its own subscribed to `channel`, again on every reconnection. It subscribes
 * itself rather than through ioredis's `autoResubscribe`, which leaves the promise of its
 * SUBSCRIBE unhandled: a connection lost again during it would end the process with an
 * unhandled rejection.
 */
export function createSubscriber(
  url: string,
  channel: string,
  handlers: { subscribed?: () => void; failed: (err: unknown) => void },
): Redis {
  const subscriber = createRedis(url, 'worker', { autoResubscribe: false });
  subscriber.on('ready', () => {
    subscriber.subscribe(channel).then(() => handlers.subscribed?.(), handlers.failed);
  });
  return subscriber;
}
