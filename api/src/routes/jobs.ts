import type { FastifyPluginAsync } from 'fastify';
import { JOB_STATUSES, isTerminal, requestCancel, type CofferConfig, type JobStatus } from '@coffer/shared';
import { ANY_ROLE, SUBMITTERS, maySeeJob, seesAllJobs, type Principal } from '../auth/roles.js';
import { JobFinished, JobNotFound, QueueUnavailable } from '../errors.js';
import { createJobLookup } from '../jobs/job-lookup.js';
import type { JobView } from '../jobs/job-view.js';
import { principalOf } from '../plugins/auth.js';
import { cursorQuery, errorResponses } from '../schemas.js';

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
} as const;

const QUEUED_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);

const jobRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  const lookup = createJobLookup(app.backupQueue, app.logStore);

  app.get<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      config: { access: ANY_ROLE },
      schema: {
        summary: 'One job: status, progress, result or error',
        description: "An operator sees only the jobs it submitted; others' are 404, as if unknown.",
        tags: ['jobs'],
        params: idParams,
        response: { 200: { $ref: 'Job#' }, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const view = await lookup.get(request.params.id);
      if (!view || !maySeeJob(principalOf(request), view.actor)) throw new JobNotFound(request.params.id);
      return view;
    },
  );

  app.get<{ Querystring: { status?: JobStatus; limit: number; cursor?: number } }>(
    '/jobs',
    {
      config: { access: ANY_ROLE },
      schema: {
        summary: 'Jobs, newest first',
        description: 'An operator sees only the jobs it submitted.',
        tags: ['jobs'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { status: { type: 'string', enum: JOB_STATUSES }, ...cursorQuery(100, 20) },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              items: { type: 'array', items: { $ref: 'Job#' } },
              nextCursor: { type: ['integer', 'null'] },
            },
            required: ['items', 'nextCursor'],
          },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const { status, cursor, limit } = request.query;
      const principal = principalOf(request);
      const actor = seesAllJobs(principal) ? undefined : principal.name;
      const page = await app.logStore.jobIds({ status, cursor, limit, actor });
      return { items: await lookup.many(page.items.map((item) => item.jobId)), nextCursor: page.nextCursor };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      config: { access: SUBMITTERS },
      schema: {
        summary: 'Cancel a queued or running job',
        description:
          'A queued job is cancelled at once (200). A running job is asked to stop (202); its copy stops within a second, its partial snapshot is removed and it ends as cancelled.',
        tags: ['jobs'],
        params: idParams,
        response: {
          200: { $ref: 'Job#' },
          202: { $ref: 'Job#' },
          ...errorResponses(400, 401, 403, 404, 409, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const principal = principalOf(request);
      const view = await lookup.get(id);
      if (!view || !maySeeJob(principal, view.actor)) throw new JobNotFound(id);
      if (isTerminal(view.status)) throw new JobFinished(id, view.status);

      let outcome: 'removed' | 'lost' | 'signalled';
      try {
        outcome = await cancelInQueue(id);
      } catch (err) {
        throw new QueueUnavailable({ cause: err });
      }
      if (outcome === 'signalled') {
        request.log.info({ jobId: id, by: principal.name }, 'cancel requested for running job');
        return reply.code(202).send(view);
      }
      // A queued job removed now, or one Redis lost while the log shows it pending: nothing can run it any more.
      request.log.info({ jobId: id, outcome, by: principal.name }, 'job cancelled');
      return reply.code(200).send(await recordCancelled(view, principal));
    },
  );

  async function cancelInQueue(id: string): Promise<'removed' | 'lost' | 'signalled'> {
    const job = await app.backupQueue.getJob(id);
    if (!job) return 'lost';
    if (QUEUED_STATES.has(await job.getState())) {
      // remove() refuses a job a worker has just locked; that one is cancelled as running.
      const removed = await job.remove().then(
        () => true,
        () => false,
      );
      if (removed) return 'removed';
    }
    await requestCancel(app.redis, config.queuePrefix, id);
    return 'signalled';
  }

  async function recordCancelled(view: JobView, by: Principal): Promise<JobView> {
    const message = `cancelled before it ran, by token "${by.name}"`;
    await app.logStore.append({
      action: 'backup',
      parameter: view.source,
      status: 'cancelled',
      jobId: view.id,
      attempt: Math.max(1, view.attempts),
      worker: config.instanceName,
      code: 'CANCELLED',
      message,
      destination: view.destination,
      // The job's rows all name the token that submitted it; the canceller is in the message.
      actor: view.actor,
    });
    const finishedAt = new Date().toISOString();
    return { ...view, status: 'cancelled', error: { code: 'CANCELLED', message }, finishedAt };
  }
};

export default jobRoutes;
