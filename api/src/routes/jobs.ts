import type { FastifyPluginAsync } from 'fastify';
import {
  JOB_KINDS,
  JOB_STATUSES,
  isTerminal,
  jobParameter,
  requestCancel,
  type CofferConfig,
  type JobKind,
  type JobStatus,
  type LogEntry,
} from '@coffer/shared';
import { ANY_ROLE, SUBMITTERS, maySeeJob, seesAllJobs, type Principal } from '../auth/roles.js';
import { JobFinished, JobNotFound, QueueUnavailable } from '../errors.js';
import { createJobLookup } from '../jobs/job-lookup.js';
import type { JobView } from '../jobs/job-view.js';
import { principalOf } from '../plugins/auth.js';
import { cursorQuery, errorResponses, jobIdSchema } from '../schemas.js';

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: jobIdSchema },
} as const;

const QUEUED_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);

const jobRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  const lookup = createJobLookup(app.backupQueue, app.logStore);

  app.get<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'getJob',
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

  app.get<{ Querystring: { status?: JobStatus; kind?: JobKind; limit: number; cursor?: number } }>(
    '/jobs',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'listJobs',
        summary: 'Jobs, newest first',
        description: 'An operator sees only the jobs it submitted.',
        tags: ['jobs'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: JOB_STATUSES },
            kind: { type: 'string', enum: JOB_KINDS },
            ...cursorQuery(100, 20),
          },
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
      const { status, kind, cursor, limit } = request.query;
      const principal = principalOf(request);
      const actor = seesAllJobs(principal) ? undefined : principal.name;
      const page = await app.logStore.jobIds({ status, kind, cursor, limit, actor });
      return { items: await lookup.many(page.items.map((item) => item.jobId)), nextCursor: page.nextCursor };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      config: { access: SUBMITTERS },
      schema: {
        operationId: 'cancelJob',
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

      const where = await requestCancellation(id);
      if (where === 'running') {
        request.log.info({ jobId: id, by: principal.name }, 'cancel requested for running job');
        return reply.code(202).send(view);
      }
      // Recorded before the job leaves the queue: an answer that fails leaves the job queued.
      const cancelled = await recordCancelled(view, principal);
      // remove() refuses a job a worker has just locked; that worker sees the request first thing and cancels it.
      const removed = where === 'lost' || (await app.backupQueue.remove(id).catch(() => 0)) === 1;
      request.log.info({ jobId: id, where, removed, by: principal.name }, 'job cancelled');
      return removed ? reply.code(200).send(cancelled) : reply.code(202).send(view);
    },
  );

  /**
   * Asks for the job to be cancelled (a Redis key every worker checks before it runs a job,
   * and a message to the one running it), then says where it is. A job still waiting after
   * the request can only end cancelled, whoever takes it. 'lost': Redis no longer holds a
   * job the log shows pending; nothing can run it any more.
   */
  async function requestCancellation(id: string): Promise<'waiting' | 'running' | 'lost'> {
    try {
      await requestCancel(app.redis, config.queuePrefix, id);
      const state = await app.backupQueue.getJobState(id);
      if (state === 'unknown') return 'lost';
      return QUEUED_STATES.has(state) ? 'waiting' : 'running';
    } catch (err) {
      throw new QueueUnavailable({ cause: err });
    }
  }

  /**
   * Writes the job's `cancelled` row to the log outbox in Redis, from which it reaches MySQL in
   * order (at once, or when MySQL returns), as the job's other rows do.
   */
  async function recordCancelled(view: JobView, by: Principal): Promise<JobView> {
    const message = `cancelled before it ran, by token "${by.name}"`;
    const entry: LogEntry = {
      action: view.kind,
      parameter: jobParameter(view.kind, view),
      snapshotId: view.snapshot ?? null,
      status: 'cancelled',
      jobId: view.id,
      attempt: Math.max(1, view.attempts),
      worker: config.instanceName,
      code: 'CANCELLED',
      message,
      destination: view.destination,
      // The job's rows all name the token that submitted it; the canceller is in the message.
      actor: view.actor,
    };
    // Through the outbox, as the job's `queued` row went: it lands after that row, never before it.
    await app.logOutbox.record([entry], { code: 'CANCELLED', message }).catch((err: unknown) => {
      throw new QueueUnavailable({ cause: err });
    });
    const finishedAt = new Date().toISOString();
    return { ...view, status: 'cancelled', error: { code: 'CANCELLED', message }, finishedAt };
  }
};

export default jobRoutes;
