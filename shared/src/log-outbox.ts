import { randomUUID } from 'node:crypto';
import type { RedisClient } from './redis.js';
import type { Logger } from 'pino';
import { isTerminal } from './job.js';
import type { LogEntry, LogRepository } from './log-repository.js';

/** Rows written to MySQL in one INSERT at most. */
const BATCH_SIZE = 200;
/** A write waits this long for others to join its INSERT. */
const BATCH_WINDOW_MS = 3;
const LOCK_TTL_MS = 5_000;
const MAX_BACKOFF_MS = 5_000;
/** Rows recorded while another drainer holds the lock: looked at again this soon, this many times. */
const BUSY_RETRY_MS = 50;
const BUSY_RETRIES = 20;
const MARKER_TTL_SECONDS = 30 * 86_400;

// Trims the drained rows only while this drainer still holds the lock, so two
// drainers can never drop each other's rows.
const TRIM_IF_OWNER = `
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
  return 1
end
return 0`;

// Appends a finished job's rows and marks it finished, together. A script rather than MULTI:
// ioredis builds each MULTI as a pipeline that copies every script BullMQ defined on the
// connection, which cost a submission more than its queue add.
const RECORD_FINISHED = `
redis.call('SET', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[2]))
return redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))`;

const RELEASE_IF_OWNER = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface LogOutboxOptions {
  redis: RedisClient;
  prefix: string;
  logStore: LogRepository;
  logger: Pick<Logger, 'warn' | 'info' | 'error'>;
}

/**
 * The way to the log table for the workers and for the API's submissions (every job's `queued`
 * row) and cancels. Transitions are first appended to a list
 * in Redis (durable with AOF, shared by every worker, so their order is kept),
 * then moved to MySQL in multi-row INSERTs by whichever worker holds the drain
 * lock. While MySQL is down they wait in Redis and land, in order, when it
 * returns; a retried INSERT changes nothing thanks to the log's unique keys.
 */
export function createLogOutbox({ redis, prefix, logStore, logger }: LogOutboxOptions) {
  const listKey = `${prefix}:log-outbox`;
  const lockKey = `${prefix}:log-outbox:lock`;
  const owner = randomUUID();
  const markerKey = (jobId: string) => `${prefix}:log-outbox:finished:${jobId}`;

  let stopped = false;
  let wake: (() => void) | null = null;
  let pending = false;
  let loop: Promise<void> | null = null;
  let failures = 0;

  function poke(): void {
    pending = true;
    wake?.();
  }

  async function sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, ms);
      function finish() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = finish;
    });
  }

  /**
   * Moves one batch to MySQL; returns how many rows it moved (0: nothing to do, the lock released),
   * or null when another drainer holds the lock.
   */
  async function drainBatch(): Promise<number | null> {
    const locked = await redis.set(lockKey, owner, 'PX', LOCK_TTL_MS, 'NX');
    if (locked !== 'OK' && (await redis.get(lockKey)) !== owner) return null;
    const raw = await redis.lrange(listKey, 0, BATCH_SIZE - 1);
    if (raw.length === 0) {
      await redis.eval(RELEASE_IF_OWNER, 1, lockKey, owner);
      return 0;
    }
    try {
      await logStore.append(raw.map((item) => JSON.parse(item) as LogEntry));
    } catch (err) {
      // Nothing trimmed, so nothing lost: a drainer that can reach MySQL may move them meanwhile.
      await redis.eval(RELEASE_IF_OWNER, 1, lockKey, owner).catch(() => undefined);
      throw err;
    }
    await redis.eval(TRIM_IF_OWNER, 2, listKey, lockKey, owner, raw.length, LOCK_TTL_MS);
    return raw.length;
  }

  async function run(): Promise<void> {
    let busy = 0;
    while (!stopped) {
      if (!pending) await sleep(1000);
      if (stopped) break;
      pending = false;
      await sleep(BATCH_WINDOW_MS);
      try {
        // Until the list is empty (the lock is then released), so rows other processes record
        // while this one drains land now, not at the next tick.
        let moved: number | null;
        do {
          moved = await drainBatch();
        } while (moved !== null && moved > 0 && !stopped);
        if (moved !== null) {
          if (failures > 0) logger.info({ after: failures }, 'log outbox drained again');
          failures = 0;
          busy = 0;
        } else if (busy < BUSY_RETRIES) {
          // Another drainer holds the lock: it may have looked at the list before our rows came.
          busy += 1;
          pending = true;
          await sleep(BUSY_RETRY_MS);
        } else busy = 0;
      } catch (err) {
        failures += 1;
        pending = true;
        const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** Math.min(failures, 6));
        if (failures === 1 || failures % 20 === 0) {
          logger.warn({ err, failures, retryInMs: delay }, 'cannot move log rows to MySQL; keeping them in Redis');
        }
        await sleep(delay);
      }
    }
  }

  return {
    start(): void {
      stopped = false;
      pending = true;
      loop ??= run();
    },

    /** Stops draining; rows not yet moved stay in Redis for the next drainer. */
    async stop(): Promise<void> {
      stopped = true;
      wake?.();
      await loop;
      loop = null;
    },

    /**
     * Records transitions durably (in Redis) and in order. A terminal one also
     * marks the job finished, with `result`, atomically with them.
     */
    async record(entries: readonly LogEntry[], result?: unknown): Promise<void> {
      const now = new Date();
      const stamped = entries.map((entry) => JSON.stringify({ date: now, ...entry }));
      const terminal = entries.find((entry) => entry.jobId && isTerminal(entry.status));
      if (terminal?.jobId) {
        const marker = JSON.stringify({ status: terminal.status, result: result ?? null });
        await redis.eval(
          RECORD_FINISHED,
          2,
          listKey,
          markerKey(terminal.jobId),
          marker,
          MARKER_TTL_SECONDS,
          ...stamped,
        );
      } else {
        // One command: the rows land together or not at all.
        await redis.rpush(listKey, ...stamped);
      }
      poke();
    },

    /** What a finished job recorded, or null: lets a re-run after a crash confirm instead of redo. */
    async finished(jobId: string): Promise<{ status: string; result: unknown } | null> {
      const value = await redis.get(markerKey(jobId));
      return value ? (JSON.parse(value) as { status: string; result: unknown }) : null;
    },

    /** One last attempt to move what is waiting, bounded; what remains stays in Redis. */
    async flush(timeoutMs = 2000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      try {
        while (Date.now() < deadline && ((await drainBatch()) ?? 0) > 0);
      } catch (err) {
        logger.warn({ err }, 'log rows left in Redis for the next worker');
      }
    },

    /** Rows waiting to reach MySQL. */
    async backlog(): Promise<number> {
      return redis.llen(listKey);
    },
  };
}

export type LogOutbox = ReturnType<typeof createLogOutbox>;
