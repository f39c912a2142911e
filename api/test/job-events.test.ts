import { mkdir, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker } from '@coffer/worker';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { buildApp } from '../src/app.js';
import { ensureAdminToken } from '../src/auth/token-admin.js';
import { generateToken } from '../src/auth/token-secret.js';
import eventRoutes from '../src/routes/events.js';
import { finishThroughLog, issueToken, logRows, queueBackup, startApi, type ApiHarness } from './helpers.js';

interface SseEvent {
  event?: string;
  id?: string;
  data?: unknown;
}

interface JobViewData {
  id: string;
  status: string;
  result?: { files: number };
}

/** A Server-Sent Events client over a real socket: its events, comments, and whether the server ended it. */
interface SseClient {
  status: number;
  events: SseEvent[];
  comments: number;
  ended: boolean;
  body: string;
  close(): void;
}

function parse(block: string, client: SseClient): void {
  const event: SseEvent = {};
  let data: string | undefined;
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) client.comments += 1;
    else if (line.startsWith('event: ')) event.event = line.slice(7);
    else if (line.startsWith('id: ')) event.id = line.slice(4);
    else if (line.startsWith('data: ')) data = (data === undefined ? '' : `${data}\n`) + line.slice(6);
  }
  if (data !== undefined) client.events.push({ ...event, data: JSON.parse(data) as unknown });
}

function connect(base: string, path: string, token: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers },
    });
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      const client: SseClient = {
        status: res.statusCode ?? 0,
        events: [],
        comments: 0,
        ended: false,
        body: '',
        close: () => req.destroy(),
      };
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        client.body += chunk;
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          parse(buffer.slice(0, end), client);
          buffer = buffer.slice(end + 2);
        }
      });
      res.on('end', () => (client.ended = true));
      res.on('error', () => (client.ended = true));
      resolve(client);
    });
    req.end();
  });
}

const statuses = (client: SseClient, jobId?: string) =>
  client.events
    .filter((e) => e.event === 'status' && (jobId === undefined || (e.data as JobViewData).id === jobId))
    .map((e) => (e.data as JobViewData).status);

let api: ApiHarness;
let base: string;

beforeAll(async () => {
  api = await startApi();
  await api.app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await api?.close();
});

async function source(name: string): Promise<string> {
  const dir = join(api.env.sources, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'a.txt'), 'alpha');
  return dir;
}

async function rowId(jobId: string, status: string): Promise<number> {
  const rows = await logRows(api.db, 'job_id = ? AND status = ?', [jobId, status]);
  const row = rows[0];
  if (!row) throw new Error(`no ${status} row for ${jobId}`);
  return row.id;
}

describe('GET /jobs/:id/events', () => {
  it('streams a queued job run by a real worker: its view, then active and completed, then ends', async () => {
    const id = await queueBackup(api.app, { source: await source('streamed') });
    const client = await connect(base, `/jobs/${id}/events`, api.adminToken);
    expect(client.status).toBe(200);
    await waitFor(async () => (client.events.length > 0 ? true : undefined), 5000, 'the first event');
    expect(client.events[0]).toMatchObject({ event: 'job', data: { id, status: 'queued' } });

    const worker = startWorker(api.env.config, pino({ level: 'silent' }));
    try {
      await waitFor(async () => (client.ended ? true : undefined), 20_000, 'the stream to end');
    } finally {
      await worker.close(5000);
    }
    expect(statuses(client)).toEqual(['active', 'completed']);
    const completed = client.events.at(-1);
    expect((completed?.data as JobViewData).result?.files).toBe(1);
    // Status ids are the log rows of the transitions.
    expect(client.events.filter((e) => e.event === 'status').map((e) => Number(e.id))).toEqual([
      await rowId(id, 'active'),
      await rowId(id, 'completed'),
    ]);
    expect(client.events.every((e) => ['job', 'progress', 'status'].includes(e.event ?? ''))).toBe(true);
  });

  it('tells a transition whose log row lands late (the outbox waiting for MySQL), after the first wait', async () => {
    const dir = await source('late-row');
    const id = await queueBackup(api.app, { source: dir });
    const client = await connect(base, `/jobs/${id}/events`, api.adminToken);
    await waitFor(async () => (client.events.length > 0 ? true : undefined), 5000, 'the first event');

    // The job leaves the queue now; its `cancelled` row lands only after the hub's first 5 s wait.
    const job = await api.app.backupQueue.getJob(id);
    await job?.remove();
    const landed = new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        api.app.logStore
          .append({
            action: 'backup',
            parameter: dir,
            jobId: id,
            attempt: 1,
            worker: 'test-worker',
            destination: 'late-row',
            status: 'cancelled',
            code: 'CANCELLED',
            message: 'its row was late',
          })
          .then(resolve, reject);
      }, 6500);
    });
    try {
      await waitFor(async () => (client.ended ? true : undefined), 20_000, 'the stream to end');
    } finally {
      await landed;
      client.close();
    }
    expect(statuses(client)).toEqual(['cancelled']);
    expect(Number(client.events.at(-1)?.id)).toBe(await rowId(id, 'cancelled'));
  }, 30_000);

  it('answers 404 for an unknown job and for a job of another operator, before any stream', async () => {
    const unknown = await api.app.inject({ url: '/jobs/no-such-job/events', headers: { accept: 'text/event-stream' } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ code: string }>().code).toBe('JOB_NOT_FOUND');

    const operator = await issueToken(api, 'events-op', 'operator');
    const id = await queueBackup(api.app, { source: await source('not-theirs') });
    const others = await api.request(operator, { url: `/jobs/${id}/events`, headers: { accept: 'text/event-stream' } });
    expect(others.statusCode).toBe(404);
    expect(others.json<{ code: string }>().code).toBe('JOB_NOT_FOUND');
    await finishThroughLog(api.app, id, { status: 'failed', code: 'TEST', message: 'done' });
  });

  it('ends at once for a job that has ended, and a resume gets every transition after Last-Event-ID', async () => {
    const id = await queueBackup(api.app, { source: await source('resumed') });
    await finishThroughLog(api.app, id, { status: 'completed', snapshot: 's', files: 1, bytes: 5, durationMs: 1 });
    const queuedId = await rowId(id, 'queued');
    const activeId = await rowId(id, 'active');
    const completedId = await rowId(id, 'completed');

    const fresh = await connect(base, `/jobs/${id}/events`, api.adminToken);
    await waitFor(async () => (fresh.ended ? true : undefined), 5000, 'the stream to end');
    expect(fresh.events).toMatchObject([{ event: 'job', id: String(completedId), data: { status: 'completed' } }]);

    const resumed = await connect(base, `/jobs/${id}/events`, api.adminToken, { 'last-event-id': String(queuedId) });
    await waitFor(async () => (resumed.ended ? true : undefined), 5000, 'the resumed stream to end');
    expect(resumed.events.map((e) => [e.event, e.id])).toEqual([
      ['job', String(queuedId)],
      ['status', String(activeId)],
      ['status', String(completedId)],
    ]);
    expect(statuses(resumed)).toEqual(['active', 'completed']);

    const later = await connect(base, `/jobs/${id}/events`, api.adminToken, { 'last-event-id': String(activeId) });
    await waitFor(async () => (later.ended ? true : undefined), 5000, 'the resumed stream to end');
    expect(statuses(later)).toEqual(['completed']);
  });

  it('passes on the progress a worker writes to the BullMQ job, through Redis', async () => {
    const id = await queueBackup(api.app, { source: await source('progressing') });
    const client = await connect(base, `/jobs/${id}/events`, api.adminToken);
    await waitFor(async () => (client.events.length > 0 ? true : undefined), 5000, 'the first event');
    const job = await api.app.backupQueue.getJob(id);
    const progress = {
      files: 1,
      filesTotal: 4,
      bytes: 10,
      bytesTotal: 40,
      bytesPerSecond: 5,
      etaSeconds: 6,
      current: 'a',
    };
    await job?.updateProgress(progress);
    await waitFor(async () => client.events.find((e) => e.event === 'progress'), 5000, 'a progress event');
    expect(client.events.find((e) => e.event === 'progress')).toEqual({ event: 'progress', data: progress });
    client.close();
    await finishThroughLog(api.app, id, { status: 'failed', code: 'TEST', message: 'done' });
  });

  it('stops streaming to a client that goes away and frees its listener', async () => {
    const before = api.app.jobEvents.listeners;
    const id = await queueBackup(api.app, { source: await source('abandoned') });
    const client = await connect(base, `/jobs/${id}/events`, api.adminToken);
    await waitFor(async () => (client.events.length > 0 ? true : undefined), 5000, 'the first event');
    expect(api.app.jobEvents.listeners).toBe(before + 1);
    client.close();
    await waitFor(async () => (api.app.jobEvents.listeners === before ? true : undefined), 5000, 'the listener to go');
    await finishThroughLog(api.app, id, { status: 'failed', code: 'TEST', message: 'done' });
  });
});

describe('GET /events', () => {
  it('sees the transitions of two jobs; an operator only those of its own', async () => {
    const operator = await issueToken(api, 'events-watcher', 'operator');
    const all = await connect(base, '/events', api.adminToken);
    const own = await connect(base, '/events', operator);
    expect([all.status, own.status]).toEqual([200, 200]);

    const first = await queueBackup(api.app, { source: await source('first') });
    const second = await queueBackup(api.app, { source: await source('second') });
    const operators = await api.request(operator, {
      method: 'POST',
      url: '/backup',
      payload: { source: await source('operators') },
    });
    expect(operators.statusCode, operators.body).toBe(202);
    const third = operators.json<{ id: string }>().id;
    await finishThroughLog(api.app, first, { status: 'completed', snapshot: 'a', files: 1, bytes: 5, durationMs: 1 });
    await finishThroughLog(api.app, second, { status: 'failed', code: 'TEST', message: 'broken' });
    await finishThroughLog(api.app, third, { status: 'completed', snapshot: 'c', files: 1, bytes: 5, durationMs: 1 });

    await waitFor(
      async () => (statuses(all, third).length === 2 && statuses(own, third).length === 2 ? true : undefined),
      10_000,
      'the transitions of every job',
    );
    expect(statuses(all, first)).toEqual(['active', 'completed']);
    expect(statuses(all, second)).toEqual(['active', 'failed']);
    expect(statuses(all, third)).toEqual(['active', 'completed']);
    expect(own.events.every((e) => (e.data as JobViewData).id === third)).toBe(true);
    expect(all.ended).toBe(false);

    // A client back with the id of the first job's active row gets every transition after it.
    const activeId = await rowId(first, 'active');
    const resumed = await connect(base, '/events', api.adminToken, { 'last-event-id': String(activeId) });
    await waitFor(async () => (statuses(resumed).length === 5 ? true : undefined), 5000, 'the replay');
    expect(statuses(resumed, first)).toEqual(['completed']);
    expect(statuses(resumed, second)).toEqual(['active', 'failed']);
    expect(statuses(resumed, third)).toEqual(['active', 'completed']);
    for (const client of [all, own, resumed]) client.close();
  });
});

describe('heartbeats', () => {
  let env: TestEnvironment;
  let app: FastifyInstance;
  let token: string;

  beforeAll(async () => {
    token = generateToken();
    env = await createTestEnvironment({ API_ADMIN_TOKEN: token });
    app = await buildApp({ config: env.config });
    // A test seam: the same routes again, with a short heartbeat.
    await app.register(eventRoutes, { prefix: '/fast', heartbeatMs: 50 });
    await app.ready();
    await ensureAdminToken(app.tokenStore, env.config, app.revocations);
    await app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await app?.close();
    await env?.cleanup();
  });

  it('keeps an idle stream alive with comments', async () => {
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const client = await connect(url, '/fast/events', token);
    await waitFor(async () => (client.comments >= 2 ? true : undefined), 5000, 'heartbeats');
    expect(client.ended).toBe(false);
    client.close();
  });
});
