import { Queue, Worker, type Job } from 'bullmq';
import fp from 'fastify-plugin';
import { createRedis, settlesWithin, type CofferConfig, type RedisClient } from '@coffer/shared';
import { DELIVERY_JOB, WEBHOOK_QUEUE, deliveriesOf, deliveryId, type DeliveryData } from '../webhooks/dispatch.js';
import { send, type AttemptResult } from '../webhooks/send.js';
import type { Resolver } from '../webhooks/url-guard.js';
import { createWebhookStore, type WebhookRecord, type WebhookStore } from '../webhooks/webhook-store.js';

/** How deliveries are made; the defaults are the production ones, tests shorten them. */
export interface DeliveryTuning {
  /** Attempts per delivery, the first included. */
  attempts: number;
  /** The wait before the 2nd attempt; doubled before each next one. */
  backoffMs: number;
  /** How long one attempt waits for the receiver's answer. */
  timeoutMs: number;
  /** Deliveries attempted at once by this process. */
  concurrency: number;
  /** How often the webhook list is read again, so changes made through other replicas arrive. */
  reloadMs: number;
  /** Resolves receivers' host names (tests replace DNS with it). */
  resolve?: Resolver;
}

/** 6 attempts, 2 + 4 + 8 + 16 + 32 s apart: about a minute of retries; 10 s per attempt. */
export const DEFAULT_TUNING: DeliveryTuning = {
  attempts: 6,
  backoffMs: 2000,
  timeoutMs: 10_000,
  concurrency: 8,
  reloadMs: 10_000,
};

/** Done and failed delivery jobs stay this long in Redis, so a delivery enqueued again is recognised and dropped. */
const KEEP_SECONDS = 86_400;
/** How long closing waits for deliveries in flight, and start-up for the worker's connection. */
const WAIT_MS = 5000;

export interface Webhooks {
  store: WebhookStore;
  /** Reads the webhook list again (after a change); the change reaches other replicas within reloadMs. */
  reload(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    webhooks: Webhooks;
  }
}

/**
 * Webhooks: every API process listens to the job event hub while at least one webhook exists,
 * and turns each transition a webhook wants into a job on the `webhooks` BullMQ queue, with an
 * id per (webhook, log row), so replicas and repeated events enqueue it once. A worker in each
 * API process POSTs the deliveries, signed, retrying with exponential backoff, and records
 * each attempt in MySQL. Backups never wait for any of it.
 */
export function webhooksPlugin(tuning: Partial<DeliveryTuning> = {}) {
  const { attempts, backoffMs, timeoutMs, concurrency, reloadMs, resolve } = { ...DEFAULT_TUNING, ...tuning };
  return fp<{ config: CofferConfig }>(
    async (app, { config }) => {
      const store = createWebhookStore(app.mysql);
      // The producer connection: a delivery Redis does not take at once is lost, not waited for.
      const queue = new Queue<DeliveryData, void, string>(WEBHOOK_QUEUE, {
        connection: app.redis,
        prefix: config.queuePrefix,
      });
      queue.on('error', (err: Error) => app.log.warn({ err: err.message }, 'webhook queue error'));
      let webhooks: WebhookRecord[] = [];
      let unsubscribe: (() => void) | undefined;
      let closing = false;
      let reloading: NodeJS.Timeout | undefined;

      function enqueue(delivery: DeliveryData): void {
        queue
          .add(DELIVERY_JOB, delivery, {
            jobId: deliveryId(delivery.webhookId, delivery.logRowId),
            attempts,
            backoff: { type: 'exponential', delay: backoffMs },
            removeOnComplete: { age: KEEP_SECONDS },
            removeOnFail: { age: KEEP_SECONDS },
          })
          .catch((err: unknown) =>
            app.log.warn(
              { err, webhookId: delivery.webhookId, jobId: delivery.jobId, event: delivery.event },
              'cannot queue a webhook delivery; it is lost',
            ),
          );
      }

      /** Listens to the hub only while there is a webhook: the hub reads MySQL per transition while listened to. */
      function listen(): void {
        if (closing) return;
        if (webhooks.length === 0) {
          unsubscribe?.();
          unsubscribe = undefined;
          return;
        }
        if (unsubscribe) return;
        unsubscribe = app.jobEvents.subscribe({
          onEvent(event) {
            if (event.type !== 'log' || closing) return;
            for (const delivery of deliveriesOf(event, webhooks)) enqueue(delivery);
          },
          close() {
            unsubscribe = undefined;
          },
        });
      }

      let loading: Promise<void> | null = null;
      async function reload(): Promise<void> {
        // One read at a time; a change while one runs is read by running again after it.
        const next = (loading ?? Promise.resolve()).then(async () => {
          try {
            webhooks = await store.list();
          } catch (err) {
            app.log.warn({ err }, 'cannot read the webhooks; keeping the list read before');
          }
          listen();
        });
        loading = next;
        return next;
      }

      async function attempt(job: Job<DeliveryData, void, string>): Promise<void> {
        const data = job.data;
        const webhook = await store.get(data.webhookId);
        // Deleted since: its pending deliveries are dropped.
        if (!webhook) return;
        const number = job.attemptsMade + 1;
        const startedAt = new Date();
        const result: AttemptResult = await send(
          { url: webhook.url, secret: webhook.secret, body: data.body, event: data.event, deliveryId: job.id ?? '' },
          { timeoutMs, allowPrivate: config.webhookAllowPrivate, ...(resolve ? { resolve } : {}) },
        );
        const last = number >= (job.opts.attempts ?? 1);
        const outcome = result.ok ? 'delivered' : last ? 'failed' : 'retrying';
        await store
          .recordAttempt({
            webhookId: webhook.id,
            deliveryId: job.id ?? deliveryId(data.webhookId, data.logRowId),
            jobId: data.jobId,
            event: data.event,
            logRowId: data.logRowId,
            attempt: number,
            startedAt,
            durationMs: result.durationMs,
            httpStatus: result.httpStatus,
            error: result.error,
            outcome,
          })
          // An attempt not recorded is not made again for it: the receiver may have it already.
          .catch((err: unknown) =>
            app.log.warn({ err, webhookId: webhook.id, delivery: job.id }, 'cannot record a webhook delivery attempt'),
          );
        const where = { webhookId: webhook.id, delivery: job.id, event: data.event, jobId: data.jobId };
        if (result.ok) {
          app.log.debug({ ...where, httpStatus: result.httpStatus, attempt: number }, 'webhook delivered');
          return;
        }
        if (last) {
          app.log.warn({ ...where, attempt: number, error: result.error }, 'webhook delivery failed for good');
        }
        throw new Error(result.error ?? 'delivery failed');
      }

      let worker: Worker<DeliveryData, void, string> | undefined;
      let connection: RedisClient | undefined;

      /** Starts this process's delivery worker, once Redis answers. */
      function startWorker(): void {
        if (worker || closing) return;
        connection = createRedis(config.redis, 'worker');
        connection.on('error', (err: Error) => app.log.debug({ err: err.message }, 'webhook worker redis error'));
        worker = new Worker<DeliveryData, void, string>(WEBHOOK_QUEUE, attempt, {
          connection,
          prefix: config.queuePrefix,
          concurrency,
        });
        worker.on('error', (err: Error) => app.log.warn({ err: err.message }, 'webhook worker error'));
      }

      const onRedisReady = () => startWorker();

      app.decorate<Webhooks>('webhooks', { store, reload });

      app.addHook('onReady', async () => {
        reloading = setInterval(() => void reload(), reloadMs).unref();
        await settlesWithin(reload(), WAIT_MS);
        app.redis.on('ready', onRedisReady);
        if (app.redis.status === 'ready') startWorker();
      });

      app.addHook('preClose', async () => {
        closing = true;
        clearInterval(reloading);
        unsubscribe?.();
        unsubscribe = undefined;
      });

      app.addHook('onClose', async () => {
        closing = true;
        app.redis.off('ready', onRedisReady);
        if (worker) {
          // As the schedule runner does: a worker still making its first connection is waited for first.
          await settlesWithin(worker.waitUntilReady(), WAIT_MS);
          await settlesWithin(worker.close(), WAIT_MS);
        }
        await settlesWithin(loading ?? Promise.resolve(), WAIT_MS);
        await settlesWithin(queue.close(), WAIT_MS);
        connection?.disconnect();
      });
    },
    { name: 'webhooks', dependencies: ['mysql', 'queue', 'job-events'] },
  );
}

export default webhooksPlugin();
