import { STATUS_CODES } from 'node:http';
import fp from 'fastify-plugin';
import type { FastifyError, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { jobParameter, type CofferConfig, type JobKind, type LogEntry } from '@coffer/shared';
import { FRAMEWORK_CODES, LogUnavailable, QueueUnavailable } from '../errors.js';

/** Ajv's words for one issue, plus what they leave out: the property not allowed, the values allowed. */
function issueMessage({ keyword, params, message }: FastifySchemaValidationError): string {
  if (keyword === 'enum' && Array.isArray(params.allowedValues)) {
    const values = (params.allowedValues as unknown[]).map((value) =>
      typeof value === 'string' ? value : JSON.stringify(value),
    );
    return `must be one of: ${values.join(', ')}`;
  }
  if (keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
    return `${message ?? 'must NOT have additional properties'}: "${params.additionalProperty}"`;
  }
  return message ?? 'is not valid';
}

/** Each issue as Fastify words it (`querystring/status must …`), in the words above, joined by ", ". */
function validationMessage(part: string | undefined, issues: FastifySchemaValidationError[]): string {
  return issues.map((issue) => `${part ?? 'request'}${issue.instancePath} ${issueMessage(issue)}`).join(', ');
}

function describe(error: FastifyError): { statusCode: number; code: string; message: string } {
  const statusCode = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
  // Only our own 5xx errors say what happened; anything else may leak internals.
  if (statusCode >= 500 && !(error instanceof QueueUnavailable || error instanceof LogUnavailable)) {
    return { statusCode: 500, code: 'INTERNAL_ERROR', message: 'Internal Server Error' };
  }
  if (error.validation) {
    return {
      statusCode,
      code: 'VALIDATION_FAILED',
      message: validationMessage(error.validationContext, error.validation),
    };
  }
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return { statusCode, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'Unsupported Media Type: send application/json' };
  }
  const code = (error.code && FRAMEWORK_CODES[error.code]) ?? error.code ?? 'ERROR';
  return { statusCode, code, message: error.message };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The kind of job the route queues: its refusals are logged as `rejected` rows of that kind. */
    jobKind?: JobKind;
  }
}

/** What the refused request named, as its job's `parameter` would have (text only, cut to the column). */
function requestedParameter(kind: JobKind, request: FastifyRequest): string {
  const body = (request.body ?? {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' ? value : null);
  const named = { source: text(body.source), target: text(body.target), destination: text(body.destination) };
  // A verify names only its snapshot.
  return (jobParameter(kind, named) || (text(body.snapshot) ?? '')).slice(0, 4096);
}

// Refusals that write no `rejected` row: without a valid token nobody is known to have
// tried, and rate-limited requests must not cost a write each.
const UNRECORDED = new Set([401, 429]);

/**
 * One error shape for every route: `{statusCode, error, message, code}`. 5xx
 * internals stay in the server log. A refused request to queue a job leaves
 * one `rejected` row in the log, naming the token that tried.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    app.setErrorHandler(async (error: FastifyError, request, reply) => {
      const { statusCode, code, message } = describe(error);
      if (statusCode >= 500) request.log.error({ err: error, cause: error.cause }, 'request failed');
      const recorded = statusCode < 500 && !UNRECORDED.has(statusCode);
      const kind = request.routeOptions.config?.jobKind;
      if (recorded && kind) {
        const row: LogEntry = {
          action: kind,
          parameter: requestedParameter(kind, request),
          status: 'rejected',
          jobId: null,
          attempt: null,
          worker: config.instanceName,
          code,
          message: message.slice(0, 2000),
          actor: request.principal?.name ?? null,
        };
        // Straight to MySQL; while it is away, through the log outbox in Redis, which lands it later.
        await app.logStore
          .append(row)
          .catch(() => app.logOutbox.record([row]))
          .catch((err: unknown) => request.log.error({ err }, 'cannot log a rejected request'));
      }
      return reply.code(statusCode).send({ statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message, code });
    });

    app.setNotFoundHandler(async (request, reply) =>
      reply.code(404).send({
        statusCode: 404,
        error: 'Not Found',
        message: `no route ${request.method} ${request.url.split('?')[0] ?? ''}`,
        code: 'ROUTE_NOT_FOUND',
      }),
    );
  },
  { name: 'errors', dependencies: ['log-store', 'log-outbox'] },
);
