import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../src/auth/token-secret.js';
import { expectError, issueToken, startApi, type ApiHarness } from './helpers.js';

// GET /whoami: what the web page asks first, to offer only what the role allows.

let api: ApiHarness;

beforeAll(async () => {
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
});

describe('GET /whoami', () => {
  it('answers the name, role and source roots of the token, for every role', async () => {
    const limited = join(api.env.sources, 'team');
    const viewer = await issueToken(api, 'viewer-1', 'viewer');
    const operator = await issueToken(api, 'operator-1', 'operator', [limited]);

    const answers = await Promise.all(
      [api.adminToken, operator, viewer].map(async (token) => {
        const res = await api.request(token, { method: 'GET', url: '/whoami' });
        expect(res.statusCode, res.body).toBe(200);
        return res.json<unknown>();
      }),
    );

    expect(answers).toEqual([
      { name: 'admin', role: 'admin', sourceRoots: null },
      { name: 'operator-1', role: 'operator', sourceRoots: [limited] },
      { name: 'viewer-1', role: 'viewer', sourceRoots: null },
    ]);
  });

  it('is 401 without a token, or with an unknown one', async () => {
    expectError(await api.request(null, { method: 'GET', url: '/whoami' }), 401, 'UNAUTHENTICATED');
    expectError(await api.request(generateToken(), { method: 'GET', url: '/whoami' }), 401, 'UNAUTHENTICATED');
  });
});
