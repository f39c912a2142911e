import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../test/helpers/environment.js';
import { type Cluster, type FaultStack, type Servers, startFaultStack, waitForServers } from './harness.js';

// Schedules live in MySQL; Redis holds only the job schedulers made from them. A Redis that
// restarts with nothing on disk loses them: the API installs them again once it sees Redis
// back, and the runs come back.

interface ScheduleView {
  lastJobId: string | null;
  lastStatus: string | null;
}

let stack: FaultStack;
let servers: Servers;
let cluster: Cluster;

beforeAll(async () => {
  stack = await startFaultStack({ SCHEDULE_MIN_INTERVAL_SECONDS: '1' });
  ({ servers, cluster } = stack);
  await cluster.startWorker('w1');
});

afterAll(async () => {
  await stack?.stop();
});

/** The schedule's latest run once it completed, other than `except`. */
async function completedRun(name: string, except: string | null, timeoutMs: number): Promise<string> {
  return waitFor(
    async () => {
      const view = await cluster.request<ScheduleView>('GET', `/schedules/${name}`).catch(() => null);
      const run = view?.body;
      return run?.lastStatus === 'completed' && run.lastJobId !== null && run.lastJobId !== except
        ? run.lastJobId
        : undefined;
    },
    timeoutMs,
    `a completed run of ${name}`,
  );
}

describe('Redis restarted empty', () => {
  it("installs the schedules again from MySQL: the schedule's runs come back, each an ordinary backup", async () => {
    const source = join(stack.sources, 'scheduled');
    await mkdir(source);
    await writeFile(join(source, 'data.txt'), 'every two seconds\n');
    const created = await cluster.request('POST', '/schedules', {
      name: 'every-2s',
      cron: '*/2 * * * * *',
      backup: { source, destination: 'scheduled' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const before = await completedRun('every-2s', null, 30_000);

    // Stopped, its data removed (the AOF this harness keeps), started: as a Redis without persistence.
    const mark = cluster.api.mark();
    await servers.redis.stop('SIGKILL');
    const dataDir = join(servers.dir, 'redis');
    for (const entry of await readdir(dataDir)) await rm(join(dataDir, entry), { recursive: true, force: true });
    servers.redis.start();
    await waitForServers(servers);
    const restarted = Date.now();

    const after = await completedRun('every-2s', before, 60_000);
    const recovered = Date.now() - restarted;
    expect(cluster.api.logSince(mark)).toContain('schedules installed in Redis');

    const job = await cluster.request<{ status: string; schedule: string | null; createdAt: string }>(
      'GET',
      `/jobs/${after}`,
    );
    expect(job.body).toMatchObject({ status: 'completed', schedule: 'every-2s' });
    expect(Date.parse(job.body.createdAt)).toBeGreaterThanOrEqual(restarted - 1000);
    const logs = await cluster.request<{ items: { status: string; schedule: string | null }[] }>(
      'GET',
      `/logs?jobId=${after}`,
    );
    expect(logs.body.items.map((row) => row.status).reverse()).toEqual(['queued', 'active', 'completed']);
    expect(logs.body.items.every((row) => row.schedule === 'every-2s')).toBe(true);
    console.log(`[faults] Redis restarted empty: the schedule's next completed run came ${recovered} ms later`);
  });
});
