import type { FastifyPluginAsync } from 'fastify';
import { LOG_STATUSES, type LogStatus } from '@coffer/shared';
import { ANY_ROLE, seesAllJobs } from '../auth/roles.js';
import { principalOf } from '../plugins/auth.js';
import { cursorQuery, errorResponses, jobIdSchema } from '../schemas.js';

interface LogsQuery {
  jobId?: string;
  status?: LogStatus;
  since?: string;
  until?: string;
  limit: number;
  cursor?: number;
}

const logRoutes: FastifyPluginAsync = async (app) => {
  app.get<{ Querystring: LogsQuery }>(
    '/logs',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'listLogRows',
        summary: 'Log rows (status transitions), newest first',
        description: 'An operator sees only the rows of its own jobs and requests.',
        tags: ['logs'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            jobId: jobIdSchema,
            status: { type: 'string', enum: [...LOG_STATUSES] },
            since: { type: 'string', format: 'date-time', description: 'Rows at or after this instant' },
            until: { type: 'string', format: 'date-time', description: 'Rows before this instant' },
            ...cursorQuery(1000, 100),
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              items: { type: 'array', items: { $ref: 'LogRow#' } },
              nextCursor: { type: ['integer', 'null'] },
            },
            required: ['items', 'nextCursor'],
          },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const { jobId, status, since, until, limit, cursor } = request.query;
      const principal = principalOf(request);
      return app.logStore.query({
        actor: seesAllJobs(principal) ? undefined : principal.name,
        jobId,
        status,
        since: since === undefined ? undefined : new Date(since),
        until: until === undefined ? undefined : new Date(until),
        cursor,
        limit,
      });
    },
  );
};

export default logRoutes;
