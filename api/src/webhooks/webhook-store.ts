import type { Pool, ResultSetHeader, RowDataPacket } from 'mysql2/promise';

/** The job statuses a webhook may subscribe to: every status the log records for a job. */
export const WEBHOOK_EVENTS = ['queued', 'active', 'retrying', 'completed', 'failed', 'cancelled'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export function isWebhookEvent(status: string): status is WebhookEvent {
  return (WEBHOOK_EVENTS as readonly string[]).includes(status);
}

/** A webhook as stored, its secret included: never answered as such. */
export interface WebhookRecord {
  id: number;
  url: string;
  events: WebhookEvent[];
  secret: string;
  createdBy: string;
  createdAt: Date;
}

export type NewWebhook = Pick<WebhookRecord, 'url' | 'events' | 'secret' | 'createdBy'>;

export type DeliveryOutcome = 'delivered' | 'retrying' | 'failed';

/** One attempt at one delivery. */
export interface DeliveryAttempt {
  id: number;
  webhookId: number;
  deliveryId: string;
  jobId: string;
  event: string;
  logRowId: number;
  attempt: number;
  startedAt: Date;
  durationMs: number;
  httpStatus: number | null;
  error: string | null;
  outcome: DeliveryOutcome;
}

export type NewDeliveryAttempt = Omit<DeliveryAttempt, 'id'>;

const MAX_ERROR_LENGTH = 1024;

function toWebhook(row: RowDataPacket): WebhookRecord {
  return {
    id: Number(row.id),
    url: String(row.url),
    events: String(row.events).split(',').filter(isWebhookEvent),
    secret: String(row.secret),
    createdBy: String(row.created_by),
    createdAt: row.created_at as Date,
  };
}

function toAttempt(row: RowDataPacket): DeliveryAttempt {
  return {
    id: Number(row.id),
    webhookId: Number(row.webhook_id),
    deliveryId: String(row.delivery_id),
    jobId: String(row.job_id),
    event: String(row.event),
    logRowId: Number(row.log_row_id),
    attempt: Number(row.attempt),
    startedAt: row.started_at as Date,
    durationMs: Number(row.duration_ms),
    httpStatus: row.http_status === null ? null : Number(row.http_status),
    error: (row.error as string | null) ?? null,
    outcome: String(row.outcome) as DeliveryOutcome,
  };
}

const WEBHOOK_COLUMNS = 'id, url, events, secret, created_by, created_at';
const ATTEMPT_COLUMNS =
  'id, webhook_id, delivery_id, job_id, event, log_row_id, attempt, started_at, duration_ms, http_status, error, outcome';

/** The `webhook` and `webhook_delivery` tables. Every query is parameterised; not-found is null (or false). */
export function createWebhookStore(pool: Pool) {
  return {
    async get(id: number): Promise<WebhookRecord | null> {
      const [rows] = await pool.execute<RowDataPacket[]>(`SELECT ${WEBHOOK_COLUMNS} FROM webhook WHERE id = ?`, [id]);
      const row = rows[0];
      return row ? toWebhook(row) : null;
    },

    /** Every webhook, oldest first. */
    async list(): Promise<WebhookRecord[]> {
      const [rows] = await pool.execute<RowDataPacket[]>(`SELECT ${WEBHOOK_COLUMNS} FROM webhook ORDER BY id`);
      return rows.map(toWebhook);
    },

    async count(): Promise<number> {
      const [rows] = await pool.execute<RowDataPacket[]>('SELECT COUNT(*) AS n FROM webhook');
      return Number(rows[0]?.n ?? 0);
    },

    async insert(webhook: NewWebhook): Promise<number> {
      const [result] = await pool.execute<ResultSetHeader>(
        'INSERT INTO webhook (url, events, secret, created_by, created_at) VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP(3))',
        [webhook.url, webhook.events.join(','), webhook.secret, webhook.createdBy],
      );
      return result.insertId;
    },

    /** Deletes a webhook and its deliveries; false when there is no such webhook. */
    async remove(id: number): Promise<boolean> {
      const [result] = await pool.execute<ResultSetHeader>('DELETE FROM webhook WHERE id = ?', [id]);
      return result.affectedRows > 0;
    },

    /** Records an attempt; false if its webhook was deleted meanwhile. */
    async recordAttempt(attempt: NewDeliveryAttempt): Promise<boolean> {
      try {
        await pool.execute(
          'INSERT INTO webhook_delivery (webhook_id, delivery_id, job_id, event, log_row_id, attempt, started_at,' +
            ' duration_ms, http_status, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)' +
            ' ON DUPLICATE KEY UPDATE started_at = VALUES(started_at), duration_ms = VALUES(duration_ms),' +
            ' http_status = VALUES(http_status), error = VALUES(error), outcome = VALUES(outcome)',
          [
            attempt.webhookId,
            attempt.deliveryId,
            attempt.jobId,
            attempt.event,
            attempt.logRowId,
            attempt.attempt,
            attempt.startedAt,
            attempt.durationMs,
            attempt.httpStatus,
            attempt.error === null ? null : attempt.error.slice(0, MAX_ERROR_LENGTH),
            attempt.outcome,
          ],
        );
        return true;
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ER_NO_REFERENCED_ROW_2') return false;
        throw err;
      }
    },

    /** A webhook's attempts, newest first, those with an id below `before` if given. */
    async attempts(webhookId: number, limit: number, before?: number): Promise<DeliveryAttempt[]> {
      // LIMIT as a literal: prepared statements take no placeholder there on every server.
      const take = Math.max(1, Math.min(1000, Math.floor(limit)));
      const [rows] =
        before === undefined
          ? await pool.execute<RowDataPacket[]>(
              `SELECT ${ATTEMPT_COLUMNS} FROM webhook_delivery WHERE webhook_id = ? ORDER BY id DESC LIMIT ${take}`,
              [webhookId],
            )
          : await pool.execute<RowDataPacket[]>(
              `SELECT ${ATTEMPT_COLUMNS} FROM webhook_delivery WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ${take}`,
              [webhookId, before],
            );
      return rows.map(toAttempt);
    },
  };
}

export type WebhookStore = ReturnType<typeof createWebhookStore>;
