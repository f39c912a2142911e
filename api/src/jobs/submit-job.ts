import { createHash, randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import {
  JobNotQueued,
  queueWithHistory,
  type BackupQueue,
  type CofferConfig,
  type JobItem,
  type LogEntry,
  type LogOutbox,
  type LogRepository,
  type ReplicationBarrier,
  type RedisClient,
} from '@coffer/shared';
import { IdempotencyKeyReused, QueueUnavailable } from '../errors.js';

const IDEMPOTENCY_TTL_SECONDS = 86_400;

/** The producer connection refused a command it never sent (Redis was already away): it cannot have run. */
const neverSent = (err: unknown): boolean =>
  err instanceof Error && err.message.includes("Stream isn't writeable and enableOfflineQueue options is false");

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
  /** With REDIS_WAIT_REPLICAS: tells when replicas hold the job. */
  replication?: ReplicationBarrier;
  redis: RedisClient;
  /** The log outbox in Redis: a job's `queued` row goes here, so no MySQL is needed to queue it. */
  outbox: Pick<LogOutbox, 'record'>;
  /** MySQL, only for the `failed` row of a job the queue refused while the outbox is unreachable too. */
  logStore: Pick<LogRepository, 'append'>;
  queue: Pick<BackupQueue, 'add'>;
  log: FastifyBaseLogger;
}

/**
 * Queues a job of any kind the way every route must: at most once per Idempotency-Key, its
 * `queued` row written before the job exists (so no worker's `active` can precede it), and
 * its history closed with a `failed` row if the queue refuses it. The caller has validated
 * and authorised the request.
 *
 * The `queued` row goes to the log outbox in Redis, the list the workers write their rows to and
 * that is moved to MySQL in order: its RPUSH completes before the job is added, so a worker's
 * `active` row, pushed to the same list only once it holds the job, lands after it. Queueing
 * needs Redis only; MySQL may be away, and the row lands when it returns.
 */
export function createJobSubmitter({ config, redis, outbox, logStore, queue, replication, log }: SubmitDeps) {
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

  /**
   * With REDIS_WAIT_REPLICAS, waits until that many replicas hold the job, so a primary lost
   * right after it cannot take an accepted job with it. The job is queued either way: when
   * replicas are too slow or missing (logged by the barrier), the answer is still 202 (a 503
   * would be retried as a new job).
   */
  async function replicated(jobId: string): Promise<void> {
    await replication?.reached().catch((err: unknown) => {
      log.warn({ err, jobId }, 'cannot ask Redis whether its replicas hold the job');
    });
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
      record: async (entry: LogEntry) => {
        try {
          await outbox.record([entry]);
        } catch (err) {
          if (entry.status !== 'queued') {
            // The `failed` row of a refused job: MySQL rather than nothing, or the job would look
            // queued forever once its `queued` row lands (its terminal row outranks it whatever the order).
            await logStore.append(entry);
            return;
          }
          // Without the `queued` row nothing is queued: Redis is away, and so is the queue. If the
          // push may have run (the connection dropped with it in flight), the row may land later:
          // its history is closed in MySQL, so it cannot look queued forever.
          if (!neverSent(err)) {
            const reason = err instanceof Error ? err.message : String(err);
            await logStore
              .append({ ...entry, status: 'failed', code: 'QUEUE_UNAVAILABLE', message: `not queued: ${reason}` })
              .catch((recordErr: unknown) =>
                log.error({ err: recordErr, jobId: id }, 'cannot close the history of an unqueued job'),
              );
          }
          throw new QueueUnavailable({ cause: err });
        }
      },
      add: (queued: JobItem, jobId: string) => queue.add(queued.name, queued.data, { jobId }),
      unrecorded: (err: unknown) => log.error({ err, jobId: id }, 'cannot close the history of an unqueued job'),
    };
    try {
      await queueWithHistory(sinks, item, id, config.instanceName);
    } catch (err) {
      await forget();
      throw err instanceof JobNotQueued ? new QueueUnavailable({ cause: err.cause }) : err;
    }
    await replicated(id);
    log.info({ jobId: id, kind: item.name, destination: item.data.destination }, `${item.name} queued`);
    return { id, replayed: false };
  };
}

export type JobSubmitter = ReturnType<typeof createJobSubmitter>;
