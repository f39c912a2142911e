import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClient } from '@coffer/shared';

/**
 * A member no SHA-256 hex digest can equal. It is added together with every revocation MySQL
 * knows of, in one command, so while it is there the set lacks no revocation made before that
 * copy; a Redis that lost the set (flushed, restarted without persistence) lacks it too.
 */
const COMPLETE = 'complete';
/** How long a revocation waits for every API replica listening to confirm it dropped the token. */
export const REVOCATION_ACK_TIMEOUT_MS = 2000;
/** Acknowledgement counters outlive any wait for them, then go. */
const ACK_KEY_TTL_MS = 60_000;
const HASH = /^[0-9a-f]{64}$/;

/** What the list says about a token: `unknown` when Redis does not answer or the list is not whole. */
export type RevocationStatus = 'revoked' | 'not-revoked' | 'unknown';

/** How a revocation reached the API replicas that were listening when it was made. */
export interface RevocationPush {
  /** API processes subscribed to the channel when it was published (PUBLISH's answer). */
  listeners: number;
  /** How many of them confirmed they dropped the token from their cache within the bound. */
  confirmed: number;
}

/** The channel every API process listens on for revocations: `<token hash> <nonce>`. */
export function revocationChannel(queuePrefix: string): string {
  return `${queuePrefix}:auth:revoked`;
}

function ackKey(queuePrefix: string, nonce: string): string {
  return `${queuePrefix}:auth:revoked-ack:${nonce}`;
}

/** Reads a message of the revocation channel; null when it is not one. */
export function parseRevocation(message: string): { tokenHash: string; nonce: string } | null {
  const [tokenHash, nonce, ...rest] = message.split(' ');
  if (tokenHash === undefined || nonce === undefined || rest.length > 0 || !HASH.test(tokenHash)) return null;
  return { tokenHash, nonce };
}

/** A listener's confirmation that it dropped the token the message `nonce` named. */
export async function acknowledgeRevocation(redis: RedisClient, queuePrefix: string, nonce: string): Promise<void> {
  const key = ackKey(queuePrefix, nonce);
  const results = await redis.multi().incr(key).pexpire(key, ACK_KEY_TTL_MS).exec();
  const failed = results?.find(([err]) => err)?.[0];
  if (!results || failed) throw failed ?? new Error('the acknowledgement was discarded');
}

export interface RevocationListOptions {
  /** How long `add` waits for listeners' confirmations; REVOCATION_ACK_TIMEOUT_MS by default. */
  ackTimeoutMs?: number;
  /** Told when some listeners did not confirm within the bound. */
  onUnconfirmed?(push: RevocationPush, tokenHash: string): void;
}

/**
 * The hashes of revoked (and rotated-away) tokens, in a Redis set shared by every API replica
 * and the token command line. MySQL stays the authority; this list is what lets an API replica
 * that cannot reach MySQL still refuse a revoked token. Hashes only: a copy of the set lets
 * nobody in.
 *
 * Adding to it also announces the revocation on `revocationChannel`, in the same transaction,
 * to the API processes that cache verified tokens, and waits (at most `ackTimeoutMs`) until
 * every process that received it confirmed it dropped the token: so once `add` resolves, no
 * listening replica accepts the token any more. A replica that does not confirm in time is
 * named by `onUnconfirmed`; its cache forgets the token when its entry expires (TokenCache TTL).
 */
export function createRevocationList(redis: RedisClient, queuePrefix: string, options: RevocationListOptions = {}) {
  const key = `${queuePrefix}:auth:revoked-tokens`;
  const channel = revocationChannel(queuePrefix);
  const ackTimeoutMs = options.ackTimeoutMs ?? REVOCATION_ACK_TIMEOUT_MS;

  async function confirmations(nonce: string, listeners: number): Promise<number> {
    const deadline = Date.now() + ackTimeoutMs;
    let confirmed = 0;
    for (let attempt = 0; ; attempt += 1) {
      try {
        confirmed = Number((await redis.get(ackKey(queuePrefix, nonce))) ?? 0);
      } catch {
        // Redis went away after taking the revocation: the listeners' caches are being cleared.
      }
      if (confirmed >= listeners || Date.now() >= deadline) return confirmed;
      await sleep(Math.min(2 ** attempt, 25));
    }
  }

  return {
    /**
     * Records a revoked token's hash and tells every listening API process; rejects when Redis
     * does not answer (then nothing was recorded nor told).
     */
    async add(tokenHash: string): Promise<RevocationPush> {
      const nonce = randomUUID();
      const results = await redis.multi().sadd(key, tokenHash).publish(channel, `${tokenHash} ${nonce}`).exec();
      const failed = results?.find(([err]) => err)?.[0];
      if (!results || failed) throw failed ?? new Error('Redis discarded the revocation');
      const listeners = Number(results[1]?.[1] ?? 0);
      const push = { listeners, confirmed: listeners === 0 ? 0 : await confirmations(nonce, listeners) };
      if (push.confirmed < push.listeners) options.onUnconfirmed?.(push, tokenHash);
      return push;
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
