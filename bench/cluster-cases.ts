import { Queue } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import { startRedisCluster } from '../test/helpers/redis-topology.js';
import { caseResult, type CaseResult } from './report.js';
import {
  finishedSince,
  jobRate,
  postTinyBackups,
  QUEUE_NAME,
  startTinyJobsStack,
  waitForWorkers,
  type Api,
  type ServiceDirs,
} from './service-cases.js';
import { E2E_JOBS, E2E_POLL_MS, E2E_WORKER_CONCURRENCY, HTTP_CONNECTIONS, RUNS } from './settings.js';
import { isolate, redisUrl, stop, type Scope } from './stack.js';
import { interleave } from './timing.js';

const MASTERS = 3;
const REPLICAS_PER_MASTER = 1;

/**
 * Tiny jobs end to end, as `runEndToEndCase` runs Coffer's side (1 API process, 2 worker
 * processes, the same settings), with Redis a local Redis Cluster of 3 masters with a replica
 * each, against the same stack through the machine's single Redis. The cluster is started for
 * the case and stopped (every node killed, its folder removed: it holds nothing else) at the end.
 */
export async function runClusterCase(scope: Scope, dirs: ServiceDirs, source: string): Promise<CaseResult> {
  console.log(`case: end-to-end tiny jobs through a ${MASTERS}-master Redis Cluster, 2 workers`);
  const cluster = await startRedisCluster({ masters: MASTERS, replicasPerMaster: REPLICAS_PER_MASTER });
  // This case's processes: those it adds to the scope from here on.
  const firstProcess = scope.processes.length;
  let clusterQueue: Queue | undefined;
  let singleQueue: Queue | undefined;
  let clusterConnection: Cluster | undefined;
  let singleConnection: Redis | undefined;
  try {
    // REDIS_URL empty is unset: only REDIS_CLUSTER_NODES names the Redis.
    const onCluster = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodesVariable };
    const clusterIsolation = isolate(scope, 'cluster');
    const singleIsolation = isolate(scope, 'cluster-single');
    const clusterApi = await startTinyJobsStack(scope, 'cluster', clusterIsolation, dirs, onCluster);
    const singleApi = await startTinyJobsStack(scope, 'cluster-single', singleIsolation, dirs);

    const [first] = cluster.nodes;
    clusterConnection = new Cluster([{ host: '127.0.0.1', port: first?.port ?? 0 }], {
      redisOptions: { maxRetriesPerRequest: null },
    });
    singleConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
    // On a cluster, Coffer's prefix is the hash tag `{QUEUE_PREFIX}`.
    const hashTag = `{${clusterIsolation.prefix}}`;
    clusterQueue = new Queue(QUEUE_NAME, { connection: clusterConnection, prefix: hashTag });
    singleQueue = new Queue(QUEUE_NAME, { connection: singleConnection, prefix: singleIsolation.prefix });
    await waitForWorkers(clusterQueue, 2);
    await waitForWorkers(singleQueue, 2);
    const slot = await cluster.slotOf(hashTag);
    const carrier = await cluster.masterOf(slot);

    // Submissions not answered 202, in the timed runs and in the warm-up runs.
    const refused = { timed: 0, warmUp: 0 };
    const postJobs = async (api: Api, run: number) => {
      const result = await postTinyBackups(api, source, run < 0 ? 200 : E2E_JOBS);
      refused[run < 0 ? 'warmUp' : 'timed'] += result.refused;
      return result.accepted;
    };
    const side = (name: string, queue: Queue, api: Api) => ({
      name,
      run: async (run: number) => jobRate(await finishedSince(queue), () => postJobs(api, run)),
    });
    const contenders = [side('cluster', clusterQueue, clusterApi), side('single', singleQueue, singleApi)];
    for (const contender of contenders) await contender.run(-1);
    const samples = await interleave(RUNS.endToEnd, contenders);
    const failed =
      ((await clusterQueue.getJobCounts('failed')).failed ?? 0) +
      ((await singleQueue.getJobCounts('failed')).failed ?? 0);
    const problems = [
      refused.timed > 0 ? `${refused.timed} submissions refused in the timed runs` : '',
      refused.warmUp > 0 ? `${refused.warmUp} submissions refused in the warm-up runs` : '',
      failed > 0 ? `${failed} jobs failed` : '',
    ];
    return caseResult({
      name: `end-to-end tiny jobs through a ${MASTERS}-master Redis Cluster (${MASTERS * REPLICAS_PER_MASTER} replicas), 2 workers`,
      unit: 'jobs/s',
      // No target yet: the figure is reported and sets the next one. CaseSpec needs a bound; this one always holds.
      target: '>= 0',
      baselineName: 'the same through one Redis',
      coffer: samples.get('cluster') ?? [],
      baseline: samples.get('single') ?? [],
      note:
        `no target yet (">= 0" always holds): this figure sets the next one; ` +
        `local cluster of ${MASTERS} masters with ${REPLICAS_PER_MASTER} replica each; all of one deployment's keys ` +
        `share one hash tag (${hashTag}, slot ${slot}), so one master (port ${carrier}) carries the whole queue ` +
        `and streams every write to its replica, the other masters idle; the single Redis has no replica; ` +
        `${E2E_JOBS} jobs per run, POST /backup over ${HTTP_CONNECTIONS} kept-alive connections on both sides, ` +
        `timed from the first submission until a poll of the queue's finished count (every ${E2E_POLL_MS} ms) ` +
        `sees the last job done; WORKER_CONCURRENCY ${E2E_WORKER_CONCURRENCY}` +
        problems
          .filter(Boolean)
          .map((problem) => `; ${problem}`)
          .join(''),
    });
  } finally {
    await clusterQueue?.close();
    await singleQueue?.close();
    clusterConnection?.disconnect();
    singleConnection?.disconnect();
    await Promise.all(scope.processes.slice(firstProcess).map(stop));
    // Every node killed and its folder removed: the cluster's keys go with it.
    await cluster.stop();
  }
}
