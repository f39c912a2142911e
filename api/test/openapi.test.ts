import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatFinding, lintOpenapi } from '../scripts/spectral.js';
import { startApi, type ApiHarness } from './helpers.js';

// The OpenAPI description is what clients, the docs UI and generated documentation trust: every
// route the API serves is in it, and what it says about tokens is what authentication does.

interface Operation {
  operationId?: string;
  security?: Record<string, string[]>[];
}

interface OpenapiDocument {
  security?: Record<string, string[]>[];
  paths: Record<string, Record<string, Operation>>;
}

interface Route {
  method: string;
  /** As Fastify writes it: `/jobs/:id`. */
  url: string;
}

/**
 * The routes an app serves, read from `printRoutes` (once registered, Fastify lists them nowhere
 * else). Its tree has one line per path segment, indented four columns a level:
 * `│   └── /:id (GET, HEAD, DELETE)`.
 */
function servedRoutes(app: FastifyInstance): Route[] {
  const routes: Route[] = [];
  const prefixes: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    if (line.trim() === '') continue;
    const match = /^(?<indent>(?:│ {3}| {4})*)[├└]── (?<segment>.+) \((?<methods>[^)]+)\)$/.exec(line);
    if (!match?.groups) throw new Error(`cannot read this line of printRoutes: ${line}`);
    const { indent = '', segment = '', methods = '' } = match.groups;
    const depth = indent.length / 4;
    prefixes.length = depth;
    const url = (prefixes[depth - 1] ?? '') + segment;
    prefixes.push(url);
    for (const method of methods.split(', ')) if (method !== '-') routes.push({ method, url });
  }
  return routes;
}

/**
 * The routes the description must have: all but HEAD, which Fastify adds to every GET route and
 * answers as the GET, the docs UI's own, under /docs, which serve the description itself, and the
 * web page's static files, under /ui.
 */
function apiRoutes(app: FastifyInstance): Route[] {
  return servedRoutes(app).filter(
    ({ method, url }) =>
      method !== 'HEAD' && url !== '/docs' && !url.startsWith('/docs/') && !/^\/ui(?:$|[/*])/.test(url),
  );
}

const openapiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');
const key = ({ method, url }: Route) => `${method} ${openapiPath(url)}`;

async function openapiDocument(api: ApiHarness): Promise<OpenapiDocument> {
  const res = await api.app.inject({ method: 'GET', url: '/docs/json' });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<OpenapiDocument>();
}

/** Whether the description lets a client call the operation without a token. */
function documentedPublic(doc: OpenapiDocument, route: Route): boolean {
  const operation = doc.paths[openapiPath(route.url)]?.[route.method.toLowerCase()];
  const security = operation?.security ?? doc.security ?? [];
  return security.length === 0 || security.some((requirement) => Object.keys(requirement).length === 0);
}

describe.each([
  ['by default', {}],
  ['with METRICS_PUBLIC and without DOCS_PUBLIC', { METRICS_PUBLIC: 'true', DOCS_PUBLIC: 'false' }],
])('the OpenAPI description, %s', (_case, variables: Record<string, string>) => {
  let api: ApiHarness;
  let doc: OpenapiDocument;

  beforeAll(async () => {
    api = await startApi(variables);
    doc = await openapiDocument(api);
  });

  afterAll(async () => {
    await api?.close();
  });

  it('has every route the API serves, by method, and no other', () => {
    const documented = Object.entries(doc.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
    );

    expect(documented.sort()).toEqual(apiRoutes(api.app).map(key).sort());
    expect(documented.length).toBeGreaterThanOrEqual(11);
  });

  it('names each operation once', () => {
    const ids = Object.values(doc.paths).flatMap((operations) =>
      Object.values(operations).map((operation) => operation.operationId),
    );

    for (const id of ids) expect(id).toMatch(/^[a-z][A-Za-z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('says a token is needed exactly where a request without one is refused with 401', async () => {
    const answers: Record<string, string> = {};
    const expected: Record<string, string> = {};
    for (const route of apiRoutes(api.app)) {
      // Authentication comes before validation, so any id will do.
      const url = route.url.replace(/:\w+/g, '1');
      const res = await api.request(null, { method: route.method, url });
      answers[key(route)] = res.statusCode === 401 ? 'needs a token' : 'public';
      expected[key(route)] = documentedPublic(doc, route) ? 'public' : 'needs a token';
    }

    expect(answers).toEqual(expected);
    expect(Object.values(answers)).toContain('public');
    expect(Object.values(answers)).toContain('needs a token');
  });

  it("has no finding under Spectral's OpenAPI rules (spectral:oas)", async () => {
    expect((await lintOpenapi(doc)).map(formatFinding)).toEqual([]);
  });
});
