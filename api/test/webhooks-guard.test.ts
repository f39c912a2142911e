import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveriesOf, viewAt } from '../src/webhooks/dispatch.js';
import { send, signature } from '../src/webhooks/send.js';
import {
  UrlRefused,
  addressProblem,
  parseWebhookUrl,
  pinnedLookup,
  vetUrl,
  type Resolver,
} from '../src/webhooks/url-guard.js';
import type { WebhookRecord } from '../src/webhooks/webhook-store.js';
import type { LogRow } from '@coffer/shared';

const resolving =
  (addresses: Record<string, string[]>): Resolver =>
  async (hostname) => {
    const found = addresses[hostname];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return found.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

describe('webhook URL guard', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.5.4', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['100.64.0.1', 'carrier-grade-nat'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['fe80::1', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456::1', 'unique-local'],
    ['192.0.2.1', 'reserved'],
  ])('refuses %s (%s) unless private receivers are allowed', (address, range) => {
    expect(addressProblem(address, false)).toContain(range);
    expect(addressProblem(address, false)).toContain('WEBHOOK_ALLOW_PRIVATE');
    expect(addressProblem(address, true)).toBeNull();
  });

  it.each(['0.0.0.0', '::', '224.0.0.1', '255.255.255.255', 'ff02::1'])('always refuses %s', (address) => {
    expect(addressProblem(address, false)).not.toBeNull();
    expect(addressProblem(address, true)).not.toBeNull();
  });

  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111'])('takes the public address %s', (address) => {
    expect(addressProblem(address, false)).toBeNull();
  });

  it.each([
    ['ftp://example.com/hook', /http or https/],
    ['javascript:alert(1)', /http or https/],
    ['file:///etc/passwd', /http or https/],
    ['not a url', /not a valid/],
    ['/relative/hook', /not a valid/],
    ['https://user:pass@example.com/hook', /user name or password/],
    ['https://token@example.com/hook', /user name or password/],
    [`https://example.com/${'a'.repeat(2048)}`, /longer than 2048/],
  ])('refuses the URL %s', (text, problem) => {
    expect(() => parseWebhookUrl(text)).toThrow(problem);
  });

  it('refuses a host if any of its addresses is refused, or if it does not resolve', async () => {
    const resolve = resolving({
      'public.test': ['8.8.8.8', '2606:4700:4700::1111'],
      'mixed.test': ['8.8.8.8', '10.0.0.7'],
    });
    await expect(vetUrl(new URL('https://public.test/x'), false, resolve)).resolves.toHaveLength(2);
    await expect(vetUrl(new URL('https://mixed.test/x'), false, resolve)).rejects.toThrow(/10\.0\.0\.7 is a private/);
    await expect(vetUrl(new URL('https://mixed.test/x'), true, resolve)).resolves.toHaveLength(2);
    await expect(vetUrl(new URL('https://nowhere.test/x'), true, resolve)).rejects.toThrow(/does not resolve/);
    // IP literals are checked as they are, without DNS.
    await expect(vetUrl(new URL('http://[::ffff:127.0.0.1]/x'), false, resolve)).rejects.toBeInstanceOf(UrlRefused);
    await expect(vetUrl(new URL('http://[::1]:8080/x'), false, resolve)).rejects.toThrow(/::1 is a loopback/);
  });

  it('pins the connection to the vetted addresses, whatever the name resolves to later', () => {
    const lookup = pinnedLookup([
      { address: '8.8.8.8', family: 4 },
      { address: '2606:4700:4700::1111', family: 6 },
    ]);
    const calls: unknown[][] = [];
    lookup('rebinding.test', { all: true }, (...args) => calls.push(args));
    lookup('rebinding.test', { family: 6 }, (...args) => calls.push(args));
    lookup('rebinding.test', {}, (...args) => calls.push(args));
    expect(calls).toEqual([
      [
        null,
        [
          { address: '8.8.8.8', family: 4 },
          { address: '2606:4700:4700::1111', family: 6 },
        ],
      ],
      [null, '2606:4700:4700::1111', 6],
      [null, '8.8.8.8', 4],
    ]);
  });
});

describe('sending a delivery', () => {
  let server: Server;
  let port: number;
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        if (req.url === '/redirect') res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
        else res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const delivery = (url: string) => ({
    url,
    secret: 'a-secret-of-enough-length',
    body: '{"hello":"world"}',
    event: 'completed',
    deliveryId: '1-2',
  });

  it('signs the body: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">', async () => {
    const result = await send(delivery(`http://127.0.0.1:${port}/hook`), {
      timeoutMs: 2000,
      allowPrivate: true,
      now: () => 1_700_000_000_123,
    });
    expect(result).toMatchObject({ ok: true, httpStatus: 204, error: null });
    const last = received.at(-1) as (typeof received)[number];
    const expected = createHmac('sha256', 'a-secret-of-enough-length')
      .update('1700000000.{"hello":"world"}')
      .digest('hex');
    expect(last.headers['coffer-signature']).toBe(`t=1700000000,v1=${expected}`);
    expect(signature('a-secret-of-enough-length', '{"hello":"world"}', 1_700_000_000)).toBe(
      `t=1700000000,v1=${expected}`,
    );
    expect(last.body).toBe('{"hello":"world"}');
  });

  it('refuses at delivery a name that now resolves to a private address (DNS rebinding), sending nothing', async () => {
    const before = received.length;
    const result = await send(delivery(`http://rebinding.test:${port}/hook`), {
      timeoutMs: 2000,
      allowPrivate: false,
      resolve: resolving({ 'rebinding.test': ['127.0.0.1'] }),
    });
    expect(result).toMatchObject({ ok: false, httpStatus: null });
    expect(result.error).toMatch(/refused: .*127\.0\.0\.1 is a loopback address/);
    expect(received.length).toBe(before);
  });

  it('connects to the address vetted, not to another resolution of the name', async () => {
    // The name resolves to the receiver only through the guard's resolver: the request uses that address.
    const result = await send(delivery(`http://receiver.test:${port}/hook`), {
      timeoutMs: 2000,
      allowPrivate: true,
      resolve: resolving({ 'receiver.test': ['127.0.0.1'] }),
    });
    expect(result).toMatchObject({ ok: true, httpStatus: 204 });
    expect(received.at(-1)?.headers.host).toBe(`receiver.test:${port}`);
  });

  it('does not follow a redirect', async () => {
    const result = await send(delivery(`http://127.0.0.1:${port}/redirect`), { timeoutMs: 2000, allowPrivate: true });
    expect(result).toMatchObject({ ok: false, httpStatus: 302 });
    expect(result.error).toMatch(/redirect .* not followed/);
  });
});

describe('deliveries of a job event', () => {
  const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms);
  const row = (id: number, status: string, ms: number): LogRow =>
    ({
      id,
      date: at(ms),
      action: 'backup',
      parameter: '/src',
      status,
      jobId: 'job-1',
      attempt: status === 'queued' ? null : 1,
      worker: null,
      message: null,
      code: null,
      destination: 'd',
      snapshot: status === 'completed' ? '/b/d/s' : null,
      snapshotId: null,
      files: status === 'completed' ? 2 : null,
      bytes: status === 'completed' ? 5 : null,
      durationMs: status === 'completed' ? 7 : null,
      actor: 'admin',
      schedule: null,
    }) as LogRow;
  const webhook = (id: number, events: WebhookRecord['events'], createdMs: number): WebhookRecord => ({
    id,
    url: 'http://x.test/',
    events,
    secret: 's'.repeat(16),
    createdBy: 'admin',
    createdAt: at(createdMs),
  });
  const history = [row(10, 'queued', 0), row(11, 'active', 100), row(12, 'completed', 200)];

  it('gives one delivery per wanted row written since the webhook was made, with the view at that row', () => {
    const now = at(1000).getTime();
    const deliveries = deliveriesOf(
      { jobId: 'job-1', history, view: null },
      [webhook(1, ['active', 'completed'], 50), webhook(2, ['queued'], 150)],
      now,
    );
    expect(deliveries.map((d) => [d.webhookId, d.logRowId, d.event])).toEqual([
      [1, 11, 'active'],
      [1, 12, 'completed'],
    ]);
    const active = JSON.parse(deliveries[0]?.body ?? '{}') as {
      id: string;
      job: { status: string; finishedAt: unknown };
    };
    expect(active).toMatchObject({ id: '1-11', event: 'active', webhookId: 1, logRowId: 11 });
    expect(active.job).toMatchObject({ status: 'active', finishedAt: null });
    const completed = JSON.parse(deliveries[1]?.body ?? '{}') as { job: { status: string; result: unknown } };
    expect(completed.job).toMatchObject({ status: 'completed', result: { files: 2, bytes: 5 } });
  });

  it("uses the event's own view for the newest transition only", () => {
    const view = viewAt(history, 2, null);
    if (!view) throw new Error('no view');
    const live = { ...view, attempts: 9 };
    expect(viewAt(history, 2, live)).toBe(live);
    expect(viewAt(history, 1, live)?.status).toBe('active');
  });

  it('leaves rows older than a few hours', () => {
    const deliveries = deliveriesOf(
      { jobId: 'job-1', history, view: null },
      [webhook(1, ['completed'], 0)],
      at(7 * 3600_000).getTime(),
    );
    expect(deliveries).toEqual([]);
  });
});
