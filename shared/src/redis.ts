import { Redis, type RedisOptions } from 'ioredis';

/**
 * `producer`: fails commands at once while Redis is away, so the API can answer
 * 503 instead of hanging. `worker`: waits for Redis forever, as BullMQ's workers
 * require (`maxRetriesPerRequest: null`).
 */
export function createRedis(url: string, role: 'producer' | 'worker'): Redis {
  const options: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 }
      : { maxRetriesPerRequest: null, connectTimeout: 5000 };
  return new Redis(url, {
    ...options,
    // Reconnect with a capped backoff instead of giving up.
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
}
