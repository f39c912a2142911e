import type { Redis } from 'ioredis';
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

export async function requestCancel(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis
    .multi()
    .set(cancelKey(prefix, jobId), '1', 'EX', CANCEL_TTL_SECONDS)
    .publish(cancelChannel(prefix), jobId)
    .exec();
}

export async function isCancelRequested(redis: Redis, prefix: string, jobId: string): Promise<boolean> {
  return (await redis.exists(cancelKey(prefix, jobId))) === 1;
}
