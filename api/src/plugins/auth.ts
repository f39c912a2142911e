import fp from 'fastify-plugin';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { CofferConfig } from '@coffer/shared';
import { Forbidden, Unauthenticated } from '../errors.js';
import { ADMIN_ONLY, ANY_ROLE, type Access, type Principal } from '../auth/roles.js';
import { CONFIG_ADMIN_NAME } from '../auth/token-admin.js';
import type { TokenRecord } from '../auth/token-repository.js';
import { bearerToken, hashToken, sameHash } from '../auth/token-secret.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route; undeclared means admins only. */
    access?: Access;
  }
  interface FastifyRequest {
    /** The authenticated token; null on public routes. */
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** Tells authentication a token was just revoked here. */
    tokenRevoked(record: TokenRecord): void;
  }
}

/** `last_used_at` is written at most this often per token and API process. */
const TOUCH_INTERVAL_MS = 60_000;
const DOCS_PREFIX = '/docs';

/** The authenticated token of a request on a protected route. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new Unauthenticated('this route needs a token: send "Authorization: Bearer <token>"');
  return request.principal;
}

/**
 * Bearer-token authentication and role checks for every route, before the body is read.
 * Routes declare who may call them in `config.access`; the docs UI's routes (registered by
 * a plugin) get theirs here. Unknown routes need any valid token, so they reveal nothing.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const configHash = config.apiAdminToken === undefined ? null : hashToken(config.apiAdminToken);
    let configTokenRevoked = false;
    const touched = new Map<number, number>();

    app.decorateRequest('principal', null);
    app.decorate('tokenRevoked', (record: TokenRecord) => {
      touched.delete(record.id);
      if (configHash !== null && sameHash(record.tokenHash, configHash)) configTokenRevoked = true;
    });

    app.addHook('onRoute', (route) => {
      if (route.url === DOCS_PREFIX || route.url?.startsWith(`${DOCS_PREFIX}/`)) {
        route.config = { ...route.config, access: config.docsPublic ? 'public' : ANY_ROLE };
      }
    });

    function touch(id: number, log: FastifyBaseLogger): void {
      const now = Date.now();
      if (now - (touched.get(id) ?? 0) < TOUCH_INTERVAL_MS) return;
      touched.set(id, now);
      app.tokenStore.touch(id).catch((err: unknown) => log.debug({ err }, 'cannot record the use of a token'));
    }

    async function authenticate(token: string, log: FastifyBaseLogger): Promise<Principal | null> {
      const tokenHash = hashToken(token);
      let record: TokenRecord | null;
      try {
        record = await app.tokenStore.byHash(tokenHash);
      } catch (err) {
        // MySQL is unreachable. The configured admin token needs no lookup, so it keeps the
        // reads Redis can answer (and cancels) working through the outage; every other token
        // waits for MySQL (503).
        if (configHash !== null && !configTokenRevoked && sameHash(tokenHash, configHash)) {
          return { id: null, name: CONFIG_ADMIN_NAME, role: 'admin', sourceRoots: null };
        }
        throw err;
      }
      // The lookup found the row by its hash; comparing again in constant time costs nothing.
      if (!record || !sameHash(record.tokenHash, tokenHash)) return null;
      if (record.revokedAt) {
        app.tokenRevoked(record);
        return null;
      }
      touch(record.id, log);
      return { id: record.id, name: record.name, role: record.role, sourceRoots: record.sourceRoots };
    }

    app.addHook('onRequest', async (request, reply) => {
      const access: Access = request.is404 ? ANY_ROLE : (request.routeOptions.config.access ?? ADMIN_ONLY);
      if (access === 'public') return;
      const token = bearerToken(request.headers.authorization);
      if (token === null) {
        void reply.header('www-authenticate', 'Bearer realm="coffer"');
        throw new Unauthenticated('this route needs a token: send "Authorization: Bearer <token>"');
      }
      const principal = await authenticate(token, request.log);
      if (!principal) {
        request.log.info('refused a request with an unknown or revoked token');
        void reply.header('www-authenticate', 'Bearer realm="coffer", error="invalid_token"');
        throw new Unauthenticated('the token is unknown or revoked');
      }
      request.principal = principal;
      if (!access.includes(principal.role)) {
        void reply.header('www-authenticate', 'Bearer realm="coffer", error="insufficient_scope"');
        throw new Forbidden(
          `token "${principal.name}" (${principal.role}) may not ${request.method} ${request.routeOptions.url ?? request.url}; allowed: ${access.join(', ')}`,
        );
      }
    });
  },
  { name: 'auth', dependencies: ['token-store'] },
);
