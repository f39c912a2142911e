import { randomBytes } from 'node:crypto';
import createError from '@fastify/error';
import type { FastifyPluginAsync } from 'fastify';
import type { CofferConfig } from '@coffer/shared';
import { ADMIN_ONLY } from '../auth/roles.js';
import { WebhookNotFound, WebhookUrlInvalid } from '../errors.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';
import { unavailableOnFailure } from '../unavailable.js';
import { UrlRefused, parseWebhookUrl, vetUrl } from '../webhooks/url-guard.js';
import {
  WEBHOOK_EVENTS,
  type DeliveryAttempt,
  type WebhookEvent,
  type WebhookRecord,
} from '../webhooks/webhook-store.js';

/** At most this many webhooks: each is called for every transition it wants. */
export const MAX_WEBHOOKS = 100;
export const WebhookLimitReached = createError(
  'WEBHOOK_LIMIT_REACHED',
  `there are already ${MAX_WEBHOOKS} webhooks; delete one first`,
  409,
);

interface CreateBody {
  url: string;
  events: WebhookEvent[];
  secret?: string;
}

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } },
} as const;

const webhookProperties = {
  id: { type: 'integer' },
  url: { type: 'string', description: 'Where deliveries are POSTed' },
  events: { type: 'array', items: { type: 'string', enum: WEBHOOK_EVENTS }, description: 'The job statuses sent' },
  createdBy: { type: 'string', description: 'The token that created the webhook' },
  createdAt: { type: 'string', format: 'date-time' },
} as const;
const webhookRequired = ['id', 'url', 'events', 'createdBy', 'createdAt'];
const webhookView = { type: 'object', properties: webhookProperties, required: webhookRequired } as const;

const deliveryView = {
  type: 'object',
  properties: {
    id: { type: 'integer', description: 'The attempt; `before` pages by it' },
    deliveryId: { type: 'string', description: 'The delivery (Coffer-Delivery), the same on all its attempts' },
    event: { type: 'string', enum: WEBHOOK_EVENTS },
    jobId: { type: 'string' },
    logRowId: { type: 'integer', description: 'The log row of the transition delivered' },
    attempt: { type: 'integer', description: '1 for the first attempt' },
    startedAt: { type: 'string', format: 'date-time' },
    durationMs: { type: 'integer' },
    httpStatus: { type: ['integer', 'null'], description: "The receiver's answer; null if none came" },
    error: { type: ['string', 'null'], description: 'Why the attempt failed; null if it did not' },
    outcome: {
      type: 'string',
      enum: ['delivered', 'retrying', 'failed'],
      description: 'delivered (2xx); retrying (failed, another attempt follows); failed (the last attempt failed)',
    },
  },
  required: [
    'id',
    'deliveryId',
    'event',
    'jobId',
    'logRowId',
    'attempt',
    'startedAt',
    'durationMs',
    'httpStatus',
    'error',
    'outcome',
  ],
} as const;

function viewOf(webhook: WebhookRecord) {
  return {
    id: webhook.id,
    url: webhook.url,
    events: webhook.events,
    createdBy: webhook.createdBy,
    createdAt: webhook.createdAt.toISOString(),
  };
}

function attemptView(attempt: DeliveryAttempt) {
  return {
    id: attempt.id,
    deliveryId: attempt.deliveryId,
    event: attempt.event,
    jobId: attempt.jobId,
    logRowId: attempt.logRowId,
    attempt: attempt.attempt,
    startedAt: attempt.startedAt.toISOString(),
    durationMs: attempt.durationMs,
    httpStatus: attempt.httpStatus,
    error: attempt.error,
    outcome: attempt.outcome,
  };
}

const DELIVERIES =
  'Each delivery is a POST of JSON `{id, event, webhookId, logRowId, occurredAt, job}`: `id` is the delivery ' +
  '(`<webhookId>-<logRowId>`, also in the Coffer-Delivery header, the same on every attempt), `event` the ' +
  "job's status at the transition (also in Coffer-Event), `logRowId` and `occurredAt` the log row of the " +
  "transition, `job` the job's view at that transition (as GET /jobs/{id} answers it). The header " +
  '`Coffer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>` signs it. ' +
  'A 2xx answer within 10 s delivers it; anything else (a redirect too: none is followed) is retried 2, 4, ' +
  '8, 16 and 32 s later, 6 attempts in all; each attempt is listed at GET /webhooks/{id}/deliveries.';

const webhookRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  const admins = { access: ADMIN_ONLY };
  // The plugin is registered before the routes.
  const store = unavailableOnFailure(app.webhooks.store);

  async function found(id: string): Promise<WebhookRecord> {
    const webhook = await store.get(Number(id));
    if (!webhook) throw new WebhookNotFound(id);
    return webhook;
  }

  /** The URL as it will be called, if it may be: its host resolved, every address it has allowed. */
  async function checkedUrl(text: string): Promise<string> {
    try {
      const url = parseWebhookUrl(text);
      await vetUrl(url, config.webhookAllowPrivate);
      return url.href;
    } catch (err) {
      if (err instanceof UrlRefused) throw new WebhookUrlInvalid(err.message);
      throw err;
    }
  }

  app.post<{ Body: CreateBody }>(
    '/webhooks',
    {
      config: admins,
      schema: {
        operationId: 'createWebhook',
        summary: 'Subscribe a URL to job transitions (admin); the answer is the only time its secret is shown',
        description:
          `${DELIVERIES} The URL must be http or https without a user name or password, and its host must ` +
          'resolve, to public addresses only: a loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), ' +
          'link-local (169.254/16, fe80::/10), carrier-grade NAT or other special address is 400 ' +
          'INVALID_WEBHOOK_URL unless WEBHOOK_ALLOW_PRIVATE=true (checked again at each attempt, which connects ' +
          'only to the address checked). Without a secret, one is generated; either way the answer is the only ' +
          `time it is shown. At most ${MAX_WEBHOOKS} webhooks: 409 WEBHOOK_LIMIT_REACHED beyond.`,
        tags: ['webhooks'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['url', 'events'],
          properties: {
            url: { type: 'string', minLength: 1, maxLength: 8192, description: 'http(s) URL, at most 2048 characters' },
            events: {
              type: 'array',
              minItems: 1,
              uniqueItems: true,
              items: { type: 'string', enum: WEBHOOK_EVENTS },
              description: 'The job statuses to send',
            },
            secret: {
              type: 'string',
              minLength: 16,
              maxLength: 256,
              description: 'Signs the deliveries; default: 32 random bytes, base64url',
            },
          },
        },
        response: {
          201: {
            description: 'Created; Location: /webhooks/{id}',
            type: 'object',
            properties: {
              ...webhookProperties,
              secret: { type: 'string', description: 'Signs the deliveries; shown once' },
            },
            required: [...webhookRequired, 'secret'],
          },
          ...errorResponses(400, 401, 403, 409, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { events } = request.body;
      const url = await checkedUrl(request.body.url);
      if ((await store.count()) >= MAX_WEBHOOKS) throw new WebhookLimitReached();
      const secret = request.body.secret ?? randomBytes(32).toString('base64url');
      const id = await store.insert({ url, events, secret, createdBy: principalOf(request).name });
      const webhook = await found(String(id));
      await app.webhooks.reload();
      request.log.info({ webhookId: id, url, events }, 'webhook created');
      // The secret must not stay in any cache on the way.
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .header('location', `/webhooks/${id}`)
        .send({ ...viewOf(webhook), secret });
    },
  );

  app.get(
    '/webhooks',
    {
      config: admins,
      schema: {
        operationId: 'listWebhooks',
        summary: 'Every webhook, without secrets (admin)',
        description: 'Oldest first. Secrets are shown only when a webhook is created.',
        tags: ['webhooks'],
        response: {
          200: { type: 'object', properties: { items: { type: 'array', items: webhookView } }, required: ['items'] },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async () => ({ items: (await store.list()).map(viewOf) }),
  );

  app.get<{ Params: { id: string } }>(
    '/webhooks/:id',
    {
      config: admins,
      schema: {
        operationId: 'getWebhook',
        summary: 'One webhook, without its secret (admin)',
        description: 'An unknown id is 404 WEBHOOK_NOT_FOUND.',
        tags: ['webhooks'],
        params: idParams,
        response: { 200: webhookView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => viewOf(await found(request.params.id)),
  );

  app.delete<{ Params: { id: string } }>(
    '/webhooks/:id',
    {
      config: admins,
      schema: {
        operationId: 'deleteWebhook',
        summary: 'Delete a webhook, its secret and its deliveries (admin)',
        description:
          'Deliveries not yet made are dropped (an attempt already under way may still arrive); the list of ' +
          'deliveries goes with the webhook. An unknown id is 404 WEBHOOK_NOT_FOUND.',
        tags: ['webhooks'],
        params: idParams,
        response: {
          204: { description: 'Deleted', type: 'null' },
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      if (!(await store.remove(Number(id)))) throw new WebhookNotFound(id);
      await app.webhooks.reload();
      request.log.info({ webhookId: Number(id) }, 'webhook deleted');
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { id: string }; Querystring: { limit: number; before?: number } }>(
    '/webhooks/:id/deliveries',
    {
      config: admins,
      schema: {
        operationId: 'listWebhookDeliveries',
        summary: "A webhook's delivery attempts, newest first (admin)",
        description:
          'One item per attempt: its answer (httpStatus) or error, and its outcome. A delivery that fails 6 times ' +
          'ends with an attempt whose outcome is `failed`. Pass `nextBefore` as `before` for the next page.',
        tags: ['webhooks'],
        params: idParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            before: {
              type: 'integer',
              minimum: 1,
              description: "Attempts older than this one (the previous page's nextBefore)",
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              items: { type: 'array', items: deliveryView },
              nextBefore: { type: ['integer', 'null'], description: 'The `before` of the next page; null at the end' },
            },
            required: ['items', 'nextBefore'],
          },
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request) => {
      const webhook = await found(request.params.id);
      const { limit, before } = request.query;
      const attempts = await store.attempts(webhook.id, limit + 1, before);
      const page = attempts.slice(0, limit);
      const nextBefore = attempts.length > limit ? (page.at(-1)?.id ?? null) : null;
      return { items: page.map(attemptView), nextBefore };
    },
  );
};

export default webhookRoutes;
