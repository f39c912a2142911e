import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_SETTINGS_FILE, waitFor } from '../test/helpers/environment.js';
import {
  redisCommand,
  startRedisCluster,
  startRedisSentinel,
  type RedisClusterTopology,
  type RedisSentinelTopology,
} from '../test/helpers/redis-topology.js';
import { describeTree } from '../test/helpers/trees.js';
import {
  Cluster,
  clusterEnv,
  logRows,
  type LogRow,
  makeTree,
  type Servers,
  startServers,
  waitForServers,
} from './harness.js';

// Coffer on a Redis Cluster (REDIS_CLUSTER_NODES) and on a Sentinel-watched primary
// (REDIS_SENTINELS): the API and workers run as real processes against real topologies
// (test/helpers/redis-topology.ts). Each topology runs the everyday flows (a backup end to end,
// cancelling a queued job, Idempotency-Key), the log outbox through a MySQL outage, and a
// failover: the master holding Coffer's keys is SIGKILLed in the middle of a burst of
// submissions. Every job the API accepted must complete, none twice in the log.

const ROOT = new URL('..', import.meta.url).pathname;
const TERMINAL = ['completed', 'failed', 'cancelled'];
const BURST = 150;
const IN_FLIGHT = 4;
const DESTINATIONS = 3;

/** What a describe block needs of a topology. */
interface RedisUnderTest {
  /** Environment for the Coffer processes (REDIS_URL left unset). */
  env: Record<string, string>;
  /** SIGKILLs the master holding Coffer's keys; returns its port. */
  killKeysMaster(): Promise<number>;
  /** Waits until a replica of the killed master serves Coffer's keys; returns its port. */
  waitForFailover(): Promise<number>;
  /** The log outbox list (rows waiting for MySQL), read from the master holding it. */
  outbox(): Promise<{ status: string; jobId?: string }[]>;
  stop(): Promise<void>;
}

async function readList(port: number, key: string): Promise<{ status: string; jobId?: string }[]> {
  const reply = await redisCommand(port, 'LRANGE', key, '0', '-1');
  if (reply === undefined) throw new Error(`Redis on ${port} did not answer LRANGE ${key}`);
  return reply
    .split(/\r?\n/)
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { status: string; jobId?: string });
}

async function onRedisCluster(): Promise<RedisUnderTest> {
  const topology: RedisClusterTopology = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
  let replicas: number[] = [];
  let victim = 0;
  return {
    // The prefix becomes the hash tag {coffer}: every key of Coffer's lives in its slot.
    // A submission is answered once the master's replica holds it, as the README advises.
    env: {
      REDIS_URL: '',
      REDIS_CLUSTER_NODES: topology.nodesVariable,
      QUEUE_PREFIX: 'coffer',
      REDIS_WAIT_REPLICAS: '1',
    },
    async killKeysMaster() {
      victim = await topology.masterOf('{coffer}');
      replicas = await topology.replicasOf(victim);
      await topology.killNode(victim);
      return victim;
    },
    waitForFailover: () => topology.waitForFailover(victim, 30_000, replicas),
    async outbox() {
      return readList(await topology.masterOf('{coffer}'), '{coffer}:log-outbox');
    },
    stop: () => topology.stop(),
  };
}

async function onSentinel(): Promise<RedisUnderTest> {
  const topology: RedisSentinelTopology = await startRedisSentinel({ replicas: 1, sentinels: 3, name: 'mymaster' });
  return {
    env: {
      REDIS_URL: '',
      REDIS_SENTINELS: topology.sentinelsVariable,
      REDIS_SENTINEL_NAME: topology.name,
      QUEUE_PREFIX: 'coffer',
      REDIS_WAIT_REPLICAS: '1',
    },
    killKeysMaster: () => topology.killMaster(),
    waitForFailover: () => topology.waitForFailover(undefined, 30_000),
    outbox: () => readList(topology.masterPort(), 'coffer:log-outbox'),
    stop: () => topology.stop(),
  };
}

interface BurstResult {
  accepted: string[];
  /** Answers other than 202, by `status code` (0: no answer). */
  refused: Map<string, number>;
}

function refusals(result: BurstResult): number {
  return [...result.refused.values()].reduce((sum, n) => sum + n, 0);
}

function suite(title: string, start: () => Promise<RedisUnderTest>, options: { outbox: boolean }): void {
  describe(title, () => {
    let redis: RedisUnderTest | undefined;
    let servers: Servers | undefined;
    let cluster: Cluster;
    let sources: string;
    let backups: string;

    const db = (): Servers => {
      if (!servers) throw new Error('no servers');
      return servers;
    };
    const topology = (): RedisUnderTest => {
      if (!redis) throw new Error('no Redis topology');
      return redis;
    };

    beforeAll(async () => {
      redis = await start();
      servers = await startServers();
      sources = join(servers.dir, 'sources');
      backups = join(servers.dir, 'backups');
      await mkdir(sources);
      await mkdir(backups);
      // The private single Redis of startServers() stays unused: REDIS_URL is overridden.
      cluster = await Cluster.create(
        clusterEnv(servers, { sources, backups }, { WORKER_CONCURRENCY: '4', ...redis.env }),
      );
      await cluster.startApi();
    }, 120_000);

    afterAll(async () => {
      await cluster?.stopAll();
      await servers?.stopAll();
      await redis?.stop();
    });

    async function smallSource(name: string): Promise<string> {
      const source = join(sources, name);
      await mkdir(source);
      await writeFile(join(source, 'data.txt'), `${name}\n`);
      return source;
    }

    /** The job's log rows once one of them is terminal. */
    async function finishedHistory(id: string, timeoutMs = 30_000): Promise<string[]> {
      return waitFor(
        async () => {
          const rows = await logRows(db(), id).catch(() => []);
          return rows.some((row) => TERMINAL.includes(row.status)) ? rows.map((row) => row.status) : undefined;
        },
        timeoutMs,
        `job ${id} to finish in the log`,
      );
    }

    async function post(
      path: string,
      body: unknown,
      headers: Record<string, string> = {},
    ): Promise<{ status: number; body: { id: string; code?: string; status?: string }; headers: Headers }> {
      const response = await fetch(cluster.baseUrl + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...cluster.headers(), ...headers },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      return {
        status: response.status,
        body: (await response.json()) as { id: string; code?: string },
        headers: response.headers,
      };
    }

    it('a queued job cancelled (DELETE /jobs/:id) before any worker runs stays cancelled once workers start', async () => {
      // No worker yet: the job waits in the queue.
      const id = await cluster.submit(await smallSource('cancel-me'));
      expect((await cluster.job(id)).status).toBe('queued');
      const cancelled = await cluster.request<{ status: string; error?: { code: string } }>('DELETE', `/jobs/${id}`);
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });

      await cluster.startWorker('w1');
      // A job after it runs: the worker is taking jobs, and had its chance at the cancelled one.
      const next = await cluster.submit(await smallSource('after-cancel'));
      expect((await cluster.waitForStatus(next, ['completed', 'failed'])).status).toBe('completed');
      expect((await cluster.job(id)).status).toBe('cancelled');
      expect(await finishedHistory(id)).toEqual(['queued', 'cancelled']);
    });

    it('a backup through the API completes on a worker: exact snapshot, history queued, active, completed', async () => {
      const source = join(sources, 'tree');
      await makeTree(source, 3, 20, 2048);
      const id = await cluster.submit(source);
      const view = await cluster.waitForStatus(id, ['completed', 'failed']);
      expect(view.status, JSON.stringify(view)).toBe('completed');
      expect(view.result?.files).toBe(60);
      expect(await describeTree(view.result?.path ?? '')).toEqual(await describeTree(source));
      const snapshot = await cluster.request<{ path: string }>('GET', `/snapshots/${id}`);
      expect(snapshot.status).toBe(200);
      expect(snapshot.body.path).toBe(view.result?.path);
      expect(await finishedHistory(id)).toEqual(['queued', 'active', 'completed']);
    });

    it('the token command records a revocation in Redis too; the API refuses the token at once', async () => {
      const token = (...args: string[]) =>
        spawnSync(process.execPath, [join(ROOT, 'api/dist/cli/token.js'), ...args], {
          env: { PATH: process.env.PATH ?? '', ...NO_SETTINGS_FILE, ...cluster.env },
          encoding: 'utf8',
        });
      const created = token('create', '--name', 'failover-viewer', '--role', 'viewer');
      expect(created.status, created.stderr).toBe(0);
      const secret = created.stdout.trim();
      const asViewer = { authorization: `Bearer ${secret}` };
      expect((await fetch(`${cluster.baseUrl}/jobs`, { headers: asViewer })).status).toBe(200);

      const revoked = token('revoke', 'failover-viewer');
      // 1 with "Redis did not record it" when its Redis command is refused.
      expect(revoked.status, revoked.stderr).toBe(0);
      expect((await fetch(`${cluster.baseUrl}/jobs`, { headers: asViewer })).status).toBe(401);
    });

    it('the same Idempotency-Key gives the same job, one after the other and at the same time', async () => {
      const source = await smallSource('idempotent');
      const body = { source, destination: 'idempotent' };
      const key = `faults-${title}-one`;
      const first = await post('/backup', body, { 'idempotency-key': key });
      const again = await post('/backup', body, { 'idempotency-key': key });
      expect(first.status).toBe(202);
      expect(again.status).toBe(202);
      expect(again.body.id).toBe(first.body.id);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      const otherBody = await post('/backup', { ...body, destination: 'idempotent-2' }, { 'idempotency-key': key });
      expect(otherBody.status).toBe(422);
      expect(otherBody.body.code).toBe('IDEMPOTENCY_KEY_REUSED');

      const together = await Promise.all(
        [1, 2, 3].map(() => post('/backup', body, { 'idempotency-key': `faults-${title}-together` })),
      );
      expect(together.map((answer) => answer.status)).toEqual([202, 202, 202]);
      expect(new Set(together.map((answer) => answer.body.id)).size).toBe(1);

      for (const id of [first.body.id, together[0]?.body.id ?? '']) {
        expect((await cluster.waitForStatus(id, ['completed', 'failed'])).status).toBe('completed');
        const history = await finishedHistory(id);
        expect(history.filter((status) => status === 'queued')).toHaveLength(1);
        expect(history.filter((status) => TERMINAL.includes(status))).toEqual(['completed']);
      }
    });

    if (options.outbox) {
      it('with MySQL down, jobs complete (views from Redis), their rows wait in the outbox and land when MySQL returns', async () => {
        // The destination's owner is recorded while MySQL is up.
        const source = await smallSource('outbox');
        const firstId = await cluster.submit(source, 'outbox');
        expect((await cluster.waitForStatus(firstId, ['completed', 'failed'])).status).toBe('completed');

        await db().mariadb.stop('SIGTERM');
        const ids: string[] = [];
        for (let n = 0; n < 5; n++) ids.push(await cluster.submit(source, 'outbox'));
        for (const id of ids) {
          expect((await cluster.waitForStatus(id, ['completed', 'failed'], 30_000)).status).toBe('completed');
        }
        const ready = await cluster.request<{ mysql: string }>('GET', '/ready');
        expect(ready.body.mysql).toBe('down');
        const waiting = await topology().outbox();
        for (const id of ids) {
          expect(
            waiting.filter((row) => row.jobId === id).map((row) => row.status),
            id,
          ).toContain('completed');
        }

        db().mariadb.start();
        await waitForServers(db());
        const backAt = Date.now();
        for (const id of ids) expect(await finishedHistory(id, 60_000)).toEqual(['queued', 'active', 'completed']);
        await waitFor(
          async () => ((await topology().outbox()).length === 0 ? true : undefined),
          30_000,
          'the outbox to empty',
        );
        console.log(
          `[faults] ${title}: MySQL down, ${ids.length} jobs completed meanwhile; ${waiting.length} rows waited in the outbox and landed ${Date.now() - backAt} ms after MySQL returned`,
        );
      });
    }

    it('the master holding the queue is SIGKILLed mid-burst: a replica takes over, every accepted job completes, none twice', async () => {
      await cluster.startWorker('w2');
      await cluster.startWorker('w3');
      const folders: string[] = [];
      for (let d = 0; d < DESTINATIONS; d++) folders.push(await smallSource(`burst-${d}`));
      // One backup into each destination first: the API then knows their owners.
      const first: string[] = [];
      for (let d = 0; d < DESTINATIONS; d++) first.push(await cluster.submit(folders[d] ?? '', `burst-${d}`));
      for (const id of first) await cluster.waitForStatus(id, ['completed'], 60_000);

      const result: BurstResult = { accepted: [], refused: new Map() };
      let killing: Promise<number> | null = null;
      let killedAt = 0;
      let killedPort = 0;
      let refusedBeforeKill = 0;
      let firstAfterKill: string | undefined;
      let flowing: Promise<number> | null = null;
      let failover: Promise<{ port: number; ms: number }> | null = null;
      const onAnswer = () => {
        if (result.accepted.length >= Math.floor(BURST / 3) && !killing) {
          refusedBeforeKill = refusals(result);
          // Timed from the kill itself: finding the master to kill takes a moment.
          killing = topology()
            .killKeysMaster()
            .then((port) => {
              killedAt = Date.now();
              return port;
            });
          failover = killing.then(async (port) => {
            killedPort = port;
            const promoted = await topology().waitForFailover();
            return { port: promoted, ms: Date.now() - killedAt };
          });
          // Settled here too, so a failure surfaces where it is awaited below, not as unhandled.
          failover.catch(() => undefined);
        }
      };
      const onAccepted = (id: string, sentAt: number) => {
        // A request sent before the kill may be answered after it: only one sent after counts.
        if (killing && killedAt > 0 && sentAt > killedAt && firstAfterKill === undefined) {
          firstAfterKill = id;
          // Jobs flow again when the first job submitted after the kill has completed.
          flowing = cluster.waitForStatus(id, ['completed'], 120_000).then(() => Date.now() - killedAt);
          flowing.catch(() => undefined);
        }
      };

      let next = 0;
      let timedOut = false;
      const deadline = Date.now() + 120_000;
      async function lane(): Promise<void> {
        while (next < BURST) {
          const n = next++;
          for (;;) {
            if (Date.now() > deadline) {
              timedOut = true;
              return;
            }
            const d = n % DESTINATIONS;
            const sentAt = Date.now();
            const response = await cluster
              .request<{ id: string; code: string }>('POST', '/backup', {
                source: folders[d],
                destination: `burst-${d}`,
              })
              .catch((err: unknown) => ({ status: 0, body: { id: '', code: String(err) }, ms: 0 }));
            if (response.status === 202) {
              result.accepted.push(response.body.id);
              onAccepted(response.body.id, sentAt);
              onAnswer();
              break;
            }
            const key = `${response.status} ${response.body.code}`;
            result.refused.set(key, (result.refused.get(key) ?? 0) + 1);
            onAnswer();
            // A client sends a refused submission again, a little later.
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
      }
      const burstStarted = Date.now();
      await Promise.all(Array.from({ length: IN_FLIGHT }, () => lane()));
      const burstMs = Date.now() - burstStarted;
      if (timedOut) {
        const tail = (text: string) => text.slice(-4000);
        console.log(
          `[faults] ${title}: the burst did not end within 120 s: ${result.accepted.length} accepted, ${refusals(result) - refusedBeforeKill} refused since the kill: ${JSON.stringify(Object.fromEntries(result.refused))}\n--- api:\n${tail(cluster.api.log())}\n${[
            ...cluster.workers.values(),
          ]
            .map((worker) => `--- ${worker.name}:\n${tail(worker.log())}`)
            .join('\n')}`,
        );
      }
      expect(timedOut, 'the burst ended within 120 s').toBe(false);
      expect(killing).not.toBeNull();
      const promoted = await (failover as Promise<{ port: number; ms: number }> | null);
      const flowAgainMs = await (flowing as Promise<number> | null);
      expect(result.accepted).toHaveLength(BURST);
      expect(new Set(result.accepted).size).toBe(BURST);

      // Every accepted job reaches an end; lost: those that did not complete.
      const statuses = new Map<string, string>();
      for (const id of result.accepted) {
        const view = await cluster
          .waitForStatus(id, TERMINAL, 120_000)
          .catch(async () => (await cluster.job(id).catch(() => null)) ?? { status: 'unknown' });
        statuses.set(id, view.status);
      }
      const notCompleted = [...statuses.entries()].filter(([, status]) => status !== 'completed');
      const settledMs = Date.now() - burstStarted - burstMs;

      // The log: every accepted job finished there, none with two terminal rows.
      const wanted = new Set(result.accepted);
      const rows = await waitFor(
        async () => {
          const all = await logRows(db()).catch(() => null);
          if (!all) return undefined;
          const finished = new Set(
            all.filter((row) => TERMINAL.includes(row.status) && wanted.has(row.jobId ?? '')).map((row) => row.jobId),
          );
          return finished.size === wanted.size ? all : undefined;
        },
        120_000,
        `${BURST} jobs to finish in the log`,
      ).catch(async () => logRows(db()));
      const byJob = new Map<string, LogRow[]>();
      for (const row of rows) {
        if (row.jobId && wanted.has(row.jobId)) byJob.set(row.jobId, [...(byJob.get(row.jobId) ?? []), row]);
      }
      const histories = [...byJob.entries()].map(([id, history]) => ({
        id,
        statuses: history.map((row) => row.status),
      }));
      const duplicated = histories.filter(
        (history) => history.statuses.filter((status) => TERMINAL.includes(status)).length > 1,
      );
      const twiceQueued = histories.filter(
        (history) => history.statuses.filter((status) => status === 'queued').length > 1,
      );
      const ranAgain = histories.filter((history) => history.statuses.filter((s) => s === 'active').length > 1);
      const unfinishedInLog = result.accepted.filter(
        (id) => !(byJob.get(id) ?? []).some((row) => TERMINAL.includes(row.status)),
      );
      const refusedDuring = refusals(result) - refusedBeforeKill;

      console.log(`[faults] ${title}: killed the master holding {coffer} (port ${killedPort})`);
      console.log(
        `[faults] ${title}: replica ${promoted?.port} took over ${promoted ? (promoted.ms / 1000).toFixed(1) : '?'} s after the kill`,
      );
      console.log(
        `[faults] ${title}: jobs flow again after ${flowAgainMs === null ? '?' : (flowAgainMs / 1000).toFixed(1)} s (first job submitted after the kill, ${firstAfterKill}, completed); the burst took ${(burstMs / 1000).toFixed(1)} s, its last jobs ended ${(settledMs / 1000).toFixed(1)} s later`,
      );
      console.log(
        `[faults] ${title}: ${result.accepted.length} accepted, ${notCompleted.length} lost, ${duplicated.length} with more than one terminal row (${ranAgain.length} ran more than once, ${twiceQueued.length} queued twice)`,
      );
      console.log(
        `[faults] ${title}: ${refusedDuring} submissions refused during the outage (and sent again): ${JSON.stringify(Object.fromEntries(result.refused))}`,
      );
      if (notCompleted.length + duplicated.length + unfinishedInLog.length > 0) {
        console.log(
          `[faults] ${title}: not completed ${JSON.stringify(notCompleted)}; duplicated ${JSON.stringify(duplicated)}; unfinished in the log ${JSON.stringify(unfinishedInLog.map((id) => ({ id, statuses: byJob.get(id)?.map((row) => row.status) })))}`,
        );
      }

      expect(promoted).not.toBeNull();
      expect(flowAgainMs).not.toBeNull();
      expect(notCompleted).toEqual([]);
      expect(duplicated).toEqual([]);
      expect(unfinishedInLog).toEqual([]);
      // After the failover, a new backup goes through as before.
      const after = await cluster.submit(folders[0] ?? '', 'burst-0');
      expect((await cluster.waitForStatus(after, ['completed', 'failed'])).status).toBe('completed');
    }, 420_000);
  });
}

suite('Redis Cluster (3 masters, 3 replicas)', onRedisCluster, { outbox: true });
suite('Redis Sentinel (primary, replica, 3 sentinels)', onSentinel, { outbox: true });
