import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { RedisClient } from '@coffer/shared';
import { createRedis, createSubscriber } from '@coffer/shared';
import { waitFor } from '../../test/helpers/environment.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const clients: RedisClient[] = [];

afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect();
});

describe('subscriber connection', () => {
  it('subscribes again after each reconnection, and one lost during it leaves no unhandled rejection', async () => {
    const channel = `coffer-test:${randomUUID()}`;
    const unhandled: unknown[] = [];
    const noteUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', noteUnhandled);
    try {
      let subscriptions = 0;
      const failures: unknown[] = [];
      const messages: string[] = [];
      // A URL gives a connection to one server.
      const subscriber = createSubscriber(url, channel, {
        subscribed: () => (subscriptions += 1),
        failed: (err) => failures.push(err),
      }) as Redis;
      const publisher = createRedis(url, 'worker');
      clients.push(subscriber, publisher);
      subscriber.on('error', () => undefined);
      subscriber.on('message', (_from: string, message: string) => messages.push(message));
      await waitFor(async () => (subscriptions === 1 ? true : undefined), 5_000, 'the first subscription');

      subscriber.disconnect(true);
      await waitFor(async () => (subscriptions === 2 ? true : undefined), 5_000, 'the subscription after reconnecting');
      await waitFor(
        async () => ((await publisher.publish(channel, 'after')) > 0 && messages.includes('after') ? true : undefined),
        5_000,
        'a message after reconnecting',
      );

      // Back, then lost and closed for good at once: the SUBSCRIBE sent on it never gets its answer.
      subscriber.once('ready', () => {
        subscriber.stream.destroy();
        subscriber.disconnect();
      });
      subscriber.disconnect(true);
      await waitFor(async () => (failures.length > 0 ? true : undefined), 5_000, 'the cut subscription');
      await new Promise((resolve) => setImmediate(resolve));

      expect(failures.map((err) => (err as Error).message)).toEqual(['Connection is closed.']);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', noteUnhandled);
    }
  });
});
