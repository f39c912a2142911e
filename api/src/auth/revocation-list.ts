import type { Redis } from 'ioredis';

/**
 * A member no SHA-256 hex digest can equal. It is added together with every revocation MySQL
 * knows of, in one command, so while it is there the set lacks no revocation made before that
 * copy; a Redis that lost the set (flushed, restarted without persistence) lacks it too.
 */
const COMPLETE = 'complete';

/** What the list says about a token: `unknown` when Redis does not answer or the list is not whole. */
export type RevocationStatus = 'revoked' | 'not-revoked' | 'unknown';

/**
 * The hashes of revoked (and rotated-away) tokens, in a Redis set shared by every API replica
 * and the token command line. MySQL stays the authority; this list is what lets an API replica
 * that cannot reach MySQL still refuse a revoked token. Hashes only: a copy of the set lets
 * nobody in.
 */
export function createRevocationList(redis: Redis, queuePrefix: string) {
  const key = `${queuePrefix}:auth:revoked-tokens`;
  return {
    /** Records a revoked token's hash; rejects when Redis does not answer. */
    async add(tokenHash: string): Promise<void> {
      await redis.sadd(key, tokenHash);
    },

    /** Copies every revocation MySQL knows of and marks the list whole, atomically. */
    async fill(tokenHashes: readonly string[]): Promise<void> {
      await redis.sadd(key, COMPLETE, ...tokenHashes);
    },

    /** Never rejects: a Redis that does not answer cannot tell (`unknown`). */
    async status(tokenHash: string): Promise<RevocationStatus> {
      try {
        const [complete, revoked] = await redis.smismember(key, COMPLETE, tokenHash);
        if (revoked === 1) return 'revoked';
        return complete === 1 ? 'not-revoked' : 'unknown';
      } catch {
        return 'unknown';
      }
    },
  };
}

export type RevocationList = ReturnType<typeof createRevocationList>;
