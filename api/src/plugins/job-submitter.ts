import fp from 'fastify-plugin';
import { createReplicationBarrier, type CofferConfig } from '@coffer/shared';
import { createJobSubmitter, type JobSubmitter } from '../jobs/submit-job.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Queues a validated, authorised job of any kind (see `createJobSubmitter`). */
    submitJob: JobSubmitter;
  }
}

/** The longest a submission waits for replicas to hold its job (REDIS_WAIT_REPLICAS). */
const REPLICA_WAIT_MS = 1000;

/** `submitJob`, whose `queued` rows go through the log outbox. */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const replication =
      config.redisWaitReplicas > 0
        ? createReplicationBarrier({
            target: config.redis,
            key: `${config.queuePrefix}:replicated`,
            replicas: config.redisWaitReplicas,
            timeoutMs: REPLICA_WAIT_MS,
            log: app.log,
          })
        : undefined;
    app.addHook('onClose', () => replication?.close());
    app.decorate(
      'submitJob',
      createJobSubmitter({
        config,
        redis: app.redis,
        outbox: app.logOutbox,
        logStore: app.logStore,
        queue: app.backupQueue,
        replication,
        log: app.log,
      }),
    );
  },
  { name: 'job-submitter', dependencies: ['log-store', 'queue', 'log-outbox'] },
);
