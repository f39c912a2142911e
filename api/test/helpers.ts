import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { join } from 'node:path';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { expect } from 'vitest';
import { loadConfig, type BackupJobData, type CofferConfig, type SnapshotFacts } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import type { Role } from '../src/auth/roles.js';
import { createToken, ensureAdminToken } from '../src/auth/token-admin.js';
import { generateToken } from '../src/auth/token-secret.js';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

/** An API built on an isolated environment, plus a direct connection to its log table. */
export interface ApiHarness {
  env: TestEnvironment;
  /** The app; its `inject` sends the admin token unless a request sets `authorization` itself. */
  app: FastifyInstance;
  /** The API_ADMIN_TOKEN the app was configured with (the token named "admin"). */
  adminToken: string;
  /** Injects a request with exactly this bearer token, or none at all with null (settled as `authorise` says). */
  request(token: string | null, options: InjectOptions): Promise<LightMyRequestResponse>;
  /** Reads the log table behind the API's back, as dashboards do. */
  db: Connection;
  close(): Promise<void>;
}

/** Apps whose accepted submissions are not waited for (see `withoutSettling`). */
const unsettled = new WeakSet<FastifyInstance>();

/**
 * Runs `work` without waiting, after each accepted submission of `app`, for the log outbox to
 * drain: for an app whose drainer is stopped or whose MySQL is away.
 */
export async function withoutSettling<T>(app: FastifyInstance, work: () => Promise<T>): Promise<T> {
  unsettled.add(app);
  try {
    return await work();
  } finally {
    unsettled.delete(app);
  }
}

/**
 * The answer to a request, once the row it logged has moved from the log outbox to MySQL: the API
 * answers as soon as the row is in Redis, and tests read MySQL next.
 */
async function settled(
  app: FastifyInstance,
  options: InjectOptions,
  res: LightMyRequestResponse,
): Promise<LightMyRequestResponse> {
  const method = options.method?.toUpperCase();
  // A submission's `queued` row, and a queued job's `cancelled` row, go through the outbox.
  const logged = (method === 'POST' && res.statusCode === 202) || (method === 'DELETE' && res.statusCode === 200);
  if (logged && !unsettled.has(app)) await logSettled(app);
  return res;
}

/**
 * Makes `app.inject` send `token` by default, as every client of the real API must, and answer
 * an accepted submission once its `queued` row is in MySQL. A test seam only.
 */
export function authorise(app: FastifyInstance, token: string): FastifyInstance {
  const inject = app.inject.bind(app);
  const withToken = async (options: InjectOptions | string) => {
    const request = typeof options === 'string' ? { url: options } : options;
    return settled(
      app,
      request,
      await inject({ ...request, headers: { authorization: `Bearer ${token}`, ...request.headers } }),
    );
  };
  Object.defineProperty(app, 'inject', { value: withToken, configurable: true });
  return app;
}

/** An API on its own environment, with an admin token; `variables` are extra environment variables. */
export async function startApi(variables: Record<string, string> = {}): Promise<ApiHarness> {
  const adminToken = generateToken();
  const env = await createTestEnvironment({ API_ADMIN_TOKEN: adminToken, ...variables });
  let app: FastifyInstance | undefined;
  let db: Connection | undefined;
  const close = async () => {
    await app?.close();
    await db?.end();
    await env.cleanup();
  };
  try {
    const built = await buildApp({ config: env.config });
    app = built;
    await built.ready();
    // What server.ts does at start-up.
    await ensureAdminToken(built.tokenStore, env.config, built.revocations);
    const inject = built.inject.bind(built);
    const request = async (token: string | null, options: InjectOptions) =>
      settled(
        built,
        options,
        await inject({
          ...options,
          headers: { ...options.headers, ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
        }),
      );
    authorise(built, adminToken);
    db = await createConnection({ ...env.config.mysql });
    return { env, app: built, adminToken, request, db, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Creates a token straight in the store (as the command line does) and returns its secret. */
export async function issueToken(
  api: ApiHarness,
  name: string,
  role: Role,
  sourceRoots: string[] | null = null,
): Promise<string> {
  return (await createToken(api.app.tokenStore, api.env.config, { name, role, sourceRoots })).token;
}

/** The environment's configuration with some variables changed, read as the process would read it. */
export function configWith(env: TestEnvironment, overrides: Record<string, string>): CofferConfig {
  const { config, sources, backups } = env;
  return loadConfig({
    REDIS_URL: env.redisUrl,
    QUEUE_PREFIX: config.queuePrefix,
    MYSQL_HOST: config.mysql.host,
    MYSQL_PORT: String(config.mysql.port),
    MYSQL_USER: config.mysql.user,
    MYSQL_PASSWORD: config.mysql.password,
    MYSQL_DATABASE: config.mysql.database,
    SOURCE_ROOTS: sources,
    BACKUP_ROOT: backups,
    LOG_LEVEL: 'silent',
    ...(config.apiAdminToken === undefined ? {} : { API_ADMIN_TOKEN: config.apiAdminToken }),
    ...overrides,
  });
}

/** A log row as stored (snake_case columns), read straight from MySQL. */
export interface StoredLogRow {
  id: number;
  status: string;
  job_id: string | null;
  parameter: string;
  destination: string | null;
  attempt: number | null;
  code: string | null;
  message: string | null;
}

export async function logRows(
  db: Connection,
  where = '1 = 1',
  params: (string | number)[] = [],
): Promise<StoredLogRow[]> {
  const [rows] = await db.query<RowDataPacket[]>(
    `SELECT id, status, job_id, parameter, destination, attempt, code, message FROM log WHERE ${where} ORDER BY id`,
    params,
  );
  return rows.map((row) => ({ ...row, id: Number(row.id) }) as StoredLogRow);
}

export async function lastLogId(db: Connection): Promise<number> {
  const [rows] = await db.query<RowDataPacket[]>('SELECT COALESCE(MAX(id), 0) AS id FROM log');
  return Number(rows[0]?.id ?? 0);
}

export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
  code: string;
}

/** Asserts the contract's error shape and stable code; returns the body for further checks. */
export function expectError(res: LightMyRequestResponse, statusCode: number, code: string): ErrorBody {
  expect(res.statusCode, res.body).toBe(statusCode);
  const body = res.json<ErrorBody>();
  expect(body).toEqual({ statusCode, error: STATUS_CODES[statusCode], message: anyString(), code });
  expect(body.message.length).toBeGreaterThan(0);
  return body;
}

/**
 * Waits until every row waiting in the log outbox is in MySQL: a job's `queued` row goes there
 * (not straight to MySQL), so a test that reads the log right after a 202 waits for it first.
 */
export async function logSettled(app: FastifyInstance, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await app.logOutbox.backlog()) > 0) {
    if (Date.now() > deadline) throw new Error(`log outbox not drained within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Queues a backup through the API and returns the job id, once its `queued` row is in MySQL. */
export async function queueBackup(
  app: FastifyInstance,
  body: { source: string; destination?: string },
): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/backup', payload: body });
  expect(res.statusCode, res.body).toBe(202);
  await logSettled(app);
  return res.json<{ id: string }>().id;
}

export type Outcome =
  | { status: 'completed'; snapshot: string; files: number; bytes: number; durationMs: number }
  | { status: 'failed'; code: string; message: string };

/** The data of the backup job `id` as queued; undefined when the queue holds no such backup. */
export async function queuedBackup(app: FastifyInstance, id: string): Promise<BackupJobData | undefined> {
  const job = await app.backupQueue.getJob(id);
  return job?.name === 'backup' ? (job.data as BackupJobData) : undefined;
}

/**
 * Plays a worker's part without a worker: writes `active` and the final row
 * to the log, then drops the job from Redis, so its view can only come from the log.
 */
export async function finishThroughLog(app: FastifyInstance, id: string, outcome: Outcome): Promise<void> {
  const job = await app.backupQueue.getJob(id);
  const data = await queuedBackup(app, id);
  if (!job || !data) throw new Error(`backup job ${id} is not in the queue`);
  // The job's `queued` row first, as a worker's rows would follow it.
  await logSettled(app);
  const entry = {
    action: 'backup',
    parameter: data.source,
    jobId: id,
    attempt: 1,
    worker: 'test-worker',
    destination: data.destination,
  } as const;
  await app.logStore.append({ ...entry, status: 'active' });
  await app.logStore.append({ ...entry, ...outcome });
  await job.remove();
}

export interface JobViewBody {
  id: string;
  status: string;
  source: string;
  destination: string;
  attempts: number;
  progress: { files: number; filesTotal: number; bytes: number; bytesTotal: number };
  result?: { path: string; files: number; bytes: number; durationMs: number };
  error?: { code: string; message: string };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface LogRowBody {
  id: number;
  date: string;
  action: string;
  parameter: string;
  status: string;
  jobId: string | null;
  code?: string | null;
  message?: string | null;
}

export interface PageBody<T> {
  items: T[];
  nextCursor: number | null;
}

/** Sends one request, e.g. `(options) => api.request(token, options)`. */
export type Requester = (options: InjectOptions) => Promise<LightMyRequestResponse>;

/** Follows `nextCursor` from the first page to the last; returns every page. */
export async function allPages<T>(app: FastifyInstance | Requester, url: string): Promise<PageBody<T>[]> {
  const send: Requester = typeof app === 'function' ? app : (options) => app.inject(options);
  const pages: PageBody<T>[] = [];
  let cursor: number | null = null;
  do {
    const res: LightMyRequestResponse = await send({
      method: 'GET',
      url: cursor === null ? url : `${url}&cursor=${cursor}`,
    });
    expect(res.statusCode, res.body).toBe(200);
    const page: PageBody<T> = res.json<PageBody<T>>();
    pages.push(page);
    cursor = page.nextCursor;
    if (pages.length > 1000) throw new Error('paging does not end');
  } while (cursor !== null);
  return pages;
}

/** Every item of a listing, following the cursor through all its pages. */
export async function collect<T>(app: FastifyInstance | Requester, url: string): Promise<T[]> {
  return (await allPages<T>(app, url)).flatMap((page) => page.items);
}

// Vitest types asymmetric matchers as `any`; these say what they stand for.
export const anyString = (): string => expect.any(String) as string;
export const anyNumber = (): number => expect.any(Number) as number;
export const matching = (pattern: RegExp): string => expect.stringMatching(pattern) as string;
export const containing = <T extends object>(partial: Partial<T>): T => expect.objectContaining<object>(partial) as T;

/** ISO-8601 as Date#toISOString writes it. */
export const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A TCP relay to a real server that a test can take down and bring back, to simulate an outage. */
export interface Outage {
  /** `url` with the relay's port in place of the real server's. */
  url: string;
  port: number;
  /** Starts relaying (again). */
  restore(): Promise<void>;
  /** Closes the relay and cuts every open connection. */
  cut(): Promise<void>;
}

/** A relay to the server at `url` (e.g. redis://host:port); created cut, call restore() to open it. */
export async function createOutage(url: string): Promise<Outage> {
  const target = new URL(url);
  const port = await freePort();
  const relayed = new URL(url);
  relayed.hostname = '127.0.0.1';
  relayed.port = String(port);
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  return {
    url: relayed.toString(),
    port,
    async restore() {
      if (server) return;
      const relay = createServer((client) => {
        const upstream = connect(Number(target.port), target.hostname);
        const pair = [client, upstream];
        for (const socket of pair) {
          sockets.add(socket);
          socket.on('error', () => pair.forEach((s) => s.destroy()));
          socket.on('close', () => {
            pair.forEach((s) => s.destroy());
            sockets.delete(socket);
          });
        }
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((resolve, reject) => {
        relay.once('error', reject);
        relay.listen(port, '127.0.0.1', resolve);
      });
      server = relay;
    },
    async cut() {
      const relay = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      if (relay) await new Promise<void>((resolve) => relay.close(() => resolve()));
    },
  };
}

/**
 * Records a completed backup's snapshot the way its worker does: the catalog change rides on
 * the job's `completed` log row (after its `queued` row). The snapshot folder is not created.
 */
export async function recordSnapshot(
  app: FastifyInstance,
  backupRoot: string,
  fields: Pick<SnapshotFacts, 'destination' | 'source' | 'actor'> & Partial<SnapshotFacts>,
): Promise<SnapshotFacts> {
  const id = fields.id ?? randomUUID();
  const snapshot: SnapshotFacts = {
    id,
    path: join(backupRoot, fields.destination, `20261129T010203.456Z-${id}`),
    createdAt: new Date().toISOString(),
    files: 2,
    bytes: 5,
    filesLinked: 1,
    bytesLinked: 2,
    manifestSha256: 'b'.repeat(64),
    ...fields,
  };
  const row = {
    action: 'backup' as const,
    parameter: snapshot.source,
    jobId: id,
    attempt: 1,
    worker: 'test',
    destination: snapshot.destination,
    actor: snapshot.actor,
  };
  await app.logStore.append([
    { ...row, status: 'queued' },
    { ...row, status: 'completed', snapshot: snapshot.path, catalog: { kind: 'snapshot', snapshot } },
  ]);
  return snapshot;
}

/** Marks a snapshot removed the way a prune job does: a `removed` log row carrying the catalog's deletion. */
export async function pruneSnapshot(app: FastifyInstance, snapshotId: string): Promise<void> {
  await app.logStore.append({
    action: 'prune',
    parameter: snapshotId,
    status: 'removed',
    jobId: randomUUID(),
    attempt: null,
    worker: 'test',
    snapshotId,
    catalog: { kind: 'deleted', snapshotId, at: new Date().toISOString() },
  });
}
