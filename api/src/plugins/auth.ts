import fp from 'fastify-plugin';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { CofferConfig } from '@coffer/shared';
import { Forbidden, Unauthenticated } from '../errors.js';
import { ANY_ROLE, accessOf, type Access, type Principal } from '../auth/roles.js';
import { createRevocationList, type RevocationList } from '../auth/revocation-list.js';
import { CONFIG_ADMIN_NAME } from '../auth/token-admin.js';
import {
  createTokenCache,
  listenForRevocations,
  type RevocationListener,
  type TokenCache,
} from '../auth/token-cache.js';
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
    /** The hashes of revoked tokens in Redis, shared by every replica and the command line. */
    revocations: RevocationList;
    /** Tokens MySQL vouched for lately, served without a lookup while revocations reach this process. */
    tokenCache: Pick<TokenCache, 'live' | 'size'>;
  }
}

/** `last_used_at` is written at most this often per token and API process. */
const TOUCH_INTERVAL_MS = 60_000;
/** How often each API process copies MySQL's revocations into Redis and checks its configured token. */
const REVOCATION_SYNC_MS = 60_000;
/** How long `ready` waits for the revocation listener, so the cache serves from the first request. */
const LISTENER_WAIT_MS = 1000;
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
 *
 * While MySQL is unreachable, the configured `API_ADMIN_TOKEN` alone is still accepted, so
 * reads Redis can answer and cancels keep working; but only when the revocation list in Redis
 * says it is not revoked (a revocation by the command line or another replica lands there), and
 * this process's last MySQL answer about it was not a refusal. When Redis cannot tell, 503.
 *
 * A token MySQL vouched for is cached for TOKEN_CACHE_TTL_MS (30 s), so most requests need no
 * lookup; the cache serves only while this process is subscribed to the revocation channel,
 * and every revocation (DELETE /tokens/:id on any replica, the command line, a rotation of the
 * admin token) waits until each subscribed process confirmed it dropped the token (at most
 * REVOCATION_ACK_TIMEOUT_MS, 2 s; a process that did not confirm is logged and forgets the
 * token within the TTL). A cached token therefore also keeps working while MySQL is down.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const configHash = config.apiAdminToken === undefined ? null : hashToken(config.apiAdminToken);
    // What MySQL last said about the configured token: its principal, `refused` (revoked, or
    // rotated away), or null while this process has not asked.
    let configAdmin: Principal | 'refused' | null = null;
    const touched = new Map<number, number>();
    const revocations = createRevocationList(app.redis, config.queuePrefix, {
      onUnconfirmed: (push) =>
        app.log.warn(
          { listeners: push.listeners, confirmed: push.confirmed },
          `${push.listeners - push.confirmed} API process(es) did not confirm a token revocation in time; ` +
            'they stop accepting the token when their cached entry expires (30 s at most)',
        ),
    });
    const cache = createTokenCache();

    const isConfigHash = (tokenHash: string) => configHash !== null && sameHash(tokenHash, configHash);
    const principalOfRecord = (record: TokenRecord): Principal => ({
      id: record.id,
      name: record.name,
      role: record.role,
      sourceRoots: record.sourceRoots,
    });
    /** Remembers MySQL's answer about the configured token. */
    function noteConfigToken(record: TokenRecord | null): void {
      configAdmin = record && !record.revokedAt ? principalOfRecord(record) : 'refused';
      if (configAdmin === 'refused' && configHash !== null) cache.forget(configHash);
    }

    app.decorateRequest('principal', null);
    app.decorate('revocations', revocations);
    app.decorate('tokenCache', cache);
    app.decorate('tokenRevoked', (record: TokenRecord) => {
      touched.delete(record.id);
      cache.revoke(record.tokenHash);
      if (isConfigHash(record.tokenHash)) configAdmin = 'refused';
    });

    // Keeps the list whole: after a Redis that lost it, or a revocation Redis did not take.
    async function syncRevocations(): Promise<void> {
      try {
        await revocations.fill(await app.tokenStore.revokedHashes());
        if (configHash !== null) noteConfigToken(await app.tokenStore.byHash(configHash));
      } catch (err) {
        app.log.warn({ err }, 'cannot copy token revocations from MySQL to Redis; will try again');
      }
    }
    let syncTimer: NodeJS.Timeout | undefined;
    let listener: RevocationListener | undefined;
    app.addHook('onReady', async () => {
      // Revocations made elsewhere: dropped from the cache before the revoking side returns. A
      // Redis Cluster moves a subscription to another node after a failover without telling, so
      // revocations published meanwhile would be missed: no cache there, every check asks.
      const listening = config.redis.mode !== 'cluster';
      listener = listening
        ? listenForRevocations({
            redis: config.redis,
            queuePrefix: config.queuePrefix,
            cache,
            acks: app.redis,
            onRevoked: (tokenHash) => {
              if (isConfigHash(tokenHash)) configAdmin = 'refused';
            },
            log: app.log,
          })
        : undefined;
      await syncRevocations();
      syncTimer = setInterval(() => void syncRevocations(), REVOCATION_SYNC_MS).unref();
      // Without Redis the API still starts; the cache starts serving once subscribed.
      if (listener && app.redis.status === 'ready') {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          listener.subscribed,
          new Promise((resolve) => (timer = setTimeout(resolve, LISTENER_WAIT_MS).unref())),
        ]);
        clearTimeout(timer);
      }
    });
    app.addHook('onClose', async () => {
      clearInterval(syncTimer);
      listener?.close();
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
      const cached = cache.get(tokenHash);
      if (cached) {
        if (cached.id !== null) touch(cached.id, log);
        return cached;
      }
      const generation = cache.generation;
      let record: TokenRecord | null;
      try {
        record = await app.tokenStore.byHash(tokenHash);
      } catch (err) {
        // MySQL is unreachable: every token but the configured one waits for it (503).
        if (!isConfigHash(tokenHash)) throw err;
        return outageFallback(tokenHash, err);
      }
      if (isConfigHash(tokenHash)) noteConfigToken(record);
      // The lookup found the row by its hash; comparing again in constant time costs nothing.
      if (!record || !sameHash(record.tokenHash, tokenHash)) return null;
      if (record.revokedAt) {
        app.tokenRevoked(record);
        return null;
      }
      touch(record.id, log);
      const principal = principalOfRecord(record);
      cache.put(tokenHash, principal, generation);
      return principal;
    }

    /** The configured admin token while MySQL is unreachable: null (401) when known to be refused. */
    async function outageFallback(tokenHash: string, lookupError: unknown): Promise<Principal | null> {
      if (configAdmin === 'refused') return null;
      const status = await revocations.status(tokenHash);
      if (status === 'revoked') {
        configAdmin = 'refused';
        return null;
      }
      if (status === 'unknown') throw lookupError;
      return configAdmin ?? { id: null, name: CONFIG_ADMIN_NAME, role: 'admin', sourceRoots: null };
    }

    app.addHook('onRequest', async (request, reply) => {
      const access: Access = request.is404 ? ANY_ROLE : accessOf(request.routeOptions.config.access);
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
  { name: 'auth', dependencies: ['token-store', 'queue'] },
);
