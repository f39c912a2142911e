import { createSubscriber, type RedisClient, type RedisTarget } from '@coffer/shared';
import { acknowledgeRevocation, parseRevocation, revocationChannel } from './revocation-list.js';
import type { Principal } from './roles.js';

/** How long a token MySQL vouched for is accepted without asking again. */
export const TOKEN_CACHE_TTL_MS = 30_000;
/** Most tokens remembered per API process; the oldest go first. */
export const TOKEN_CACHE_MAX_ENTRIES = 10_000;
/** How long a revoked hash is kept from the cache: past any lookup or rotation still under way. */
const REVOKED_MEMORY_MS = 5 * 60_000;

interface Entry {
  principal: Principal;
  expiresAt: number;
}

/**
 * Tokens MySQL said are valid, by hash, for TOKEN_CACHE_TTL_MS, so a request with a known token
 * needs no lookup. Only valid tokens are kept: an unknown one is always looked up, so a token
 * works the moment it is created.
 *
 * It is only as good as the revocations it hears of (see `listenForRevocations`), so it answers
 * only while it is `live`: subscribed to the revocation channel. Losing the subscription empties
 * it, and a lookup that started before a revocation or a lost subscription (the `generation`
 * it was given) cannot put its now stale answer in; a revoked hash is kept out for minutes.
 */
export function createTokenCache(options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {}) {
  const ttlMs = options.ttlMs ?? TOKEN_CACHE_TTL_MS;
  const maxEntries = options.maxEntries ?? TOKEN_CACHE_MAX_ENTRIES;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();
  const revoked = new Map<string, number>();
  let generation = 0;
  let live = false;

  function forgetOldRevocations(at: number): void {
    // Insertion order is expiry order: stop at the first one still to keep.
    for (const [hash, until] of revoked) {
      if (until > at) break;
      revoked.delete(hash);
    }
  }

  return {
    /** Whether hits are served: only while revocations reach this process. */
    get live(): boolean {
      return live;
    },
    get size(): number {
      return entries.size;
    },
    /** Taken before a lookup, handed to `put` after it. */
    get generation(): number {
      return generation;
    },

    get(tokenHash: string): Principal | undefined {
      if (!live) return undefined;
      const entry = entries.get(tokenHash);
      if (!entry) return undefined;
      if (entry.expiresAt <= now()) {
        entries.delete(tokenHash);
        return undefined;
      }
      return entry.principal;
    },

    /** Remembers what MySQL said, unless something happened since the lookup began. */
    put(tokenHash: string, principal: Principal, lookupGeneration: number): void {
      if (!live || lookupGeneration !== generation || revoked.has(tokenHash)) return;
      entries.delete(tokenHash);
      if (entries.size >= maxEntries) {
        const oldest = entries.keys().next();
        if (!oldest.done) entries.delete(oldest.value);
      }
      entries.set(tokenHash, { principal, expiresAt: now() + ttlMs });
    },

    /** Drops a token MySQL no longer vouches for. */
    forget(tokenHash: string): void {
      entries.delete(tokenHash);
    },

    /** Drops a revoked token for good, and voids lookups under way. */
    revoke(tokenHash: string): void {
      const at = now();
      forgetOldRevocations(at);
      entries.delete(tokenHash);
      revoked.delete(tokenHash);
      revoked.set(tokenHash, at + REVOKED_MEMORY_MS);
      while (revoked.size > maxEntries) {
        const oldest = revoked.keys().next();
        if (oldest.done) break;
        revoked.delete(oldest.value);
      }
      generation += 1;
    },

    /** Subscribed (true) or not: losing the subscription forgets everything. */
    setLive(value: boolean): void {
      if (!value) {
        entries.clear();
        generation += 1;
      }
      live = value;
    },
  };
}

export type TokenCache = ReturnType<typeof createTokenCache>;

export interface RevocationListener {
  /** Resolves once the first subscription is in place. */
  subscribed: Promise<void>;
  close(): void;
}

/**
 * Keeps `cache` in step with revocations made anywhere (another replica's DELETE /tokens/:id,
 * the command line, a rotation of the admin token): a subscriber connection of its own hears
 * them, drops the token, then confirms on `acks` (a connection that can send commands), so the
 * revoking side knows it may return. The cache is live only while subscribed: from the
 * subscription's confirmation to the connection's loss, when it is emptied.
 */
export function listenForRevocations(options: {
  redis: RedisTarget;
  queuePrefix: string;
  cache: TokenCache;
  /** Where confirmations are sent. */
  acks: RedisClient;
  onRevoked(tokenHash: string): void;
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}): RevocationListener {
  const { cache, log, queuePrefix } = options;
  const channel = revocationChannel(queuePrefix);
  let closed = false;
  let resolveSubscribed: () => void = () => undefined;
  const subscribed = new Promise<void>((resolve) => {
    resolveSubscribed = resolve;
  });
  // The subscription's confirmation arrives on the connection that hears revocations, so once
  // it is in (again, after each reconnection), every later revocation reaches us.
  const subscriber = createSubscriber(options.redis, channel, {
    subscribed() {
      if (closed || subscriber.status !== 'ready') return;
      cache.setLive(true);
      resolveSubscribed();
    },
    failed: (err) => log.warn({ err }, 'revocation listener cannot subscribe; tokens are looked up every time'),
  });

  subscriber.on('error', (err: Error) =>
    log.debug({ err: err.message }, 'revocation listener: redis connection error'),
  );
  const lose = () => {
    if (cache.live) log.debug({}, 'revocation listener lost its subscription; the token cache is emptied');
    cache.setLive(false);
  };
  subscriber.on('close', lose);
  subscriber.on('reconnecting', lose);
  subscriber.on('end', lose);
  subscriber.on('message', (from: string, message: string) => {
    if (from !== channel) return;
    const revocation = parseRevocation(message);
    if (!revocation) return;
    cache.revoke(revocation.tokenHash);
    options.onRevoked(revocation.tokenHash);
    acknowledgeRevocation(options.acks, queuePrefix, revocation.nonce).catch((err: unknown) =>
      log.warn({ err }, 'cannot confirm a token revocation; the revoking side will wait for it'),
    );
  });

  return {
    subscribed,
    close() {
      closed = true;
      cache.setLive(false);
      subscriber.disconnect();
    },
  };
}
