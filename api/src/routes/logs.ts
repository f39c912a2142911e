import type { FastifyPluginAsync } from 'fastify';
import { JOB_STATUSES, type LogStatus } from '@coffer/shared';
import { cursorQuery, errorResponses } from '../schemas.js';

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
      schema: {
        summary: 'Log rows (status transitions), newest first',
        tags: ['logs'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            jobId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
            status: { type: 'string', enum: [...JOB_STATUSES, 'rejected'] },
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
          ...errorResponses(400),
        },
      },
    },
    async (request) => {
      const { jobId, status, since, until, limit, cursor } = request.query;
      return app.logStore.query({
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
