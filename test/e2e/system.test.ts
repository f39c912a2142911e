import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../helpers/environment.js';
import { describeTree } from '../helpers/trees.js';
import { freePort } from '../helpers/ports.js';

// The real thing: the built API and two worker processes, as `pnpm start` runs them.
const ROOT = new URL('../..', import.meta.url).pathname;

let env: TestEnvironment;
let baseUrl: string;
/** The API's admin token (API_ADMIN_TOKEN); every request sends it. */
const adminToken = `cfr_${randomBytes(32).toString('base64url')}`;
const processes: { name: string; child: ChildProcess; output: string[] }[] = [];

function launch(name: string, script: string, extra: Record<string, string>): void {
  const child = spawn(process.execPath, [join(ROOT, script)], {
    env: { PATH: process.env.PATH ?? '', ...env.variables, LOG_LEVEL: 'info', ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  processes.push({ name, child, output });
}

async function api<T>(path: string, init?: RequestInit): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await fetch(baseUrl + path, {
    ...init,
    headers: { authorization: `Bearer ${adminToken}`, ...(init?.headers as Record<string, string> | undefined) },
  });
  return { status: response.status, body: (await response.json()) as T, headers: response.headers };
}

interface JobView {
  id: string;
  status: string;
  result?: { path: string; files: number; bytes: number };
  progress: { files: number; filesTotal: number };
}
interface LogRow {
  id: number;
  status: string;
  jobId: string;
  worker: string;
  attempt: number;
}

beforeAll(async () => {
  env = await createTestEnvironment();
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  launch('api', 'api/dist/server.js', { PORT: String(port), INSTANCE_NAME: 'api-1', API_ADMIN_TOKEN: adminToken });
  launch('worker-1', 'worker/dist/main.js', { INSTANCE_NAME: 'worker-1' });
  launch('worker-2', 'worker/dist/main.js', { INSTANCE_NAME: 'worker-2' });
  await waitFor(
    async () => {
      const ready = await fetch(`${baseUrl}/ready`).catch(() => null);
      return ready?.status === 200 ? true : undefined;
    },
    20_000,
    'the API to be ready',
  );
}, 30_000);

afterAll(async () => {
  for (const { child } of processes) if (child.exitCode === null) child.kill('SIGKILL');
  await env.cleanup();
});

describe('Coffer end to end: one API, two workers, real Redis and MySQL', () => {
  const sources: string[] = [];

  it('queues backups over HTTP, answering at once with a job id and its location', async () => {
    for (let i = 0; i < 12; i++) {
      const source = join(env.sources, `folder-${i}`);
      await mkdir(join(source, 'sub'), { recursive: true });
      await writeFile(join(source, 'readme.md'), `# folder ${i}\n`);
      await writeFile(join(source, 'sub', 'data.bin'), Buffer.alloc(1000 * (i + 1), i));
      sources.push(source);
    }
    for (const source of sources) {
      const response = await api<{ id: string; status: string }>('/backup', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ source }),
      });
      expect(response.status).toBe(202);
      expect(response.body.status).toBe('queued');
      expect(response.headers.get('location')).toBe(`/jobs/${response.body.id}`);
    }
  });

  it('completes every job with an exact snapshot', async () => {
    // GET /jobs lists a job once its `queued` row has moved from the log outbox to MySQL.
    const items = await waitFor(async () => {
      const { body } = await api<{ items: JobView[] }>('/jobs?limit=50');
      return body.items.length >= 12 ? body.items : undefined;
    });
    expect(items).toHaveLength(12);
    for (const { id } of items) {
      const job = await waitFor(async () => {
        const { body: view } = await api<JobView>(`/jobs/${id}`);
        return view.status === 'completed' || view.status === 'failed' ? view : undefined;
      });
      expect(job.status).toBe('completed');
      expect(job.progress.files).toBe(job.progress.filesTotal);
      const source = sources.find((candidate) => job.result?.path.includes(`/${candidate.split('/').pop() ?? ''}/`));
      expect(source).toBeDefined();
      expect(await describeTree(job.result?.path ?? '')).toEqual(await describeTree(source ?? ''));
    }
  });

  it('logs each job as queued, one active, one completed, in order, each run by one worker', async () => {
    const { body } = await api<{ items: LogRow[] }>('/logs?limit=1000');
    const byJob = new Map<string, LogRow[]>();
    for (const row of [...body.items].reverse()) byJob.set(row.jobId, [...(byJob.get(row.jobId) ?? []), row]);
    expect(byJob.size).toBe(12);
    for (const rows of byJob.values()) {
      expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'completed']);
      expect(rows[0]?.worker).toBe('api-1');
      expect(['worker-1', 'worker-2']).toContain(rows[1]?.worker);
      expect(rows[2]?.worker).toBe(rows[1]?.worker);
    }
  });

  it('shuts every process down cleanly on SIGTERM', async () => {
    for (const { child } of processes) child.kill('SIGTERM');
    const codes = await Promise.all(
      processes.map(async ({ child }): Promise<number | null> => {
        if (child.exitCode !== null) return child.exitCode;
        const [code] = (await once(child, 'exit')) as [number | null];
        return code;
      }),
    );
    expect(codes).toEqual([0, 0, 0]);
  });
});
