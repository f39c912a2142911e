import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import type { CofferConfig } from '@coffer/shared';
import { createSharedRateLimitStore } from '../auth/rate-limit-store.js';
import { RateLimited } from '../errors.js';

const WINDOW_MS = 60_000;
const UNLIMITED = new Set(['/health', '/ready']);

/**
 * RATE_LIMIT_PER_MINUTE requests a minute per token (per address on public routes), in fixed
 * minutes shared by every API replica through Redis, but without a Redis round trip per request:
 * each process counts locally and adds its counts to Redis in one pipelined call every 250 ms
 * (see createSharedRateLimitStore). Near the limit a request asks Redis itself, so one replica
 * is exact and limits below 50 are exact across replicas; above that, R replicas may together
 * admit up to (R − 1) × 2% of the limit more in a minute. It runs after authentication, so
 * a token's count is never spent by someone who does not hold it. While Redis is down the
 * limit is skipped (fails open): it protects capacity, not data, and submitting needs Redis
 * anyway, so only reads from MySQL go unlimited.
 *
 * One hook on the whole app rather than one per route: routes get theirs when they are
 * registered, and the not-found handler is no route, so unknown URLs (which still need a
 * token, and cost a lookup) would go unlimited.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    if (config.rateLimitPerMinute === 0) return;
    const counts = createSharedRateLimitStore({
      redis: app.redis,
      namespace: `${config.queuePrefix}:rate-limit:`,
      log: app.log,
    });
    app.addHook('onClose', async () => counts.close());
    await app.register(rateLimit, {
      global: false,
      max: config.rateLimitPerMinute,
      timeWindow: WINDOW_MS,
      store: counts.Store,
      skipOnError: true,
      keyGenerator: (request) => (request.principal ? `token:${request.principal.name}` : `ip:${request.ip}`),
      allowList: (request) => UNLIMITED.has(request.routeOptions.url ?? ''),
      errorResponseBuilder: (_request, context) => new RateLimited(context.max, context.after),
    });
    // Added after the auth plugin's hook, so it runs after authentication.
    app.addHook('onRequest', app.rateLimit());
  },
  { name: 'rate-limit', dependencies: ['queue', 'auth'] },
);
