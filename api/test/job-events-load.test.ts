import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import { Agent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from 'mysql2/promise';
import type { RedisClient } from '@coffer/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBackupQueue,
  createLogRepository,
  createMysqlPool,
  createRedis,
  type BackupQueue,
  type LogRepository,
} from '@coffer/shared';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

// The event streams under load, against the built API in a process of its own, so that its
// memory (VmRSS in /proc) is the API's alone: the clients live in this test process.

const ROOT = new URL('../..', import.meta.url).pathname;
const STREAMS = 1000;
/** Both sides hold one descriptor per stream, plus the API's MySQL, Redis and files. */
const FDS_NEEDED = 2 * STREAMS + 200;
const MiB = 1024 * 1024;

let env: TestEnvironment;
let api: ChildProcess;
let baseUrl: string;
let port: number;
const adminToken = `cfr_${randomBytes(32).toString('base64url')}`;
/** The API's log lines (LOG_LEVEL=warn), parsed. */
const apiLog: { msg?: string; level?: number }[] = [];

// This process's limit on open files (the API gets it raised when the hard limit allows).
const limits = await readFile('/proc/self/limits', 'utf8');
const [softFds, hardFds] = (/^Max open files\s+(\S+)\s+(\S+)/m.exec(limits) ?? [])
  .slice(1)
  .map((value) => (value === 'unlimited' ? Infinity : Number(value)));
const enoughFds = (softFds ?? 0) >= FDS_NEEDED;
if (!enoughFds) {
  console.warn(`job-events-load: open files limited to ${softFds} here (${FDS_NEEDED} needed): skipped`);
}

/** The resident memory of process `pid`, in bytes. */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for ${pid}`);
  return Number(kib) * 1024;
}

/** VmRSS once it holds still (within 1 MiB over 2 s), after the collector has had its turn; the last value at the deadline. */
async function settledRss(pid: number, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const samples: number[] = [];
  for (;;) {
    samples.push(await rssOf(pid));
    const recent = samples.slice(-8);
    if (recent.length === 8 && Math.max(...recent) - Math.min(...recent) < MiB) return recent.at(-1) ?? 0;
    if (Date.now() > deadline) return samples.at(-1) ?? 0;
    await sleep(250);
  }
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

function startApi(): ChildProcess {
  const server = join(ROOT, 'api/dist/server.js');
  const variables = {
    PATH: process.env.PATH ?? '',
    ...env.variables,
    PORT: String(port),
    INSTANCE_NAME: 'api-load',
    API_ADMIN_TOKEN: adminToken,
    // 1,000 streams of one token in a minute: no limit for this API.
    RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'warn',
  };
  // Raise the API's soft limit on open files when it is too low and the hard limit allows it.
  const raise = (softFds ?? 0) < FDS_NEEDED && (hardFds ?? 0) >= FDS_NEEDED;
  const child = raise
    ? spawn('/bin/sh', ['-c', `ulimit -n ${FDS_NEEDED} && exec "$0" "$@"`, process.execPath, server], {
        env: variables,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, [server], { env: variables, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => {
      try {
        apiLog.push(JSON.parse(line) as { msg?: string });
      } catch {
        apiLog.push({ msg: line });
      }
    });
  }
  return child;
}

/** A source folder with a long path, so that each job view (and each event) weighs a few KiB. */
let longSource: string;
let pool: Pool;
let logs: LogRepository;
let redis: RedisClient;
let queue: BackupQueue;

beforeAll(async () => {
  if (!enoughFds) return;
  env = await createTestEnvironment();
  port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  api = startApi();
  await waitFor(
    async () => {
      const ready = await fetch(`${baseUrl}/ready`).catch(() => null);
      return ready?.status === 200 ? true : undefined;
    },
    20_000,
    'the API to be ready',
  );
  longSource = join(env.sources, ...Array.from({ length: 12 }, (_, i) => `${i}`.padEnd(200, 'x')));
  await mkdir(longSource, { recursive: true });
  pool = createMysqlPool(env.config.mysql, { connectionLimit: 4 });
  logs = createLogRepository(pool);
  redis = createRedis(env.redisUrl, 'producer');
  queue = createBackupQueue(env.config, redis);
}, 60_000);

afterAll(async () => {
  if (api && api.exitCode === null) {
    api.kill('SIGKILL');
    await once(api, 'exit');
  }
  await queue?.close();
  redis?.disconnect();
  await pool?.end();
  await env?.cleanup();
});

/**
 * Plays one backup through: queued by the API over HTTP, then a worker's part written straight
 * to the log (`active`, then `failed` with `message`) and the job dropped from Redis, which makes
 * BullMQ tell the API (as `finishThroughLog` does in-process). Two `status` events per job.
 */
async function playJob(message: string): Promise<string> {
  const res = await fetch(`${baseUrl}/backup`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ source: longSource, destination: 'load' }),
  });
  expect(res.status, await res.clone().text()).toBe(202);
  const { id } = (await res.json()) as { id: string };
  // The API's `queued` row goes through the log outbox: the rows written here must come after it.
  await waitFor(
    async () => ((await logs.history(id)).some((row) => row.status === 'queued') ? true : undefined),
    10_000,
    'the queued row to land',
  );
  const entry = {
    action: 'backup',
    parameter: longSource,
    jobId: id,
    attempt: 1,
    worker: 'load-test',
    destination: 'load',
  } as const;
  await logs.append({ ...entry, status: 'active' });
  await logs.append({ ...entry, status: 'failed', code: 'TEST', message });
  await queue.remove(id);
  return id;
}

interface Stream {
  req: ClientRequest;
  res: IncomingMessage;
  /** Everything read so far. */
  text: string;
  ended: boolean;
}

function openStream(agent: Agent, path: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${baseUrl}${path}`, {
      agent,
      headers: { authorization: `Bearer ${adminToken}`, accept: 'text/event-stream' },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const stream: Stream = { req, res, text: '', ended: false };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (stream.text += chunk));
      res.on('end', () => (stream.ended = true));
      res.on('error', () => (stream.ended = true));
      res.on('close', () => (stream.ended = true));
      resolve(stream);
    });
    req.end();
  });
}

const statusEvents = (text: string) => text.split('event: status\n').length - 1;

describe.skipIf(!enoughFds)('event streams under load (the API in its own process)', () => {
  it(`holds ${STREAMS} idle GET /events streams in less than 100 MB more memory`, async () => {
    const pid = api.pid ?? 0;
    const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
    try {
      // Warm up the route (JIT, pools, the SSE plugin) so the baseline is not the cold process.
      const warm = await Promise.all(Array.from({ length: 20 }, () => openStream(agent, '/events')));
      for (const stream of warm) stream.req.destroy();
      const before = await settledRss(pid);

      const streams: Stream[] = [];
      // In batches, so that the listen backlog never overflows.
      while (streams.length < STREAMS) {
        const batch = await Promise.all(Array.from({ length: 100 }, () => openStream(agent, '/events')));
        streams.push(...batch);
      }
      expect(streams.every((stream) => stream.res.statusCode === 200)).toBe(true);
      expect(streams.every((stream) => stream.res.headers['content-type']?.startsWith('text/event-stream'))).toBe(true);
      const after = await settledRss(pid);
      console.log(
        `${STREAMS} idle /events streams: API VmRSS ${mib(before)} before, ${mib(after)} after ` +
          `(+${mib(after - before)}, ${((after - before) / STREAMS / 1024).toFixed(1)} KiB a stream)`,
      );
      expect(after - before).toBeLessThan(100 * 1000 * 1000);

      // Every one of them is live: one job's two transitions reach all of them.
      const started = Date.now();
      await playJob('done');
      await waitFor(
        async () => (streams.every((stream) => statusEvents(stream.text) >= 2) ? true : undefined),
        30_000,
        `both transitions on all ${STREAMS} streams`,
      );
      console.log(`one job's 2 transitions reached all ${STREAMS} streams in ${Date.now() - started} ms`);
      expect(streams.some((stream) => stream.ended)).toBe(false);
      const afterEvents = await rssOf(pid);
      console.log(`API VmRSS after fanning them out: ${mib(afterEvents)}`);

      for (const stream of streams) stream.req.destroy();
    } finally {
      agent.destroy();
    }
  }, 120_000);

  it('drops a GET /events client that never reads, without holding memory for it', async () => {
    const pid = api.pid ?? 0;
    const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
    // A client that reads everything, to show the events flow and it is not dropped.
    const reader = await openStream(agent, '/events');
    expect(reader.res.statusCode).toBe(200);

    // The client that never reads: raw HTTP on a socket paused once the response head is in.
    const socket: Socket = netConnect(port, '127.0.0.1');
    await once(socket, 'connect');
    let closed = false;
    let received = 0;
    socket.on('close', () => (closed = true));
    socket.on('error', () => (closed = true));
    const head = new Promise<string>((resolve) => {
      let text = '';
      const onData = (chunk: Buffer) => {
        received += chunk.length;
        text += chunk.toString('latin1');
        if (text.includes('\r\n\r\n')) {
          socket.off('data', onData);
          socket.pause();
          resolve(text);
        }
      };
      socket.on('data', onData);
    });
    socket.write(
      `GET /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${adminToken}\r\n` +
        'Accept: text/event-stream\r\n\r\n',
    );
    expect(await head).toMatch(/^HTTP\/1\.1 200 /);

    const before = await settledRss(pid);
    const dropped = () => apiLog.some((line) => line.msg === 'event stream client too far behind; dropped');
    expect(dropped()).toBe(false);

    // Jobs until the API gives up on the client, with a cap; each failed row carries 16 KiB.
    const message = 'm'.repeat(16 * 1024);
    const started = Date.now();
    const deadline = started + 90_000;
    let jobs = 0;
    let peak = before;
    while (!dropped() && jobs < 3000 && Date.now() < deadline) {
      await Promise.all(Array.from({ length: 10 }, () => playJob(message)));
      jobs += 10;
      peak = Math.max(peak, await rssOf(pid));
    }
    // The drop follows the last events by at most the API's log reads (ROW_WAIT_MS is 5 s).
    await waitFor(async () => (dropped() ? true : undefined), 10_000, 'the API to drop the client');
    const droppedAfterMs = Date.now() - started;
    const lastJob = await playJob('after the drop');

    // The API let the socket go: once this side reads again, what the kernels held drains, then the end.
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.resume();
    await waitFor(async () => (closed ? true : undefined), 15_000, 'the server to close the socket');

    const after = await settledRss(pid);
    console.log(
      `non-reading client dropped after ${jobs} jobs (${2 * jobs} status events, ${droppedAfterMs} ms); ` +
        `it had been sent ${mib(received)}; API VmRSS ${mib(before)} before, peak ${mib(peak)}, ` +
        `${mib(after)} after (+${mib(after - before)})`,
    );
    expect(after - before).toBeLessThan(64 * MiB);
    expect(peak - before).toBeLessThan(100 * MiB);

    // The reading client kept up and is still there, down to the job after the drop.
    await waitFor(
      async () => (reader.text.includes(`"id":"${lastJob}"`) ? true : undefined),
      20_000,
      'the reader to see the last job',
    );
    expect(reader.ended).toBe(false);
    expect(statusEvents(reader.text)).toBe(2 * (jobs + 1));
    reader.req.destroy();
    agent.destroy();
  }, 180_000);
});
