import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import type { CofferConfig } from '@coffer/shared';
import { RateLimited } from '../errors.js';

const WINDOW_MS = 60_000;
const UNLIMITED = new Set(['/health', '/ready']);

/**
 * RATE_LIMIT_PER_MINUTE requests a minute per token (per address on public routes),
 * counted in Redis so the limit holds across API replicas. It runs after authentication, so
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
    await app.register(rateLimit, {
      global: false,
      max: config.rateLimitPerMinute,
      timeWindow: WINDOW_MS,
      redis: app.redis,
      nameSpace: `${config.queuePrefix}:rate-limit:`,
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
