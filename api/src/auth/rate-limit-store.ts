import type { FastifyRateLimitOptions, FastifyRateLimitStore } from '@fastify/rate-limit';
import type { RedisClient } from '@coffer/shared';

/** How often each API process adds its local counts to Redis and learns the shared ones back. */
export const RATE_LIMIT_SYNC_MS = 250;
/** Counters of windows this long gone are dropped. */
const KEPT_WINDOWS = 1;

/**
 * How many requests of one key a process may admit without asking Redis between two syncs:
 * 2% of the limit (none below a limit of 50, so small limits stay exact). It is also the most
 * each other replica can add beyond the limit (see createSharedRateLimitStore).
 */
export function localAllowance(max: number): number {
  return Math.floor(max / 50);
}

interface Counter {
  /** The fixed window (number since the epoch) these counts belong to, and its length. */
  window: number;
  timeWindow: number;
  /** The shared count as Redis last answered it: every replica's synced requests. */
  known: number;
  /** Requests this process counted and has not sent yet. */
  pending: number;
  /** Requests this process sent and Redis has not answered for yet. */
  inflight: number;
}

type Result = { current: number; ttl: number };
type Callback = (error: Error | null, result?: Result) => void;

export interface SharedRateLimitStoreOptions {
  redis: RedisClient;
  /** Prefix of the Redis keys: `<namespace><key>:<window>`. */
  namespace: string;
  syncIntervalMs?: number;
  log: { debug(obj: object, msg: string): void };
}

export interface SharedRateLimitStore {
  /** The class @fastify/rate-limit instantiates (its `store` option). */
  Store: new (options: FastifyRateLimitOptions) => FastifyRateLimitStore;
  /** Sends what is pending now (tests, shutdown). */
  flush(): Promise<void>;
  close(): void;
}

/**
 * A store for @fastify/rate-limit that counts in fixed windows (aligned on the epoch, so every
 * replica agrees on them), locally, and reconciles with a counter per key and window in Redis
 * in one pipelined round trip per sync interval S for all the keys that changed.
 *
 * A request is decided from the last shared count Redis gave plus this process's own counts
 * not yet sent. Far from the limit that needs no round trip, as long as fewer than A =
 * localAllowance(max) requests of the key are pending; near it (the last A requests of the
 * window) or with A pending, the request itself is sent (INCRBY) and decided on Redis's answer,
 * exact for everything already synced. Known-over requests are refused locally.
 *
 * Stated error: with R replicas, a key admits at most `max + (R − 1) × A` requests a window
 * (A ≈ 2% of the limit; 0 below a limit of 50, which makes small limits exact, as before), and
 * each other replica's excess is also at most what it admits in one S (250 ms): the requests
 * it admitted while its view of the shared count was stale.
 *
 * While Redis does not answer the counts are dropped and a request that has to ask fails, which
 * the plugin's `skipOnError` lets through: the limit fails open.
 */
export function createSharedRateLimitStore(options: SharedRateLimitStoreOptions): SharedRateLimitStore {
  const { redis, namespace, log } = options;
  const syncIntervalMs = options.syncIntervalMs ?? RATE_LIMIT_SYNC_MS;
  const counters = new Map<string, Counter>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const redisKey = (key: string, window: number) => `${namespace}${key}:${window}`;

  function counterOf(key: string, window: number, timeWindow: number): Counter {
    let counter = counters.get(key);
    if (!counter || counter.window !== window || counter.timeWindow !== timeWindow) {
      // A new window starts from nothing; what the old one had pending no longer matters.
      counter = { window, timeWindow, known: 0, pending: 0, inflight: 0 };
      counters.set(key, counter);
    }
    return counter;
  }

  function schedule(): void {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, syncIntervalMs).unref();
  }

  /** Adds `count` to the shared counter and keeps it one window past its end (for late clocks). */
  function add(
    pipeline: ReturnType<RedisClient['pipeline']>,
    key: string,
    counter: Counter,
    count: number,
    now: number,
  ) {
    const name = redisKey(key, counter.window);
    return pipeline.incrby(name, count).pexpire(name, (counter.window + 2) * counter.timeWindow - now);
  }

  /** Sends `count` requests of `key` now; resolves to the shared count after them. */
  async function send(key: string, counter: Counter, count: number): Promise<number> {
    const results = await add(redis.pipeline(), key, counter, count, Date.now()).exec();
    const [err, total] = results?.[0] ?? [new Error('Redis discarded the rate-limit count'), null];
    if (err) throw err;
    return Number(total);
  }

  async function flush(): Promise<void> {
    const now = Date.now();
    const batch: { counter: Counter; count: number }[] = [];
    const pipeline = redis.pipeline();
    for (const [key, counter] of counters) {
      if (counter.window < Math.floor(now / counter.timeWindow) - KEPT_WINDOWS) {
        if (counter.inflight === 0) counters.delete(key);
        continue;
      }
      if (counter.pending === 0) continue;
      batch.push({ counter, count: counter.pending });
      add(pipeline, key, counter, counter.pending, now);
      counter.inflight += counter.pending;
      counter.pending = 0;
    }
    if (batch.length === 0) return;
    let results: [Error | null, unknown][] | null = null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      log.debug({ err }, 'cannot sync rate-limit counts with Redis; they are dropped');
    }
    batch.forEach(({ counter, count }, i) => {
      counter.inflight -= count;
      const [err, total] = results?.[i * 2] ?? [null, null];
      if (!err && total !== null) counter.known = Math.max(counter.known, Number(total));
    });
  }

  class Store implements FastifyRateLimitStore {
    incr(key: string, callback: Callback, timeWindow: number, max: number): void {
      const now = Date.now();
      const window = Math.floor(now / timeWindow);
      const ttl = (window + 1) * timeWindow - now;
      const counter = counterOf(key, window, timeWindow);
      // Also drops the counters of past windows.
      schedule();
      const allowance = localAllowance(max);
      // Every request in here was made: the shared count is at least this.
      const atLeast = counter.known + counter.pending + counter.inflight + 1;
      if (atLeast > max || (atLeast <= max - allowance && counter.pending < allowance)) {
        // Over for sure, or far enough from the limit: decided here, sent with the next sync.
        counter.pending += 1;
        callback(null, { current: atLeast, ttl });
        return;
      }
      const count = counter.pending + 1;
      counter.pending = 0;
      counter.inflight += count;
      send(key, counter, count).then(
        (total) => {
          counter.inflight -= count;
          counter.known = Math.max(counter.known, total);
          callback(null, { current: total, ttl });
        },
        (err: unknown) => {
          counter.inflight -= count;
          callback(err instanceof Error ? err : new Error(String(err)));
        },
      );
    }

    child(): FastifyRateLimitStore {
      // Routes declare no limits of their own; one store counts for the whole app.
      return this;
    }
  }

  return {
    Store,
    flush,
    close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
