import type { FastifyPluginAsync } from 'fastify';
import { JOB_STATUSES, isTerminal, requestCancel, type CofferConfig, type JobStatus } from '@coffer/shared';
import { JobFinished, JobNotFound, QueueUnavailable } from '../errors.js';
import { createJobLookup } from '../jobs/job-lookup.js';
import type { JobView } from '../jobs/job-view.js';
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
      schema: {
        summary: 'One job: status, progress, result or error',
        tags: ['jobs'],
        params: idParams,
        response: { 200: { $ref: 'Job#' }, ...errorResponses(400, 404) },
      },
    },
    async (request) => {
      const view = await lookup.get(request.params.id);
      if (!view) throw new JobNotFound(request.params.id);
      return view;
    },
  );

  app.get<{ Querystring: { status?: JobStatus; limit: number; cursor?: number } }>(
    '/jobs',
    {
      schema: {
        summary: 'Jobs, newest first',
        tags: ['jobs'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { status: { type: 'string', enum: JOB_STATUSES }, ...cursorQuery },
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
          ...errorResponses(400),
        },
      },
    },
    async (request) => {
      const { status, cursor, limit } = request.query;
      const page = await app.logStore.jobIds({ status, cursor, limit: Math.min(limit, 200) });
      return { items: await lookup.many(page.items.map((item) => item.jobId)), nextCursor: page.nextCursor };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      schema: {
        summary: 'Cancel a queued or running job',
        description:
          'A queued job is cancelled at once (200). A running job is asked to stop (202); its copy stops within a second, its partial snapshot is removed and it ends as cancelled.',
        tags: ['jobs'],
        params: idParams,
        response: { 200: { $ref: 'Job#' }, 202: { $ref: 'Job#' }, ...errorResponses(400, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const view = await lookup.get(id);
      if (!view) throw new JobNotFound(id);
      if (isTerminal(view.status)) throw new JobFinished(id, view.status);

      const job = await app.backupQueue.getJob(id);
      if (job && QUEUED_STATES.has(await job.getState())) {
        // remove() refuses a job a worker has just locked; that one is cancelled as running.
        const removed = await job.remove().then(
          () => true,
          () => false,
        );
        if (removed) {
          const cancelled = await recordCancelled(view);
          request.log.info({ jobId: id }, 'queued job cancelled');
          return reply.code(200).send(cancelled);
        }
      } else if (!job) {
        // Redis lost a job the log still shows as pending: nothing can run it any more.
        return reply.code(200).send(await recordCancelled(view));
      }
      try {
        await requestCancel(app.redis, config.queuePrefix, id);
      } catch (err) {
        throw new QueueUnavailable(err instanceof Error ? err.message : String(err));
      }
      request.log.info({ jobId: id }, 'cancel requested for running job');
      return reply.code(202).send(view);
    },
  );

  async function recordCancelled(view: JobView): Promise<JobView> {
    const message = 'cancelled before it ran';
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
    });
    const finishedAt = new Date().toISOString();
    return { ...view, status: 'cancelled', error: { code: 'CANCELLED', message }, finishedAt };
  }
};

export default jobRoutes;
