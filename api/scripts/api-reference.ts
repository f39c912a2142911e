/**
 * The API reference, docs/api.md, rendered from the OpenAPI description the API serves at
 * /docs/json. `pnpm docs:api` writes the file; test/docs/api-reference.test.ts renders it again
 * and fails when the file differs, so the reference cannot drift from the route schemas.
 */
import { STATUS_CODES } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as prettier from 'prettier';
import { loadConfig } from '@coffer/shared';
import { buildApp } from '../src/app.js';

/** Where the reference lives. */
export const API_REFERENCE_FILE = fileURLToPath(new URL('../../docs/api.md', import.meta.url));
/** The command that rewrites it. */
export const REGENERATE_COMMAND = 'pnpm docs:api';

// The parts of an OpenAPI 3.0 document the reference reads. Schemas stay loosely typed: they
// are JSON Schema as the routes wrote it, read field by field through the helpers below.
type Schema = Readonly<Record<string, unknown>>;

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  description?: string;
  schema?: Schema;
}

interface MediaType {
  schema?: Schema;
}

interface Response {
  description?: string;
  headers?: Record<string, { description?: string; schema?: Schema }>;
  content?: Record<string, MediaType>;
}

type SecurityRequirement = Record<string, string[]>;

interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  deprecated?: boolean;
  security?: SecurityRequirement[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; description?: string; content?: Record<string, MediaType> };
  responses?: Record<string, Response>;
}

interface SecurityScheme {
  type: string;
  scheme?: string;
  name?: string;
  in?: string;
  description?: string;
}

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description?: string };
  servers?: { url: string; description?: string }[];
  tags?: { name: string; description?: string }[];
  security?: SecurityRequirement[];
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema>; securitySchemes?: Record<string, SecurityScheme> };
}

/**
 * A port that accepts connections and drops them at once: Redis and MySQL "down", so building
 * the app needs neither, and nothing it does at start-up can reach a real server.
 */
async function refusingPort(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => socket.destroy());
  server.on('connection', (socket) => sockets.add(socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP port to stand in for Redis and MySQL');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The OpenAPI description an API with the default settings serves, built by `buildApp` without
 * Redis or MySQL (the queue plugin waits up to 5 s for Redis before giving up, so this takes
 * about that long).
 */
export async function describeApi(): Promise<OpenApiDocument> {
  const stand = await refusingPort();
  try {
    const config = loadConfig({
      REDIS_URL: `redis://127.0.0.1:${stand.port}`,
      MYSQL_HOST: '127.0.0.1',
      MYSQL_PORT: String(stand.port),
      LOG_LEVEL: 'silent',
    });
    const app = await buildApp({ config });
    try {
      await app.ready();
      return JSON.parse(JSON.stringify(app.swagger())) as OpenApiDocument;
    } finally {
      await app.close();
    }
  } finally {
    await stand.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const;
// @fastify/swagger's description of a response whose schema gave none.
const PLACEHOLDER_DESCRIPTION = 'Default Response';

/** A table cell: one line, pipes escaped (GitHub tables split on them, even inside code). */
function cell(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

function code(text: string): string {
  return text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.map(cell).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
class Anchors {
  readonly #seen = new Map<string, number>();

  take(heading: string): string {
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = this.#seen.get(base) ?? 0;
    this.#seen.set(base, count + 1);
    return count === 0 ? base : `${base}-${count}`;
  }
}

function asSchema(value: unknown): Schema | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Schema) : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

function numberOf(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}

const REF_PREFIX = '#/components/schemas/';

interface OperationEntry {
  method: string;
  path: string;
  operation: Operation;
  /** `POST /backup`, in code. */
  heading: string;
  anchor: string;
}

interface Group {
  name: string;
  title: string;
  description?: string;
  anchor: string;
  operations: OperationEntry[];
}

type Unanchored<T> = Omit<T, 'anchor'>;

class Renderer {
  readonly #doc: OpenApiDocument;
  readonly #groups: Group[];
  /** Anchor of each named schema's section. */
  readonly #schemaAnchors = new Map<string, string>();
  readonly #sectionAnchors: Record<'calling' | 'errors' | 'objects', string>;

  constructor(doc: OpenApiDocument) {
    this.#doc = doc;
    // Anchors are numbered in document order, as GitHub numbers repeated headings.
    const anchors = new Anchors();
    anchors.take('Contents');
    const calling = anchors.take('Calling the API');
    const errors = anchors.take('Errors');
    this.#groups = this.#group().map((group) => ({
      ...group,
      anchor: anchors.take(group.title),
      operations: group.operations.map((entry) => ({ ...entry, anchor: anchors.take(entry.heading) })),
    }));
    const objects = anchors.take('Objects');
    for (const name of Object.keys(doc.components?.schemas ?? {}))
      this.#schemaAnchors.set(name, anchors.take(code(name)));
    this.#sectionAnchors = { calling, errors, objects };
  }

  render(): string {
    const { info } = this.#doc;
    const parts: string[] = [
      `# ${info.title} HTTP API reference`,
      `<!-- Generated from the OpenAPI description by \`${REGENERATE_COMMAND}\` (api/scripts/api-reference.ts). ` +
        'Do not edit: change the route schemas in api/src and regenerate. -->',
    ];
    const description = text(info.description);
    if (description) parts.push(description);
    parts.push(
      `API version ${code(info.version)}, described in OpenAPI ${this.#doc.openapi}. A running API serves the same ` +
        'description at `/docs/json`, with an interactive page at `/docs`; this page shows it as an API with the ' +
        'default settings serves it.',
    );
    parts.push('## Contents', this.#contents());
    parts.push('## Calling the API', this.#calling());
    parts.push('## Errors', this.#errors());
    for (const group of this.#groups) parts.push(this.#renderGroup(group));
    parts.push('## Objects', 'Bodies that several operations share.', ...this.#renderObjects());
    return `${parts.join('\n\n')}\n`;
  }

  /** Operations by tag, in the order the description lists its tags; untagged ones last. */
  #group(): (Omit<Group, 'anchor' | 'operations'> & { operations: Unanchored<OperationEntry>[] })[] {
    const all: Unanchored<OperationEntry>[] = [];
    for (const [path, item] of Object.entries(this.#doc.paths)) {
      for (const method of METHODS) {
        const operation = item[method];
        if (operation) all.push({ method, path, operation, heading: code(`${method.toUpperCase()} ${path}`) });
      }
    }
    const declared = this.#doc.tags ?? [];
    const known = new Set(declared.map((tag) => tag.name));
    const groups = [
      ...declared.map((tag) => ({
        name: tag.name,
        description: tag.description,
        operations: all.filter((entry) => entry.operation.tags?.[0] === tag.name),
      })),
      {
        name: 'other',
        description: undefined,
        operations: all.filter((entry) => !known.has(entry.operation.tags?.[0] ?? '')),
      },
    ];
    return groups
      .filter((group) => group.operations.length > 0)
      .map((group) => ({ ...group, title: groupTitle(group.name) }));
  }

  #contents(): string {
    const anchors = this.#sectionAnchors;
    const lines = [`- [Calling the API](#${anchors.calling})`, `- [Errors](#${anchors.errors})`];
    for (const group of this.#groups) {
      lines.push(`- [${group.title}](#${group.anchor})`);
      for (const entry of group.operations) {
        const summary = text(entry.operation.summary);
        lines.push(`  - [${entry.heading}](#${entry.anchor})${summary ? ` — ${summary}` : ''}`);
      }
    }
    lines.push(`- [Objects](#${anchors.objects})`);
    for (const [name, anchor] of this.#schemaAnchors) lines.push(`  - [${code(name)}](#${anchor})`);
    return lines.join('\n');
  }

  #calling(): string {
    const lines: string[] = [];
    const servers = this.#doc.servers ?? [];
    if (servers.length > 0) {
      const where = servers
        .map((server) => `${code(server.url)}${server.description ? ` (${server.description})` : ''}`)
        .join(', ');
      lines.push(`Paths are relative to ${where}. Bodies are JSON unless an operation says otherwise.`);
    }
    const schemes = Object.entries(this.#doc.components?.securitySchemes ?? {});
    if (schemes.length > 0) {
      lines.push(
        table(
          ['security scheme', 'how to send it', 'description'],
          schemes.map(([name, scheme]) => [code(name), howToSend(scheme), scheme.description ?? '']),
        ),
      );
    }
    lines.push(
      `Unless an operation says otherwise, it needs ${this.#securityText(this.#doc.security ?? [])}. ` +
        'Each operation says under "Who may call it" what it needs.',
      'In the tables of fields, `a.b` is the field `b` of the object `a`, and `a[].b` the field `b` of each object ' +
        'in the array `a`. A nested field that is required, or always present, is so whenever its parent is there.',
    );
    return lines.join('\n\n');
  }

  #securityText(requirements: readonly SecurityRequirement[]): string {
    if (requirements.length === 0 || requirements.some((requirement) => Object.keys(requirement).length === 0)) {
      return 'no token: anyone who can reach the API may call it';
    }
    const schemes = this.#doc.components?.securitySchemes ?? {};
    const alternatives = requirements.map((requirement) =>
      Object.keys(requirement)
        .map((name) => {
          const scheme = schemes[name];
          return scheme ? `${howToSend(scheme)} (${code(name)})` : code(name);
        })
        .join(' and '),
    );
    return `a token, sent as ${alternatives.join(', or ')}`;
  }

  #errors(): string {
    const error = this.#doc.components?.schemas?.Error;
    const fields = Object.keys(asSchema(error?.properties) ?? {}).map((name) => JSON.stringify(name));
    const shape = [error ? this.#refLink({ $ref: `${REF_PREFIX}Error` }) : undefined, code(`{${fields.join(', ')}}`)];
    return [
      `Every error answer has one shape, ${shape.filter(Boolean).join(': ')}. ` +
        '`statusCode` repeats the HTTP status and `error` is its name; ' +
        '`message` says what went wrong, for people, and may change; `code` is a stable machine-readable code ' +
        '(such as `SOURCE_OUTSIDE_ROOTS`): match on `code`.',
      'Each operation lists the statuses it may answer. The codes behind each status, and when they occur, are ' +
        'in the README under [Error codes](../README.md#error-codes); a refused `POST /backup` also leaves a ' +
        '`rejected` row in the log (see [the log tables](log.md)).',
    ].join('\n\n');
  }

  #renderGroup(group: Group): string {
    const parts = [`## ${group.title}`];
    const description = text(group.description);
    if (description) parts.push(/[.!?]$/.test(description) ? description : `${description}.`);
    for (const entry of group.operations) parts.push(this.#renderOperation(entry));
    return parts.join('\n\n');
  }

  #renderOperation({ operation, heading }: OperationEntry): string {
    const parts = [`### ${heading}`];
    const summary = text(operation.summary);
    const id = operation.operationId ? `operation ${code(operation.operationId)}` : '';
    if (summary) parts.push(`**${summary}**${id ? ` (${id})` : ''}`);
    else if (id) parts.push(`(${id})`);
    if (operation.deprecated) parts.push('**Deprecated.**');
    const description = text(operation.description);
    if (description) parts.push(description);
    parts.push(`**Who may call it:** ${this.#securityText(operation.security ?? this.#doc.security ?? [])}.`);
    parts.push(...this.#parameters(operation), ...this.#requestBody(operation), ...this.#responses(operation));
    return parts.join('\n\n');
  }

  #parameters(operation: Operation): string[] {
    const parts: string[] = [];
    for (const [place, title] of PARAMETER_PLACES) {
      const parameters = (operation.parameters ?? []).filter((parameter) => parameter.in === place);
      if (parameters.length === 0) continue;
      parts.push(
        `**${title}**`,
        table(
          ['name', 'type', 'required', 'description'],
          parameters.map((parameter) => [
            code(parameter.name),
            this.#typeText(parameter.schema ?? {}),
            parameter.required ? 'yes' : 'no',
            text(parameter.description) ?? text(parameter.schema?.description) ?? '',
          ]),
        ),
      );
    }
    return parts;
  }

  #requestBody(operation: Operation): string[] {
    const body = operation.requestBody;
    if (!body) return [];
    const parts: string[] = [];
    for (const [mediaType, content] of Object.entries(body.content ?? {})) {
      const schema = content.schema ?? {};
      const fields = this.#refLink(schema) ? [] : this.#fieldRows(schema, '');
      const shape = fields.length > 0 ? '' : `: ${this.#typeText(schema)}`;
      parts.push(`**Request body** (${code(mediaType)}, ${body.required ? 'required' : 'optional'})${shape}`);
      const description = text(body.description) ?? text(schema.description);
      if (description) parts.push(description);
      if (fields.length > 0) parts.push(table(['field', 'type', 'required', 'description'], fields));
      if (schema.additionalProperties === false) parts.push('Fields not listed are refused.');
    }
    return parts;
  }

  #responses(operation: Operation): string[] {
    const responses = Object.entries(operation.responses ?? {});
    if (responses.length === 0) return [];
    const details: string[] = [];
    const rows = responses.map(([status, response]) => {
      const reason = STATUS_CODES[Number(status)] ?? '';
      const given = text(response.description);
      const described = given !== undefined && given !== PLACEHOLDER_DESCRIPTION && given !== reason;
      const meaning = described ? (reason ? `${reason}: ${given}` : given) : reason;
      const body: string[] = [];
      for (const [mediaType, content] of Object.entries(response.content ?? {})) {
        const schema = content.schema ?? {};
        const media = mediaType === 'application/json' ? '' : `${code(mediaType)}: `;
        const fields = this.#refLink(schema) ? [] : this.#fieldRows(schema, '');
        if (fields.length > 0) {
          body.push(`${media}an object, below`);
          details.push(`**${status} body**`, table(['field', 'type', 'always present', 'description'], fields));
        } else {
          body.push(`${media}${this.#typeText(schema)}`);
        }
      }
      const headers = Object.keys(response.headers ?? {});
      if (headers.length > 0) body.push(`headers ${headers.map(code).join(', ')}`);
      return [status, meaning, body.join('; ') || '—'];
    });
    return ['**Responses**', table(['status', 'meaning', 'body'], rows), ...details];
  }

  #renderObjects(): string[] {
    return Object.entries(this.#doc.components?.schemas ?? {}).map(([name, schema]) => {
      const parts = [`### ${code(name)}`];
      const description = text(schema.description);
      if (description) parts.push(description);
      const fields = this.#fieldRows(schema, '');
      parts.push(
        fields.length > 0 ? table(['field', 'type', 'always present', 'description'], fields) : this.#typeText(schema),
      );
      return parts.join('\n\n');
    });
  }

  /**
   * One row per field of an object schema; a nested object's fields follow it as
   * `parent.field`, and the fields of an array's objects as `parent[].field`.
   */
  #fieldRows(schema: Schema, prefix: string): string[][] {
    const properties = asSchema(schema.properties);
    if (!properties) return [];
    const required = new Set(Array.isArray(schema.required) ? (schema.required as unknown[]) : []);
    const rows: string[][] = [];
    for (const [name, value] of Object.entries(properties)) {
      const field = asSchema(value) ?? {};
      const path = `${prefix}${name}`;
      rows.push([code(path), this.#typeText(field), required.has(name) ? 'yes' : 'no', text(field.description) ?? '']);
      if (this.#refLink(field)) continue;
      rows.push(...this.#fieldRows(field, `${path}.`));
      const items = asSchema(field.items);
      if (items && !this.#refLink(items)) rows.push(...this.#fieldRows(items, `${path}[].`));
    }
    return rows;
  }

  /** A link to the section of the named schema `schema` refers to, if it is a reference. */
  #refLink(schema: Schema): string | undefined {
    const ref = text(schema.$ref);
    if (!ref) return undefined;
    const name = ref.startsWith(REF_PREFIX) ? ref.slice(REF_PREFIX.length) : ref;
    const anchor = this.#schemaAnchors.get(name);
    return anchor ? `[${code(name)}](#${anchor})` : code(name);
  }

  /**
   * A schema's type and constraints in words: `string (date-time) or null`,
   * `integer (1–100, default `20`)`, `array (1–32 items) of string (1–4096 characters)`.
   */
  #typeText(schema: Schema): string {
    const ref = this.#refLink(schema);
    if (ref) return ref;
    for (const key of ['oneOf', 'anyOf'] as const) {
      const options = schema[key];
      if (Array.isArray(options)) return options.map((option) => this.#typeText(asSchema(option) ?? {})).join(' or ');
    }
    const types = (Array.isArray(schema.type) ? (schema.type as unknown[]) : [schema.type]).filter(
      (type): type is string => typeof type === 'string',
    );
    const nullable = schema.nullable === true || types.includes('null');
    const named = types.filter((type) => type !== 'null');
    const details = detailsOf(schema);
    const withDetails = (words: string) => (details.length > 0 ? `${words} (${details.join(', ')})` : words);
    let words: string;
    if (Array.isArray(schema.enum)) {
      const values = (schema.enum as unknown[]).filter((value) => value !== null).map((value) => code(literal(value)));
      words = withDetails(values.length === 1 ? (values[0] ?? '') : `one of ${values.join(', ')}`);
    } else if (named.length === 1 && named[0] === 'array') {
      const items = asSchema(schema.items);
      words = `${withDetails('array')}${items ? ` of ${this.#typeText(items)}` : ''}`;
      // "array of string or null" would not say which of the two may be null.
      return nullable ? `${words}, or null` : words;
    } else {
      words = withDetails(named.length === 0 ? 'any' : named.join(' or '));
    }
    return nullable ? `${words} or null` : words;
  }
}

const PARAMETER_PLACES = [
  ['path', 'Path parameters'],
  ['query', 'Query parameters'],
  ['header', 'Headers'],
  ['cookie', 'Cookies'],
] as const;

/** An enum value as written in JSON, strings without their quotes. */
function literal(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function howToSend(scheme: SecurityScheme): string {
  if (scheme.type === 'http' && scheme.scheme?.toLowerCase() === 'bearer') return '`Authorization: Bearer <token>`';
  if (scheme.type === 'http' && scheme.scheme) return `HTTP ${code(scheme.scheme)} authentication`;
  if (scheme.type === 'apiKey' && scheme.name) return `${code(scheme.name)} in the ${scheme.in ?? 'request'}`;
  return scheme.type;
}

/** Format and constraints of a schema, as they read after its type. */
function detailsOf(schema: Schema): string[] {
  const out: string[] = [];
  const format = text(schema.format);
  if (format) out.push(format);
  const range = (min: number | undefined, max: number | undefined, unit: string) => {
    if (min !== undefined && max !== undefined)
      out.push(min === max ? `exactly ${min}${unit}` : `${min}–${max}${unit}`);
    else if (min !== undefined) out.push(`at least ${min}${unit}`);
    else if (max !== undefined) out.push(`at most ${max}${unit}`);
  };
  range(numberOf(schema.minLength), numberOf(schema.maxLength), ' characters');
  range(numberOf(schema.minimum), numberOf(schema.maximum), '');
  range(numberOf(schema.minItems), numberOf(schema.maxItems), ' items');
  const pattern = text(schema.pattern);
  if (pattern) out.push(`matching ${code(pattern)}`);
  if (schema.default !== undefined) out.push(`default ${code(JSON.stringify(schema.default))}`);
  return out;
}

function groupTitle(tag: string): string {
  return tag.charAt(0).toUpperCase() + tag.slice(1);
}

/** The reference as Markdown, formatted as the repository's Prettier settings format docs/api.md. */
export async function renderApiReference(doc: OpenApiDocument): Promise<string> {
  const markdown = new Renderer(doc).render();
  const options = (await prettier.resolveConfig(API_REFERENCE_FILE)) ?? {};
  return prettier.format(markdown, { ...options, filepath: API_REFERENCE_FILE });
}

async function main(): Promise<void> {
  const markdown = await renderApiReference(await describeApi());
  await writeFile(API_REFERENCE_FILE, markdown);
  process.stdout.write(`wrote ${API_REFERENCE_FILE}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    // Explicitly: a closed app may leave a Redis reconnect timer behind when Redis never answered.
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
