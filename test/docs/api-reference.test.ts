import { readFile } from 'node:fs/promises';
import * as prettier from 'prettier';
import { describe, expect, it } from 'vitest';
import {
  API_REFERENCE_FILE,
  REGENERATE_COMMAND,
  describeApi,
  renderApiReference,
  type OpenApiDocument,
} from '../../api/scripts/api-reference.js';

/** A small description with what the renderer must say about each kind of operation. */
const SAMPLE: OpenApiDocument = {
  openapi: '3.0.3',
  info: { title: 'Sample', version: '1.2.3' },
  tags: [{ name: 'things', description: 'Things' }],
  security: [{ bearer: [] }],
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: {
        type: 'object',
        properties: { code: { type: 'string' } },
        required: ['code'],
      },
    },
  },
  paths: {
    '/things': {
      post: {
        operationId: 'addThing',
        summary: 'Add a thing',
        tags: ['things'],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                additionalProperties: false,
                required: ['name'],
                properties: {
                  name: { type: 'string', minLength: 1, maxLength: 64, pattern: '^a|b$' },
                  size: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
                  tags: { type: 'array', maxItems: 3, items: { type: 'string' } },
                },
              },
            },
          },
        },
        responses: {
          201: {
            description: 'Added',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
          },
          400: {
            description: 'Default Response',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
          },
        },
      },
    },
    '/ping': {
      get: { summary: 'Ping', tags: ['things'], security: [], responses: { 200: { description: 'Default Response' } } },
    },
  },
};

describe('the API reference', () => {
  it('docs/api.md is the one the OpenAPI description of the current routes gives', async () => {
    const expected = await renderApiReference(await describeApi());
    const actual = await readFile(API_REFERENCE_FILE, 'utf8');
    expect(actual, `docs/api.md is out of date: run \`${REGENERATE_COMMAND}\` and commit the result`).toBe(expected);
  });

  it('says who may call each operation, with every field, constraint and status', async () => {
    const markdown = await renderApiReference(SAMPLE);
    const ping = markdown.slice(markdown.indexOf('### `GET /ping`'));
    expect(ping).toContain('**Who may call it:** no token');
    const add = markdown.slice(markdown.indexOf('### `POST /things`'), markdown.indexOf('### `GET /ping`'));
    expect(add).toContain('**Who may call it:** a token, sent as `Authorization: Bearer <token>`');
    expect(add).toContain('(operation `addThing`)');
    // A pipe inside a pattern must not split the table's cell.
    expect(add).toMatch(/\| `name` +\| string \(1–64 characters, matching `\^a\\\|b\$`\) +\| yes +\|/);
    expect(add).toMatch(/\| `size` +\| integer \(1–100, default `20`\) +\| no +\|/);
    expect(add).toMatch(/\| `tags` +\| array \(at most 3 items\) of string +\| no +\|/);
    expect(add).toContain('Fields not listed are refused.');
    expect(add).toMatch(/\| 201 +\| Created: Added +\| \[`Error`\]\(#error\) +\|/);
    expect(add).toMatch(/\| 400 +\| Bad Request +\|/);
  });

  it('is formatted as Prettier formats the repository', async () => {
    const markdown = await renderApiReference(SAMPLE);
    const options = (await prettier.resolveConfig(API_REFERENCE_FILE)) ?? {};
    expect(await prettier.check(markdown, { ...options, filepath: API_REFERENCE_FILE })).toBe(true);
  });
});
