import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../helpers/environment.js';
import { freePort } from '../helpers/ports.js';

// Beyond one process of each: two API replicas and three workers sharing one Redis, one MySQL
// and one backup store, as a balancer and several hosts would run them.
const ROOT = new URL('../..', import.meta.url).pathname;
const WORKERS = ['worker-1', 'worker-2', 'worker-3'];
const RATE_LIMIT = 30;

let env: TestEnvironment;
const adminToken = `cfr_${randomBytes(32).toString('base64url')}`;
const processes: ChildProcess[] = [];
/** Base URLs of the replicas: `a` and `b` with the default rate limit, `c` and `d` with RATE_LIMIT. */
const urls: Record<'a' | 'b' | 'c' | 'd', string> = { a: '', b: '', c: '', d: '' };

interface JobView {
  id: string;
  status: string;
  progress: { files: number };
  result?: { path: string };
}
interface LogRow {
  status: string;
  jobId: string;
  worker: string;
}

function launch(script: string, extra: Record<string, string>): void {
  const child = spawn(process.execPath, [join(ROOT, script)], {
    env: { PATH: process.env.PATH ?? '', ...env.variables, ...extra },
    stdio: 'ignore',
  });
  processes.push(child);
}

async function call<T>(
  base: string,
  path: string,
  init: { method?: string; body?: unknown; token?: string } = {},
): Promise<{ status: number; body: T }> {
  const response = await fetch(base + path, {
    method: init.method ?? 'GET',
    headers: {
      authorization: `Bearer ${init.token ?? adminToken}`,
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: response.status, body: (await response.json()) as T };
}

async function submit(base: string, source: string): Promise<string> {
  const { status, body } = await call<{ id: string }>(base, '/backup', { method: 'POST', body: { source } });
  expect(status).toBe(202);
  return body.id;
}

async function finished(base: string, id: string): Promise<JobView> {
  return waitFor(
    async () => {
      const { body } = await call<JobView>(base, `/jobs/${id}`);
      return ['completed', 'failed', 'cancelled'].includes(body.status) ? body : undefined;
    },
    30_000,
    `job ${id} to finish`,
  );
}

/** A folder holding one file of `mib` MiB of data. */
async function dataFile(name: string, mib: number): Promise<string> {
  const folder = join(env.sources, name);
  await mkdir(folder, { recursive: true });
  const file = await open(join(folder, 'data.bin'), 'w');
  const chunk = randomBytes(1024 * 1024);
  for (let i = 0; i < mib; i += 1) await file.write(chunk);
  await file.close();
  return folder;
}

/** Reads a Server-Sent Events stream until it ends; returns its events. */
async function readEvents(base: string, path: string): Promise<{ event: string; data: { status?: string } }[]> {
  const response = await fetch(base + path, { headers: { authorization: `Bearer ${adminToken}` } });
  expect(response.status).toBe(200);
  const text = await response.text();
  return text
    .split('\n\n')
    .map((block) => {
      const field = (name: string) =>
        block
          .split('\n')
          .find((line) => line.startsWith(`${name}:`))
          ?.slice(name.length + 1)
          .trim();
      const data = field('data');
      return { event: field('event') ?? '', data: data ? (JSON.parse(data) as { status?: string }) : {} };
    })
    .filter(({ event }) => event !== '');
}

beforeAll(async () => {
  env = await createTestEnvironment();
  for (const [name, limit] of [
    ['a', '600'],
    ['b', '600'],
    ['c', String(RATE_LIMIT)],
    ['d', String(RATE_LIMIT)],
  ] as const) {
    const port = await freePort();
    urls[name] = `http://127.0.0.1:${port}`;
    launch('api/dist/server.js', {
      PORT: String(port),
      INSTANCE_NAME: `api-${name}`,
      API_ADMIN_TOKEN: adminToken,
      RATE_LIMIT_PER_MINUTE: limit,
    });
  }
  for (const name of WORKERS) launch('worker/dist/main.js', { INSTANCE_NAME: name });
  for (const base of Object.values(urls)) {
    await waitFor(
      async () => ((await fetch(`${base}/ready`).catch(() => null))?.status === 200 ? true : undefined),
      20_000,
      `${base} to be ready`,
    );
  }
}, 60_000);

afterAll(async () => {
  for (const child of processes) if (child.exitCode === null) child.kill('SIGKILL');
  await env.cleanup();
});

describe('two API replicas and three workers', () => {
  it('run jobs submitted on either replica once each, seen alike from both', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 24; i += 1) {
      const source = join(env.sources, `small-${i}`);
      await mkdir(source, { recursive: true });
      await writeFile(join(source, 'file.txt'), `file ${i}\n`);
      ids.push(await submit(i % 2 === 0 ? urls.a : urls.b, source));
    }

    for (const [i, id] of ids.entries()) {
      const other = i % 2 === 0 ? urls.b : urls.a;
      expect((await finished(other, id)).status).toBe('completed');
    }
    const rows = await waitFor(async () => {
      const { body } = await call<{ items: LogRow[] }>(urls.b, '/logs?limit=1000');
      const ours = body.items.filter((row) => ids.includes(row.jobId));
      return ours.length === ids.length * 3 ? ours : undefined;
    });
    for (const id of ids) {
      const history = rows.filter((row) => row.jobId === id).reverse();
      expect(history.map((row) => row.status)).toEqual(['queued', 'active', 'completed']);
      expect(WORKERS).toContain(history[1]?.worker);
    }
  });

  it('cancel a job on one replica that was submitted on the other, while a worker copies it', async () => {
    // 20,000 files: a copy of a second or more, long enough to be caught running.
    const source = join(env.sources, 'to-cancel');
    for (let folder = 0; folder < 80; folder += 1) {
      const dir = join(source, `d${folder}`);
      await mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: 250 }, (_, i) => writeFile(join(dir, `f${i}`), `${folder}/${i}\n`)));
    }
    const id = await submit(urls.a, source);
    await waitFor(
      async () => {
        const { body } = await call<JobView>(urls.b, `/jobs/${id}`);
        return body.status === 'active' && body.progress.files > 50 ? true : undefined;
      },
      20_000,
      'the copy to be under way',
    );

    const cancel = await call<JobView>(urls.b, `/jobs/${id}`, { method: 'DELETE' });

    expect([200, 202]).toContain(cancel.status);
    expect((await finished(urls.a, id)).status).toBe('cancelled');
    // No snapshot of it anywhere in the store, not even a partial one.
    const destinations = await readdir(env.backups);
    for (const destination of destinations.filter((name) => !name.startsWith('.'))) {
      expect((await readdir(join(env.backups, destination))).filter((name) => name.includes(id))).toEqual([]);
    }
  });

  it("stream a job's events from the replica that did not take it, through to the end", async () => {
    // Long enough (a few hundred ms of copying) for the stream to open before the job ends.
    const source = await dataFile('streamed', 256);
    const id = await submit(urls.a, source);

    const events = await readEvents(urls.b, `/jobs/${id}/events`);

    expect(events[0]?.event).toBe('job');
    const statuses = events.filter(({ event }) => event === 'status').map(({ data }) => data.status);
    expect(statuses.at(-1)).toBe('completed');
  });

  it('share one rate limit per token between replicas', async () => {
    const { body } = await call<{ token: string }>(urls.a, '/tokens', {
      method: 'POST',
      body: { name: `limited-${randomBytes(3).toString('hex')}`, role: 'viewer' },
    });
    // Counted in clock minutes: start with time to spare in this one.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((resolve) => setTimeout(resolve, 60_000 - intoMinute + 100));

    const statuses: number[] = [];
    for (let i = 0; i < RATE_LIMIT + 10; i += 1) {
      const response = await fetch(`${i % 2 === 0 ? urls.c : urls.d}/jobs?limit=1`, {
        headers: { authorization: `Bearer ${body.token}` },
      });
      await response.arrayBuffer();
      statuses.push(response.status);
    }

    // Below a limit of 50 the shared count is exact: the limit across both, then 429s.
    expect(statuses.filter((status) => status === 200)).toHaveLength(RATE_LIMIT);
    expect(statuses.slice(RATE_LIMIT).every((status) => status === 429)).toBe(true);
  });
});
