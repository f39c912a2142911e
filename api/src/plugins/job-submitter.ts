import fp from 'fastify-plugin';
import type { CofferConfig } from '@coffer/shared';
import { createJobSubmitter, type JobSubmitter } from '../jobs/submit-job.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Queues a validated, authorised job of any kind (see `createJobSubmitter`). */
    submitJob: JobSubmitter;
  }
}

/** `submitJob`, whose `queued` rows go through the log outbox. */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    app.decorate(
      'submitJob',
      createJobSubmitter({
        config,
        redis: app.redis,
        outbox: app.logOutbox,
        logStore: app.logStore,
        queue: app.backupQueue,
        log: app.log,
      }),
    );
  },
  { name: 'job-submitter', dependencies: ['log-store', 'queue', 'log-outbox'] },
);
