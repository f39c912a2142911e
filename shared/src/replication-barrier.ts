import { createRedis, type RedisClient } from './redis.js';
import type { RedisTarget } from './config.js';
import { settlesWithin } from './settles-within.js';

// Beyond the WAIT's own timeout, how long a caller waits for the round's connection, which may
// still be coming back after a failover (its commands wait for it meanwhile).
const CONNECTION_GRACE_MS = 2000;
// After a round that found too few replicas, how long callers go on without waiting: a primary
// whose replica is gone (the one promoted in its place, say) would otherwise cost every caller
// the whole timeout.
const SHORT_PAUSE_MS = 10_000;

/**
 * Waits until replicas hold what was written to Redis so far: Redis replicates asynchronously,
 * so a write its primary acknowledged and then lost with it never reached the replica that
 * takes over.
 *
 * WAIT only counts the writes of the connection it is sent on, and blocks that connection
 * until it answers; so a round runs on a connection of its own: it writes a counter (after
 * every write made before the round started, in the primary's one replication stream) and
 * WAITs for it, both in one pipeline so that a cluster sends them to the master of the
 * counter's slot. Callers share rounds: one that arrives while a round is in flight joins the
 * next, so a missing replica costs a caller one timeout, not one per caller before it. The
 * connection waits for Redis rather than fail at once (it may be coming back after a failover);
 * a caller waits at most the timeout and two seconds more. A round that finds too few replicas
 * is logged, and for the next ten seconds callers are answered at once with what it found.
 */
export interface ReplicationBarrier {
  /** How many replicas hold every write made before the call (fewer than wanted: see above). */
  reached(): Promise<number>;
  close(): void;
}

export function createReplicationBarrier(options: {
  target: RedisTarget | string;
  /** A key in the slot of the writes to cover (`<prefix>:…` with a cluster's hash tag). */
  key: string;
  replicas: number;
  timeoutMs: number;
  log: { warn(obj: object, msg: string): void };
}): ReplicationBarrier {
  const redis: RedisClient = createRedis(options.target, 'worker');
  redis.on('error', () => undefined);
  let running: Promise<number> | null = null;
  let next: Promise<number> | null = null;
  let short: { held: number; until: number } | null = null;

  async function round(): Promise<number> {
    const results = await redis.pipeline().incr(options.key).wait(options.replicas, options.timeoutMs).exec();
    const failed = results?.find(([err]) => err)?.[0];
    if (!results || failed) throw failed ?? new Error('Redis discarded the WAIT');
    const held = Number(results[1]?.[1] ?? 0);
    if (held < options.replicas) {
      short = { held, until: Date.now() + SHORT_PAUSE_MS };
      options.log.warn(
        { held, wanted: options.replicas },
        `only ${held} of ${options.replicas} Redis replicas acknowledged within ${options.timeoutMs} ms; ` +
          `jobs are accepted without waiting for them for ${SHORT_PAUSE_MS / 1000} s`,
      );
    }
    return held;
  }

  function start(): Promise<number> {
    const current = round().finally(() => {
      running = null;
    });
    running = current;
    return current;
  }

  function join(): Promise<number> {
    if (!running) return start();
    // The round in flight may have written its counter before our writes: wait for the next.
    next ??= running
      .catch(() => 0)
      .then(() => {
        next = null;
        return running ?? start();
      });
    return next;
  }

  return {
    async reached() {
      if (short && Date.now() < short.until) return short.held;
      short = null;
      const pending = join();
      // Past the bound, none is known to hold the writes.
      return (await settlesWithin(pending, options.timeoutMs + CONNECTION_GRACE_MS)) ? pending : 0;
    },
    close() {
      redis.disconnect();
    },
  };
}
