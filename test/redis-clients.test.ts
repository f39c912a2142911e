import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRedis,
  createReplicationBarrier,
  createSubscriber,
  loadConfig,
  type RedisClient,
  type ReplicationBarrier,
} from '@coffer/shared';
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
const barriers: ReplicationBarrier[] = [];
let cluster: RedisClusterTopology | undefined;
let sentinel: RedisSentinelTopology | undefined;

const warnings: string[] = [];

function barrier(options: Omit<Parameters<typeof createReplicationBarrier>[0], 'log'>): ReplicationBarrier {
  const made = createReplicationBarrier({ ...options, log: { warn: (_obj, msg) => warnings.push(msg) } });
  barriers.push(made);
  return made;
}

/** How many WAIT commands the server on `url` has run. */
async function waitCalls(redis: RedisClient): Promise<number> {
  const stats = await redis.info('commandstats');
  return Number(/cmdstat_wait:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

function keep<T extends RedisClient>(client: T): T {
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

afterAll(async () => {
  for (const client of clients) client.disconnect();
  for (const barrier of barriers) barrier.close();
  await cluster?.stop();
  await sentinel?.stop();
});

describe('one server (REDIS_URL)', () => {
  it('answers how many replicas hold the writes (none here, after the timeout), one WAIT for callers at once', async () => {
    const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const redis = keep(createRedis(url, 'worker'));
    const replication = barrier({ target: url, key: 'coffer-test-clients:replicated', replicas: 1, timeoutMs: 200 });
    const before = await waitCalls(redis);
    // Ten submissions at once: the first starts a round, the other nine share the next one.
    const held = await Promise.all(Array.from({ length: 10 }, () => replication.reached()));
    expect(held).toEqual(Array.from({ length: 10 }, () => 0));
    expect((await waitCalls(redis)) - before).toBeLessThanOrEqual(2);
    expect(warnings.at(-1)).toBe(
      'only 0 of 1 Redis replicas acknowledged within 200 ms; jobs are accepted without waiting for them for 10 s',
    );
    // Short of replicas: the next callers are answered at once, without a WAIT.
    const calls = await waitCalls(redis);
    expect(await replication.reached()).toBe(0);
    expect(await waitCalls(redis)).toBe(calls);
    await redis.del('coffer-test-clients:replicated');
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

  it('tells when the replica of the master holding the prefix has what another connection wrote', async () => {
    const replication = barrier({ target, key: `${prefix}:replicated`, replicas: 1, timeoutMs: 5000 });
    await redis.rpush(`${prefix}:log-outbox`, 'row');
    expect(await replication.reached()).toBe(1);
    // Read from the replica itself: the write of the other connection is there.
    const master = (await cluster?.masterOf(prefix)) ?? 0;
    const [replica] = (await cluster?.replicasOf(master)) ?? [];
    const onReplica = keep(createRedis(`redis://127.0.0.1:${replica}`, 'worker'));
    await onReplica.call('READONLY');
    expect(await onReplica.lrange(`${prefix}:log-outbox`, 0, -1)).toEqual(['row']);
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
    const replication = barrier({ target: config.redis, key: 'replicated', replicas: 1, timeoutMs: 5000 });
    expect(await replication.reached()).toBe(1);

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
