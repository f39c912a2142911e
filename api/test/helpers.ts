import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { expect } from 'vitest';
import { buildApp } from '../src/app.js';
import { createTestEnvironment, type TestEnvironment } from '../../test/helpers/environment.js';

/** An API built on an isolated environment, plus a direct connection to its log table. */
export interface ApiHarness {
  env: TestEnvironment;
  app: FastifyInstance;
  /** Reads the log table behind the API's back, as dashboards do. */
  db: Connection;
  close(): Promise<void>;
}

export async function startApi(): Promise<ApiHarness> {
  const env = await createTestEnvironment();
  let app: FastifyInstance | undefined;
  let db: Connection | undefined;
  const close = async () => {
    await app?.close();
    await db?.end();
    await env.cleanup();
  };
  try {
    app = await buildApp({ config: env.config });
    await app.ready();
    db = await createConnection({ ...env.config.mysql });
    return { env, app, db, close };
  } catch (err) {
    await close();
    throw err;
  }
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

export async function logRows(db: Connection, where = '1 = 1', params: (string | number)[] = []): Promise<StoredLogRow[]> {
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
  expect(body).toEqual({ statusCode, error: STATUS_CODES[statusCode], message: expect.any(String), code });
  expect(body.message.length).toBeGreaterThan(0);
  return body;
}

/** Queues a backup through the API and returns the job id. */
export async function queueBackup(app: FastifyInstance, body: { source: string; destination?: string }): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/backup', payload: body });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<{ id: string }>().id;
}

export type Outcome =
  | { status: 'completed'; snapshot: string; files: number; bytes: number; durationMs: number }
  | { status: 'failed'; code: string; message: string };

/**
 * Plays a worker's part without a worker: writes `active` and the final row
 * to the log, then drops the job from Redis, so its view can only come from the log.
 */
export async function finishThroughLog(app: FastifyInstance, id: string, outcome: Outcome): Promise<void> {
  const job = await app.backupQueue.getJob(id);
  if (!job) throw new Error(`job ${id} is not in the queue`);
  const entry = {
    action: 'backup',
    parameter: job.data.source,
    jobId: id,
    attempt: 1,
    worker: 'test-worker',
    destination: job.data.destination,
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

/** Follows `nextCursor` from the first page to the last; returns every page. */
export async function allPages<T>(app: FastifyInstance, url: string): Promise<PageBody<T>[]> {
  const pages: PageBody<T>[] = [];
  let cursor: number | null = null;
  do {
    const res = await app.inject({ method: 'GET', url: cursor === null ? url : `${url}&cursor=${cursor}` });
    expect(res.statusCode, res.body).toBe(200);
    const page = res.json<PageBody<T>>();
    pages.push(page);
    cursor = page.nextCursor;
    if (pages.length > 1000) throw new Error('paging does not end');
  } while (cursor !== null);
  return pages;
}

/** ISO-8601 as Date#toISOString writes it. */
export const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
