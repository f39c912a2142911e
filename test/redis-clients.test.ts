import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, createSubscriber, loadConfig, waitForReplicas, type RedisClient } from '@coffer/shared';
import { waitFor } from './helpers/environment.js';
import {
  startRedisCluster,
  startRedisSentinel,
  type RedisClusterTopology,
  type RedisSentinelTopology,
} from './helpers/redis-topology.js';

// Coffer's Redis clients on each kind of target the configuration names: one server, a Redis
// Cluster, a primary watched by Sentinels; real servers started by the test.

const clients: RedisClient[] = [];
let cluster: RedisClusterTopology | undefined;
let sentinel: RedisSentinelTopology | undefined;

function keep<T extends RedisClient>(client: T): T {
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await cluster?.stop();
  await sentinel?.stop();
});

describe('one server (REDIS_URL)', () => {
  it('answers how many replicas hold the writes: none here, after the timeout', async () => {
    const redis = keep(createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', 'worker'));
    await redis.set('coffer-test-wait', '1', 'EX', 5);
    expect(await waitForReplicas(redis, 'coffer-test-wait', 1, 50)).toBe(0);
  });
});

describe('a Redis Cluster (REDIS_CLUSTER_NODES)', () => {
  let redis: RedisClient;
  let prefix: string;
  let target: ReturnType<typeof loadConfig>['redis'];

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
    // Two of the six nodes, as a user would list some: the client finds the others.
    const nodes = cluster.nodesVariable.split(',').slice(0, 2).join(',');
    const config = loadConfig({ REDIS_CLUSTER_NODES: nodes, QUEUE_PREFIX: 'clients' });
    expect(config.redis.mode).toBe('cluster');
    prefix = config.queuePrefix;
    target = config.redis;
    redis = keep(createRedis(target, 'worker'));
  }, 60_000);

  it('keeps every key of the prefix in one slot, so multi-key commands work', async () => {
    expect(prefix).toBe('{clients}');
    await redis.set(`${prefix}:a`, '1');
    await redis.set(`${prefix}:b`, '2');
    // MGET of two keys and a transaction over two keys: refused (CROSSSLOT) unless one slot holds both.
    expect(await redis.mget(`${prefix}:a`, `${prefix}:b`)).toEqual(['1', '2']);
    const results = await redis.multi().incr(`${prefix}:a`).rpush(`${prefix}:list`, 'x').exec();
    expect(results?.map(([err]) => err)).toEqual([null, null]);
    expect(await cluster?.slotOf(`${prefix}:list`)).toBe(await cluster?.slotOf(prefix));
  });

  it('waits for the replica of the master that holds the prefix', async () => {
    await redis.rpush(`${prefix}:log-outbox`, 'row');
    expect(await waitForReplicas(redis, `${prefix}:log-outbox`, 1, 2000)).toBe(1);
  });

  it('hears a channel through a subscriber of its own', async () => {
    const messages: string[] = [];
    let subscribed = false;
    const subscriber = keep(
      createSubscriber(target, 'chan', {
        subscribed: () => (subscribed = true),
        failed: () => undefined,
      }),
    );
    subscriber.on('message', (_channel: string, message: string) => messages.push(message));
    await waitFor(async () => (subscribed ? true : undefined), 10_000, 'the subscription');
    await waitFor(
      async () => ((await redis.publish('chan', 'hello')) >= 0 && messages.includes('hello') ? true : undefined),
      10_000,
      'the message',
    );
  });
});

describe('a primary watched by Sentinels (REDIS_SENTINELS)', () => {
  it('finds the primary, waits for its replica, and follows a failover', async () => {
    sentinel = await startRedisSentinel({ replicas: 1, sentinels: 3, name: 'clients' });
    const config = loadConfig({ REDIS_SENTINELS: sentinel.sentinelsVariable, REDIS_SENTINEL_NAME: 'clients' });
    const redis = keep(createRedis(config.redis, 'worker'));
    await redis.set('k', 'before');
    expect(await waitForReplicas(redis, 'k', 1, 2000)).toBe(1);

    const old = await sentinel.killMaster();
    const promoted = await sentinel.waitForFailover(old, 30_000);
    // The same client, without a restart, now writes to the promoted replica.
    await waitFor(
      async () => ((await redis.set('k', 'after').catch(() => null)) === 'OK' ? true : undefined),
      30_000,
      'a write after the failover',
    );
    expect(sentinel.masterPort()).toBe(promoted);
    expect(await redis.get('k')).toBe('after');
  }, 90_000);
});
