import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ResultSetHeader } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../../test/helpers/environment.js';
import { MAX_WEBHOOKS } from '../src/routes/webhooks.js';
import { expectError, finishThroughLog, issueToken, queueBackup, startApi, type ApiHarness } from './helpers.js';

// Deliveries as in production but quick: 2 attempts 50 ms apart, 1 s each, the list read every 200 ms.
vi.mock('../src/plugins/webhooks.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../src/plugins/webhooks.js')>();
  return {
    ...original,
    default: original.webhooksPlugin({ attempts: 2, backoffMs: 50, timeoutMs: 1000, reloadMs: 200 }),
  };
});

interface WebhookBody {
  id: number;
  url: string;
  events: string[];
  createdBy: string;
  createdAt: string;
  secret?: string;
}

interface DeliveryBody {
  id: number;
  deliveryId: string;
  event: string;
  jobId: string;
  logRowId: number;
  attempt: number;
  httpStatus: number | null;
  error: string | null;
  outcome: string;
}

let api: ApiHarness;

beforeAll(async () => {
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
});

// IP literals: no DNS needed. No job of these tests reaches them.
const PUBLIC_URL = 'https://8.8.8.8/coffer-hook';

async function create(payload: Record<string, unknown>) {
  return api.app.inject({ method: 'POST', url: '/webhooks', payload });
}

describe('POST /webhooks', () => {
  it('creates a webhook and shows its generated secret once, not cached', async () => {
    const res = await create({ url: PUBLIC_URL, events: ['completed', 'failed'] });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json<WebhookBody>();
    expect(body).toMatchObject({ url: PUBLIC_URL, events: ['completed', 'failed'], createdBy: 'admin' });
    expect(res.headers.location).toBe(`/webhooks/${body.id}`);
    expect(body.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const one = await api.app.inject({ url: `/webhooks/${body.id}` });
    expect(one.statusCode).toBe(200);
    const { secret: _secret, ...rest } = body;
    expect(one.json()).toEqual(rest);
    const list = await api.app.inject({ url: '/webhooks' });
    expect(list.json<{ items: WebhookBody[] }>().items).toContainEqual(rest);
    for (const answer of [one.body, list.body]) expect(answer).not.toContain(body.secret);
  });

  it('keeps a given secret to sign with, and never shows it again', async () => {
    const secret = 'my-own-secret-0123456789';
    const res = await create({ url: PUBLIC_URL, events: ['queued'], secret });
    expect(res.statusCode, res.body).toBe(201);
    const { id } = res.json<WebhookBody>();
    expect(res.json<WebhookBody>().secret).toBe(secret);
    for (const url of ['/webhooks', `/webhooks/${id}`, `/webhooks/${id}/deliveries`]) {
      const answer = await api.app.inject({ url });
      expect(answer.statusCode).toBe(200);
      expect(answer.body).not.toContain(secret);
    }
  });

  it.each([
    ['ftp://example.com/hook'],
    ['javascript:alert(1)'],
    ['not a url'],
    ['https://user:password@8.8.8.8/hook'],
    ['http://127.0.0.1:8080/hook'],
    ['http://localhost/hook'],
    ['http://10.0.0.1/hook'],
    ['http://169.254.169.254/latest/meta-data'],
    ['http://[::1]/hook'],
    ['http://[::ffff:127.0.0.1]/hook'],
    ['http://100.64.1.1/hook'],
    ['https://no-such-host.invalid/hook'],
  ])('refuses %s with 400 INVALID_WEBHOOK_URL', async (url) => {
    const res = await create({ url, events: ['completed'] });
    const body = expectError(res, 400, 'INVALID_WEBHOOK_URL');
    if (/127|::1|10\.0|169\.254|100\.64|localhost/.test(url)) expect(body.message).toContain('WEBHOOK_ALLOW_PRIVATE');
  });

  it.each([
    [{ url: PUBLIC_URL, events: [] }],
    [{ url: PUBLIC_URL, events: ['exploded'] }],
    [{ url: PUBLIC_URL, events: ['rejected'] }],
    [{ url: PUBLIC_URL, events: ['completed', 'completed'] }],
    [{ url: PUBLIC_URL }],
    [{ events: ['completed'] }],
    [{ url: PUBLIC_URL, events: ['completed'], secret: 'short' }],
    [{ url: PUBLIC_URL, events: ['completed'], extra: 1 }],
  ])('refuses the body %j with 400 VALIDATION_FAILED', async (payload) => {
    expectError(await create(payload), 400, 'VALIDATION_FAILED');
  });

  it('is for admins only', async () => {
    const operator = await issueToken(api, 'webhook-operator', 'operator');
    const viewer = await issueToken(api, 'webhook-viewer', 'viewer');
    for (const token of [operator, viewer]) {
      const res = await api.request(token, {
        method: 'POST',
        url: '/webhooks',
        payload: { url: PUBLIC_URL, events: ['completed'] },
      });
      expectError(res, 403, 'FORBIDDEN');
      expectError(await api.request(token, { url: '/webhooks' }), 403, 'FORBIDDEN');
    }
  });
});

describe('GET and DELETE /webhooks/:id', () => {
  it('answers 404 WEBHOOK_NOT_FOUND for an unknown id, and deletes a webhook once', async () => {
    expectError(await api.app.inject({ url: '/webhooks/999999' }), 404, 'WEBHOOK_NOT_FOUND');
    expectError(await api.app.inject({ url: '/webhooks/999999/deliveries' }), 404, 'WEBHOOK_NOT_FOUND');
    expectError(await api.app.inject({ method: 'DELETE', url: '/webhooks/999999' }), 404, 'WEBHOOK_NOT_FOUND');
    expectError(await api.app.inject({ url: '/webhooks/abc' }), 400, 'VALIDATION_FAILED');

    const { id } = (await create({ url: PUBLIC_URL, events: ['failed'] })).json<WebhookBody>();
    const deleted = await api.app.inject({ method: 'DELETE', url: `/webhooks/${id}` });
    expect(deleted.statusCode, deleted.body).toBe(204);
    expect(deleted.body).toBe('');
    expectError(await api.app.inject({ url: `/webhooks/${id}` }), 404, 'WEBHOOK_NOT_FOUND');
    expectError(await api.app.inject({ method: 'DELETE', url: `/webhooks/${id}` }), 404, 'WEBHOOK_NOT_FOUND');
    const list = await api.app.inject({ url: '/webhooks' });
    expect(list.json<{ items: WebhookBody[] }>().items.map((w) => w.id)).not.toContain(id);
  });
});

describe('the address checked again at delivery', () => {
  let receiver: Server;
  let hits = 0;

  beforeAll(async () => {
    receiver = createServer((_req, res) => {
      hits += 1;
      res.writeHead(204).end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    await new Promise((resolve) => receiver.close(resolve));
  });

  it('refuses a webhook whose address became private since its creation, calling nothing', async () => {
    // As if its name had resolved to a public address at creation and to 127.0.0.1 now (DNS rebinding).
    const port = (receiver.address() as AddressInfo).port;
    // The webhooks made above (public addresses) are not to be called by this job.
    const others = (await api.app.inject({ url: '/webhooks' })).json<{ items: WebhookBody[] }>().items;
    for (const { id } of others) await api.app.inject({ method: 'DELETE', url: `/webhooks/${id}` });
    const [result] = await api.db.query<ResultSetHeader>(
      'INSERT INTO webhook (url, events, secret, created_by) VALUES (?, ?, ?, ?)',
      [`http://127.0.0.1:${port}/hook`, 'completed', 'x'.repeat(32), 'admin'],
    );
    const webhookId = result.insertId;
    await api.app.webhooks.reload();

    const source = join(api.env.sources, 'rebound');
    await mkdir(source, { recursive: true });
    const jobId = await queueBackup(api.app, { source });
    await finishThroughLog(api.app, jobId, { status: 'completed', snapshot: 's', files: 1, bytes: 1, durationMs: 1 });

    const attempts = await waitFor(
      async () => {
        const res = await api.app.inject({ url: `/webhooks/${webhookId}/deliveries` });
        const items = res.json<{ items: DeliveryBody[] }>().items;
        return items.some((item) => item.outcome === 'failed') ? items : undefined;
      },
      15_000,
      'the delivery to fail',
    );
    expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
      [2, 'failed'],
      [1, 'retrying'],
    ]);
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({ jobId, event: 'completed', httpStatus: null });
      expect(attempt.error).toMatch(/refused: .*127\.0\.0\.1 is a loopback address/);
    }
    expect(hits).toBe(0);
  });
});

describe('the limit', () => {
  it(`takes at most ${MAX_WEBHOOKS} webhooks: 409 WEBHOOK_LIMIT_REACHED beyond`, async () => {
    const existing = (await api.app.inject({ url: '/webhooks' })).json<{ items: WebhookBody[] }>().items.length;
    for (let i = existing; i < MAX_WEBHOOKS; i += 1) {
      const res = await create({ url: `${PUBLIC_URL}/${i}`, events: ['cancelled'] });
      expect(res.statusCode, res.body).toBe(201);
    }
    expectError(await create({ url: PUBLIC_URL, events: ['cancelled'] }), 409, 'WEBHOOK_LIMIT_REACHED');
    const items = (await api.app.inject({ url: '/webhooks' })).json<{ items: WebhookBody[] }>().items;
    expect(items).toHaveLength(MAX_WEBHOOKS);
    for (const { id } of items) {
      expect((await api.app.inject({ method: 'DELETE', url: `/webhooks/${id}` })).statusCode).toBe(204);
    }
    expect((await create({ url: PUBLIC_URL, events: ['cancelled'] })).statusCode).toBe(201);
  });
});
