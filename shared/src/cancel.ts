import type { RedisClient } from './redis.js';
import { QUEUE_NAME } from './job.js';

// A cancel request crosses processes through Redis: a key (so a worker that
// picks the job up later still sees it) and a message (so a running copy
// stops at once).
const CANCEL_TTL_SECONDS = 86_400;

export function cancelKey(prefix: string, jobId: string): string {
  return `${prefix}:${QUEUE_NAME}:cancel:${jobId}`;
}

export function cancelChannel(prefix: string): string {
  return `${prefix}:${QUEUE_NAME}:cancel`;
}

export async function requestCancel(redis: RedisClient, prefix: string, jobId: string): Promise<void> {
  await redis
    .multi()
    .set(cancelKey(prefix, jobId), '1', 'EX', CANCEL_TTL_SECONDS)
    .publish(cancelChannel(prefix), jobId)
    .exec();
}

export async function isCancelRequested(redis: RedisClient, prefix: string, jobId: string): Promise<boolean> {
  return (await redis.exists(cancelKey(prefix, jobId))) === 1;
}

// Cancelled jobs end in BullMQ's failed set, beside the failed ones; this sorted set names them
// (scored by time) so metrics can tell the two apart without reading every failed job.
function cancelledKey(prefix: string): string {
  return `${prefix}:${QUEUE_NAME}:cancelled`;
}

/** Notes that a job ended cancelled; entries older than `keepSeconds` (the queue's retention) are dropped. */
export async function noteCancelled(
  redis: RedisClient,
  prefix: string,
  jobId: string,
  keepSeconds: number,
): Promise<void> {
  const now = Date.now();
  await redis
    .multi()
    .zadd(cancelledKey(prefix), now, jobId)
    .zremrangebyscore(cancelledKey(prefix), '-inf', now - keepSeconds * 1000)
    .exec();
}

/** How many of the jobs in the failed set `failedKey` were cancelled rather than failed (Redis 7's ZINTERCARD). */
export async function countCancelledAmongFailed(
  redis: RedisClient,
  prefix: string,
  failedKey: string,
): Promise<number> {
  return Number(await redis.call('ZINTERCARD', 2, failedKey, cancelledKey(prefix)));
}
