import { afterAll, describe, expect, it } from 'vitest';
import {
  redisCommand,
  startRedisCluster,
  startRedisSentinel,
  type RedisClusterTopology,
  type RedisSentinelTopology,
} from './helpers/redis-topology.js';

// The harness the fault suite (faults/redis-failover.test.ts) runs Coffer on: real Redis
// topologies started, failed over and stopped by the test.

let cluster: RedisClusterTopology | undefined;
let sentinel: RedisSentinelTopology | undefined;

afterAll(async () => {
  await cluster?.stop();
  await sentinel?.stop();
});

describe('test harness: Redis topologies', () => {
  it('a Redis Cluster of 3 masters and 3 replicas serves every slot; killing the master of {coffer} promotes its replica', async () => {
    cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
    expect(cluster.nodes).toHaveLength(6);
    expect(cluster.nodesVariable.split(',')).toHaveLength(6);
    const view = await cluster.clusterNodes();
    const masters = view.filter((entry) => entry.flags.includes('master'));
    expect(masters).toHaveLength(3);
    expect(view.filter((entry) => entry.flags.includes('slave'))).toHaveLength(3);
    const covered = masters.flatMap((entry) => entry.slots).reduce((sum, [first, last]) => sum + last - first + 1, 0);
    expect(covered).toBe(16384);

    const slot = await cluster.slotOf('{coffer}:log-outbox');
    expect(slot).toBe(await cluster.slotOf('{coffer}'));
    const victim = await cluster.masterOf('{coffer}');
    const replicas = await cluster.replicasOf(victim);
    expect(replicas).toHaveLength(1);
    expect(await redisCommand(victim, 'SET', '{coffer}:probe', 'before')).toMatch(/^OK/);
    // The write reaches the replica before the master dies, so the check after is meaningful.
    expect(await redisCommand(victim, 'WAIT', '1', '2000')).toMatch(/^1/);

    await cluster.killNode(victim);
    const killedAt = Date.now();
    const promoted = await cluster.waitForFailover(victim, 20_000, replicas);
    const tookMs = Date.now() - killedAt;
    expect(promoted).toBe(replicas[0]);
    expect(await cluster.masterOf('{coffer}')).toBe(promoted);
    expect(cluster.livePorts()).toHaveLength(5);
    expect((await redisCommand(promoted, 'GET', '{coffer}:probe'))?.trim()).toBe('before');
    console.log(`[harness] Redis Cluster: the replica of {coffer}'s master took over ${tookMs} ms after the kill`);
    await cluster.stop();
    expect(cluster.nodes.every((node) => node.child.exitCode !== null || node.child.signalCode !== null)).toBe(true);
    cluster = undefined;
  });

  it('Sentinels (3) promote the replica when the primary is killed', async () => {
    sentinel = await startRedisSentinel({ replicas: 1, sentinels: 3, name: 'mymaster' });
    expect(sentinel.sentinelsVariable.split(',')).toHaveLength(3);
    const primary = sentinel.masterPort();
    expect((await redisCommand(primary, 'ROLE'))?.split('\n')[0]).toBe('master');
    expect(await redisCommand(primary, 'SET', 'probe', 'before')).toMatch(/^OK/);
    expect(await redisCommand(primary, 'WAIT', '1', '2000')).toMatch(/^1/);

    expect(await sentinel.killMaster()).toBe(primary);
    const killedAt = Date.now();
    const promoted = await sentinel.waitForFailover(primary, 25_000);
    const tookMs = Date.now() - killedAt;
    expect(promoted).not.toBe(primary);
    expect(sentinel.masterPort()).toBe(promoted);
    expect((await redisCommand(promoted, 'GET', 'probe'))?.trim()).toBe('before');
    expect(await redisCommand(promoted, 'SET', 'probe', 'after')).toMatch(/^OK/);
    console.log(`[harness] Sentinel: a new primary answered ${tookMs} ms after the kill`);
  });
});
