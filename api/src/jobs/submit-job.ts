import { createHash, randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import {
  JobNotQueued,
  queueWithHistory,
  type BackupQueue,
  type CofferConfig,
  type JobItem,
  type LogEntry,
  type LogRepository,
} from '@coffer/shared';
import { IdempotencyKeyReused, QueueUnavailable } from '../errors.js';

const IDEMPOTENCY_TTL_SECONDS = 86_400;

export interface Submission {
  /** The job as it will run, its `actor` set to the submitting token's name. */
  item: JobItem;
  /** The submitting token's name: Idempotency-Keys are per token. */
  actor: string;
  /** The request's Idempotency-Key header, if any. */
  idempotencyKey?: string;
}

export interface Submitted {
  id: string;
  /** True when an earlier request with the same Idempotency-Key made the job. */
  replayed: boolean;
}

export interface SubmitDeps {
  config: Pick<CofferConfig, 'queuePrefix' | 'instanceName'>;
  redis: Redis;
  logStore: Pick<LogRepository, 'append'>;
  queue: Pick<BackupQueue, 'add'>;
  log: FastifyBaseLogger;
}

/**
 * Queues a job of any kind the way every route must: at most once per Idempotency-Key, its
 * `queued` row written before the job exists (so no worker's `active` can precede it), and
 * its history closed with a `failed` row if the queue refuses it. The caller has validated
 * and authorised the request.
 */
export function createJobSubmitter({ config, redis, logStore, queue, log }: SubmitDeps) {
  // Keys are per token: another token's key neither replays nor reveals this one's job.
  const idempotencyKey = (actor: string, key: string) =>
    `${config.queuePrefix}:idempotency:${createHash('sha256').update(actor).update('\0').update(key).digest('hex')}`;

  /** Claims the key for `id`; returns the id of the job an earlier request claimed it for, if any. */
  async function claim(actor: string, key: string, item: JobItem, id: string): Promise<string | null> {
    // The whole request as it will run: another spelling of the same body is the same request.
    const fingerprint = createHash('sha256').update(JSON.stringify(item)).digest('hex');
    let stored: string | null;
    try {
      const claimed = await redis.set(
        idempotencyKey(actor, key),
        `${fingerprint} ${id}`,
        'EX',
        IDEMPOTENCY_TTL_SECONDS,
        'NX',
      );
      stored = claimed === 'OK' ? null : await redis.get(idempotencyKey(actor, key));
    } catch (err) {
      throw new QueueUnavailable({ cause: err });
    }
    if (stored === null) return null;
    const [storedFingerprint, storedId] = stored.split(' ');
    if (storedFingerprint !== fingerprint || !storedId) throw new IdempotencyKeyReused(key);
    return storedId;
  }

  return async function submit({ item, actor, idempotencyKey: key }: Submission): Promise<Submitted> {
    const id = randomUUID();
    if (key !== undefined) {
      const earlier = await claim(actor, key, item, id);
      if (earlier !== null) return { id: earlier, replayed: true };
    }
    const forget = async () => {
      if (key !== undefined) await redis.del(idempotencyKey(actor, key)).catch(() => undefined);
    };

    const sinks = {
      record: (entry: LogEntry) => logStore.append(entry),
      add: (queued: JobItem, jobId: string) => queue.add(queued.name, queued.data, { jobId }),
      unrecorded: (err: unknown) => log.error({ err, jobId: id }, 'cannot close the history of an unqueued job'),
    };
    try {
      await queueWithHistory(sinks, item, id, config.instanceName);
    } catch (err) {
      await forget();
      throw err instanceof JobNotQueued ? new QueueUnavailable({ cause: err.cause }) : err;
    }
    log.info({ jobId: id, kind: item.name, destination: item.data.destination }, `${item.name} queued`);
    return { id, replayed: false };
  };
}

export type JobSubmitter = ReturnType<typeof createJobSubmitter>;
