import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import {
  authorise,
  configWith,
  createOutage,
  expectError,
  issueToken,
  lastLogId,
  logRows,
  startApi,
  type ApiHarness,
} from './helpers.js';

let api: ApiHarness;

beforeAll(async () => {
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
});

/** Builds another app on the same database and queue prefix, with some variables changed. */
async function withApp<T>(overrides: Record<string, string>, use: (app: FastifyInstance) => Promise<T>): Promise<T> {
  const app = await buildApp({ config: configWith(api.env, overrides) });
  try {
    await app.ready();
    return await use(app);
  } finally {
    await app.close();
  }
}

describe('security headers', () => {
  it.each([
    ['a success', null, '/jobs', 200],
    ['a refusal without a token', 'none', '/jobs', 401],
    ['an unknown route', null, '/nowhere', 404],
    ['an open route', 'none', '/health', 200],
  ] as const)('are on %s', async (_case, token, url, status) => {
    const res = await api.request(token === 'none' ? null : api.adminToken, { method: 'GET', url });

    expect(res.statusCode).toBe(status);
    expect(res.headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-resource-policy': 'same-origin',
    });
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers['content-security-policy']).toContain("default-src 'self'");
    // Over plain HTTP: no HSTS, and no upgrade of the docs UI's own requests to https.
    expect(res.headers['strict-transport-security']).toBeUndefined();
    expect(res.headers['content-security-policy']).not.toContain('upgrade-insecure-requests');
  });
});

describe('the docs UI under the content security policy', () => {
  it('loads: same-origin scripts and styles only, each served, no inline script', async () => {
    const page = await api.request(null, { method: 'GET', url: '/docs/' });

    expect(page.statusCode).toBe(200);
    const csp = page.headers['content-security-policy'] as string;
    expect(csp).toContain("script-src 'self'");
    expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] ?? '');
    expect(assets.length).toBeGreaterThanOrEqual(4);
    for (const asset of assets) {
      expect(asset).not.toMatch(/^(https?:)?\/\//);
      const res = await api.request(null, { method: 'GET', url: new URL(asset, 'http://x/docs/').pathname });
      expect(res.statusCode, asset).toBe(200);
    }
    const initializer = await api.request(null, { method: 'GET', url: '/docs/static/swagger-initializer.js' });
    expect(initializer.body).toContain("resolveUrl('./json')");
    expect((await api.request(null, { method: 'GET', url: '/docs/json' })).statusCode).toBe(200);
  });

  it('describes the bearer scheme, so "Authorize" in the UI sends the token', async () => {
    const doc = (await api.request(null, { method: 'GET', url: '/docs/json' })).json<{
      components: { securitySchemes: Record<string, unknown> };
      security: unknown[];
      paths: Record<string, unknown>;
    }>();

    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/tokens', '/tokens/{id}']));
  });
});

describe('METRICS_PUBLIC and DOCS_PUBLIC', () => {
  it('open /metrics and close /docs when asked to', async () => {
    await withApp({ METRICS_PUBLIC: 'true', DOCS_PUBLIC: 'false' }, async (app) => {
      expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
      expectError(await app.inject({ method: 'GET', url: '/docs/json' }), 401, 'UNAUTHENTICATED');
      expectError(await app.inject({ method: 'GET', url: '/docs/' }), 401, 'UNAUTHENTICATED');
      const viewer = await issueToken(api, 'docs-reader', 'viewer');
      const res = await app.inject({
        method: 'GET',
        url: '/docs/json',
        headers: { authorization: `Bearer ${viewer}` },
      });
      expect(res.statusCode).toBe(200);
    });
  });
});

describe('CORS', () => {
  const preflight = (origin: string) => ({
    method: 'OPTIONS' as const,
    url: '/backup',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
  });

  it('is off unless CORS_ORIGINS is set: no Access-Control-Allow-Origin anywhere', async () => {
    const answer = await api.app.inject({ method: 'GET', url: '/jobs', headers: { origin: 'https://ui.example' } });
    const options = await api.request(null, preflight('https://ui.example'));

    expect(answer.statusCode).toBe(200);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(options.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('allows exactly the configured origins, for the bearer header, without credentials', async () => {
    await withApp({ CORS_ORIGINS: 'https://ui.example, https://ops.example:8443' }, async (app) => {
      const allowed = await app.inject(preflight('https://ui.example'));
      const refused = await app.inject(preflight('https://evil.example'));
      const actual = await app.inject({
        method: 'GET',
        url: '/jobs',
        headers: { origin: 'https://ops.example:8443', authorization: `Bearer ${api.adminToken}` },
      });

      expect(allowed.statusCode).toBe(204);
      expect(allowed.headers['access-control-allow-origin']).toBe('https://ui.example');
      expect(allowed.headers['access-control-allow-headers']).toContain('authorization');
      expect(allowed.headers['access-control-allow-credentials']).toBeUndefined();
      expect(refused.headers['access-control-allow-origin']).toBeUndefined();
      expect(actual.statusCode).toBe(200);
      expect(actual.headers['access-control-allow-origin']).toBe('https://ops.example:8443');
      expect(actual.headers['access-control-expose-headers']).toContain('location');
    });
  });

  it.each([['*'], ['ui.example'], ['https://ui.example/path'], ['ftp://ui.example']])(
    'refuses CORS_ORIGINS=%s at start',
    (origins) => {
      expect(() => loadConfig({ CORS_ORIGINS: origins })).toThrow(ConfigError);
      expect(() => loadConfig({ CORS_ORIGINS: origins })).toThrow(/CORS_ORIGINS/);
    },
  );
});

describe('rate limiting', () => {
  it('limits each token on its own, across API replicas (the count is in Redis), and answers 429 RATE_LIMITED', async () => {
    await withApp({ RATE_LIMIT_PER_MINUTE: '3' }, async (one) => {
      await withApp({ RATE_LIMIT_PER_MINUTE: '3' }, async (two) => {
        const limited = await issueToken(api, 'limited', 'viewer');
        const other = await issueToken(api, 'unlimited-neighbour', 'viewer');
        const get = (app: FastifyInstance, token: string, url = '/jobs') =>
          app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

        const statuses = [
          (await get(one, limited)).statusCode,
          (await get(two, limited)).statusCode,
          (await get(one, limited)).statusCode,
        ];
        const over = await get(two, limited);

        expect(statuses).toEqual([200, 200, 200]);
        expectError(over, 429, 'RATE_LIMITED');
        expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
        expect((await get(one, other)).statusCode).toBe(200);
        expect((await one.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
        for (let i = 0; i < 5; i += 1)
          expect((await one.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
      });
    });
  });

  it('writes no rejected row for a rate-limited submission', async () => {
    await withApp({ RATE_LIMIT_PER_MINUTE: '1' }, async (app) => {
      const token = await issueToken(api, 'one-a-minute', 'operator');
      const post = () =>
        app.inject({
          method: 'POST',
          url: '/backup',
          payload: { source: '/etc' },
          headers: { authorization: `Bearer ${token}` },
        });
      expect((await post()).statusCode).toBe(400);
      const before = await lastLogId(api.db);

      expectError(await post(), 429, 'RATE_LIMITED');

      expect(await logRows(api.db, 'id > ?', [before])).toEqual([]);
    });
  });

  it('fails open while Redis is down: reads the log can answer still work', async () => {
    const outage = await createOutage(api.env.redisUrl);
    await outage.restore();
    const app = authorise(
      await buildApp({ config: configWith(api.env, { REDIS_URL: outage.url, RATE_LIMIT_PER_MINUTE: '1' }) }),
      api.adminToken,
    );
    try {
      await app.ready();
      await outage.cut();

      const first = await app.inject({ method: 'GET', url: '/logs' });
      const second = await app.inject({ method: 'GET', url: '/logs' });

      expect([first.statusCode, second.statusCode]).toEqual([200, 200]);
    } finally {
      await outage.restore();
      await app.close();
      await outage.cut();
    }
  });
});

describe('TLS', () => {
  let dir: string;
  let cert: Buffer;
  let key: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coffer-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    cert = await readFile(join(dir, 'cert.pem'));
    key = await readFile(join(dir, 'key.pem'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('serves HTTPS with HSTS when given a certificate and key', async () => {
    const app = await buildApp({ config: api.env.config, https: { cert, key } });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      if (address === null || typeof address === 'string') throw new Error('no address');

      const res = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
        (resolve, reject) => {
          const req = httpsRequest(
            {
              host: '127.0.0.1',
              port: address.port,
              path: '/jobs',
              ca: cert,
              headers: { authorization: `Bearer ${api.adminToken}` },
            },
            (response) => {
              let body = '';
              response.on('data', (chunk: Buffer) => (body += chunk.toString()));
              response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
            },
          );
          req.on('error', reject);
          req.end();
        },
      );

      expect(res.status, res.body).toBe(200);
      expect(res.headers['strict-transport-security']).toMatch(/max-age=31536000/);
      expect(res.headers['content-security-policy']).toContain('upgrade-insecure-requests');
    } finally {
      await app.close();
    }
  });

  it('needs both TLS_CERT_FILE and TLS_KEY_FILE', () => {
    expect(() => loadConfig({ TLS_CERT_FILE: '/etc/coffer/cert.pem' })).toThrow(/TLS_CERT_FILE and TLS_KEY_FILE/);
    expect(loadConfig({ TLS_CERT_FILE: '/c.pem', TLS_KEY_FILE: '/k.pem' })).toMatchObject({
      tlsCertFile: '/c.pem',
      tlsKeyFile: '/k.pem',
    });
  });
});
