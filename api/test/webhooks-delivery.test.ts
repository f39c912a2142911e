import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startWorker } from '@coffer/worker';
import { waitFor } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';
import { WEBHOOK_QUEUE } from '../src/webhooks/dispatch.js';
import { finishThroughLog, logRows, queueBackup, startApi, type ApiHarness, type JobViewBody } from './helpers.js';

// Deliveries as in production but quick: 3 attempts 50 and 100 ms apart, 500 ms each, the list read every 200 ms.
vi.mock('../src/plugins/webhooks.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../src/plugins/webhooks.js')>();
  return {
    ...original,
    default: original.webhooksPlugin({ attempts: 3, backoffMs: 50, timeoutMs: 500, reloadMs: 200 }),
  };
});
const TIMEOUT_MS = 500;

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Envelope {
  id: string;
  event: string;
  webhookId: number;
  logRowId: number;
  occurredAt: string;
  job: JobViewBody;
}

interface DeliveryBody {
  id: number;
  deliveryId: string;
  event: string;
  jobId: string;
  logRowId: number;
  attempt: number;
  startedAt: string;
  durationMs: number;
  httpStatus: number | null;
  error: string | null;
  outcome: string;
}

let api: ApiHarness;
let receiver: Server;
let base: string;
const received: Received[] = [];
/** Answers held by /slow until the test ends. */
const held: ServerResponse[] = [];

beforeAll(async () => {
  api = await startApi({ WEBHOOK_ALLOW_PRIVATE: 'true' });
  receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body });
      if (req.url?.startsWith('/ok')) res.writeHead(204).end();
      else if (req.url?.startsWith('/500')) res.writeHead(500).end('broken');
      else held.push(res);
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of held) res.destroy();
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
  await api?.close();
});

const webhookIds: number[] = [];
afterEach(async () => {
  // Each test's webhooks go, so the next test's jobs reach only its own.
  for (const id of webhookIds.splice(0)) await api.app.inject({ method: 'DELETE', url: `/webhooks/${id}` });
});

async function subscribe(url: string, events: string[]): Promise<{ id: number; secret: string }> {
  const res = await api.app.inject({ method: 'POST', url: '/webhooks', payload: { url, events } });
  expect(res.statusCode, res.body).toBe(201);
  const webhook = res.json<{ id: number; secret: string }>();
  webhookIds.push(webhook.id);
  return webhook;
}

async function source(name: string): Promise<string> {
  const dir = join(api.env.sources, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'a.txt'), 'alpha');
  return dir;
}

async function deliveries(webhookId: number): Promise<DeliveryBody[]> {
  const res = await api.app.inject({ url: `/webhooks/${webhookId}/deliveries` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: DeliveryBody[] }>().items;
}

/** The attempts at the webhook's deliveries once `count` of them ended (delivered or failed), newest first. */
function ended(webhookId: number, count: number, timeoutMs = 15_000): Promise<DeliveryBody[]> {
  return waitFor(
    async () => {
      const items = await deliveries(webhookId);
      return items.filter((item) => item.outcome !== 'retrying').length >= count ? items : undefined;
    },
    timeoutMs,
    `${count} deliveries of webhook ${webhookId} to end`,
  );
}

async function rowId(jobId: string, status: string): Promise<number> {
  const [row] = await logRows(api.db, 'job_id = ? AND status = ?', [jobId, status]);
  if (!row) throw new Error(`no ${status} row for ${jobId}`);
  return row.id;
}

/** Checks a Coffer-Signature as a receiver would: HMAC-SHA256 of "t.body" with the secret. */
function verify(header: string | string[] | undefined, body: string, secret: string): number {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(header));
  if (!match) throw new Error(`malformed signature ${String(header)}`);
  const expected = createHmac('sha256', secret).update(`${match[1]}.${body}`).digest();
  if (!timingSafeEqual(expected, Buffer.from(match[2] ?? '', 'hex'))) throw new Error('bad signature');
  return Number(match[1]);
}

describe('webhook deliveries', () => {
  it('POSTs a completed job, run by a real worker, as its view, signed', async () => {
    const { id, secret } = await subscribe(`${base}/ok/done`, ['completed']);
    const jobId = await queueBackup(api.app, { source: await source('delivered') });
    const worker = startWorker(api.env.config, pino({ level: 'silent' }));
    let attempts: DeliveryBody[];
    try {
      attempts = await ended(id, 1, 20_000);
    } finally {
      await worker.close(5000);
    }
    const completedRow = await rowId(jobId, 'completed');
    expect(attempts).toEqual([
      expect.objectContaining({
        deliveryId: `${id}-${completedRow}`,
        event: 'completed',
        jobId,
        logRowId: completedRow,
        attempt: 1,
        httpStatus: 204,
        error: null,
        outcome: 'delivered',
      }),
    ]);

    const hits = received.filter((r) => r.path === '/ok/done');
    expect(hits).toHaveLength(1);
    const hit = hits[0] as Received;
    expect(hit.headers).toMatchObject({
      'content-type': 'application/json',
      'user-agent': 'coffer-webhooks',
      'coffer-event': 'completed',
      'coffer-delivery': `${id}-${completedRow}`,
    });
    const t = verify(hit.headers['coffer-signature'], hit.body, secret);
    expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(60);
    expect(() => verify(hit.headers['coffer-signature'], hit.body, 'another-secret-entirely')).toThrow();

    const envelope = JSON.parse(hit.body) as Envelope;
    const view = (await api.app.inject({ url: `/jobs/${jobId}` })).json<JobViewBody>();
    expect(envelope).toEqual({
      id: `${id}-${completedRow}`,
      event: 'completed',
      webhookId: id,
      logRowId: completedRow,
      occurredAt: expect.stringMatching(/Z$/) as string,
      job: view,
    });
    expect(envelope.job).toMatchObject({ id: jobId, status: 'completed', result: { files: 1 } });
  });

  it('retries a receiver answering 500, then records the delivery failed; each attempt is a row', async () => {
    const { id } = await subscribe(`${base}/500/broken`, ['active', 'completed']);
    const jobId = await queueBackup(api.app, { source: await source('refused') });
    await finishThroughLog(api.app, jobId, { status: 'completed', snapshot: 's', files: 1, bytes: 5, durationMs: 1 });
    const attempts = await ended(id, 2);
    const activeRow = await rowId(jobId, 'active');
    const completedRow = await rowId(jobId, 'completed');
    for (const [row, event] of [
      [activeRow, 'active'],
      [completedRow, 'completed'],
    ] as const) {
      const mine = attempts.filter((a) => a.logRowId === row).sort((a, b) => a.attempt - b.attempt);
      expect(mine.map((a) => [a.attempt, a.outcome, a.httpStatus, a.event])).toEqual([
        [1, 'retrying', 500, event],
        [2, 'retrying', 500, event],
        [3, 'failed', 500, event],
      ]);
      expect(mine.every((a) => a.error === 'the receiver answered 500' && a.deliveryId === `${id}-${row}`)).toBe(true);
      const sent = received.filter((r) => r.headers['coffer-delivery'] === `${id}-${row}`);
      expect(sent).toHaveLength(3);
      expect(new Set(sent.map((r) => r.body)).size).toBe(1);
      expect((JSON.parse(sent[0]?.body ?? '{}') as Envelope).job.status).toBe(event);
    }
    // Newest first, by attempt id.
    expect(attempts.map((a) => a.id)).toEqual([...attempts.map((a) => a.id)].sort((a, b) => b - a));
  });

  it('records a receiver that is down as a failed delivery, with the error', async () => {
    const port = await freePort();
    const { id } = await subscribe(`http://127.0.0.1:${port}/down`, ['completed']);
    const jobId = await queueBackup(api.app, { source: await source('down') });
    await finishThroughLog(api.app, jobId, { status: 'failed', code: 'TEST', message: 'no' });
    // A failed job has no `completed` row: nothing is sent for it.
    const other = await queueBackup(api.app, { source: await source('down-2') });
    await finishThroughLog(api.app, other, { status: 'completed', snapshot: 's', files: 1, bytes: 5, durationMs: 1 });
    const attempts = await ended(id, 1);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.httpStatus, a.jobId])).toEqual([
      [3, 'failed', null, other],
      [2, 'retrying', null, other],
      [1, 'retrying', null, other],
    ]);
    for (const attempt of attempts) expect(attempt.error).toMatch(/ECONNREFUSED/);
  });

  it('times out a slow receiver and records it, while the job completes unhindered', async () => {
    const { id } = await subscribe(`${base}/slow/hook`, ['active', 'completed']);
    const jobId = await queueBackup(api.app, { source: await source('slow') });
    const worker = startWorker(api.env.config, pino({ level: 'silent' }));
    try {
      const view = await waitFor(
        async () => {
          const res = await api.app.inject({ url: `/jobs/${jobId}` });
          const body = res.json<JobViewBody>();
          return body.status === 'completed' ? body : undefined;
        },
        20_000,
        'the job to complete',
      );
      expect(view.result?.files).toBe(1);
      const attempts = await ended(id, 2);
      expect(attempts).toHaveLength(6);
      for (const attempt of attempts) {
        expect(attempt.httpStatus).toBeNull();
        expect(attempt.error).toBe(`no answer within ${TIMEOUT_MS} ms`);
        expect(attempt.durationMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      }
      expect(
        attempts
          .filter((a) => a.outcome === 'failed')
          .map((a) => a.event)
          .sort(),
      ).toEqual(['active', 'completed']);
    } finally {
      await worker.close(5000);
    }
  });

  it('drops the pending deliveries of a deleted webhook', async () => {
    const { id } = await subscribe(`${base}/slow/deleted`, ['completed']);
    const jobId = await queueBackup(api.app, { source: await source('deleted') });
    await finishThroughLog(api.app, jobId, { status: 'completed', snapshot: 's', files: 1, bytes: 5, durationMs: 1 });
    // The first attempt is under way (and will time out): delete the webhook meanwhile.
    await waitFor(async () => (received.some((r) => r.path === '/slow/deleted') ? true : undefined), 10_000, 'a call');
    expect((await api.app.inject({ method: 'DELETE', url: `/webhooks/${id}` })).statusCode).toBe(204);
    webhookIds.splice(webhookIds.indexOf(id), 1);

    const queue = new Queue(WEBHOOK_QUEUE, { connection: api.app.redis, prefix: api.env.config.queuePrefix });
    try {
      const delivery = `${id}-${await rowId(jobId, 'completed')}`;
      // The attempt under way fails; the next one finds no webhook and ends the delivery without a call.
      await waitFor(
        async () => ((await queue.getJobState(delivery)) === 'completed' ? true : undefined),
        10_000,
        'the delivery to be dropped',
      );
    } finally {
      await queue.close();
    }
    expect(received.filter((r) => r.path === '/slow/deleted')).toHaveLength(1);
    const [count] = await api.db.query('SELECT COUNT(*) AS n FROM webhook_delivery WHERE webhook_id = ?', [id]);
    expect((count as { n: number }[])[0]?.n).toBe(0);
  });
});
