import {
  BackupResultSchema,
  JOB_KINDS,
  JOB_STATUSES,
  JobProgressSchema,
  PruneResultSchema,
  RestoreResultSchema,
  SnapshotProblemSchema,
  VerifyResultSchema,
} from '@coffer/shared';

/** A job id (also a snapshot's): ours are UUIDs; letters, digits, `_` and `-`. */
export const jobIdSchema = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;

const isoDate = { type: 'string', format: 'date-time' } as const;
const nullableIsoDate = { type: ['string', 'null'], format: 'date-time' } as const;

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    message: { type: 'string' },
    code: { type: 'string', description: 'Stable machine-readable code, e.g. SOURCE_OUTSIDE_ROOTS' },
  },
  required: ['statusCode', 'error', 'message', 'code'],
} as const;

export const jobViewSchema = {
  $id: 'Job',
  type: 'object',
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: JOB_KINDS },
    status: { type: 'string', enum: JOB_STATUSES },
    source: {
      type: 'string',
      description: "What a backup copies; for a restore or verify, the snapshot's source (when known)",
    },
    destination: { type: 'string' },
    snapshot: { type: 'string', description: 'The snapshot a restore or verify reads' },
    target: { type: 'string', description: 'Where a restore writes' },
    attempts: { type: 'integer', description: 'Attempts started so far' },
    progress: JobProgressSchema,
    result: {
      description: "Once completed: the kind's result (a backup's snapshot, a restore's target, a verify's totals)",
      anyOf: [BackupResultSchema, RestoreResultSchema, VerifyResultSchema, PruneResultSchema],
    },
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        problems: {
          type: 'array',
          description: 'With SNAPSHOT_DAMAGED: the first 100 entries that do not match the manifest',
          items: SnapshotProblemSchema,
        },
      },
      required: ['code', 'message'],
    },
    createdAt: isoDate,
    startedAt: nullableIsoDate,
    finishedAt: nullableIsoDate,
    actor: { type: ['string', 'null'], description: 'Name of the token that submitted the job' },
    schedule: {
      type: ['string', 'null'],
      description: 'The schedule that queued the job; null for jobs queued by hand',
    },
  },
  required: ['id', 'kind', 'status', 'destination', 'attempts', 'progress', 'createdAt', 'startedAt', 'finishedAt'],
} as const;

export const logRowSchema = {
  $id: 'LogRow',
  type: 'object',
  properties: {
    id: { type: 'integer' },
    date: isoDate,
    action: { type: 'string', description: 'The kind of job: backup, restore, verify or prune' },
    parameter: { type: 'string' },
    status: { type: 'string' },
    jobId: { type: ['string', 'null'] },
    attempt: { type: ['integer', 'null'] },
    worker: { type: ['string', 'null'] },
    message: { type: ['string', 'null'] },
    code: { type: ['string', 'null'] },
    destination: { type: ['string', 'null'] },
    snapshot: { type: ['string', 'null'] },
    snapshotId: { type: ['string', 'null'], description: 'The snapshot a restore or verify reads' },
    files: { type: ['integer', 'null'] },
    bytes: { type: ['integer', 'null'] },
    durationMs: { type: ['integer', 'null'] },
    actor: { type: ['string', 'null'], description: 'Name of the token that submitted the job, or tried to' },
    schedule: { type: ['string', 'null'], description: 'The schedule the job ran for, or whose run was refused' },
  },
  required: ['id', 'date', 'action', 'parameter', 'status', 'jobId'],
} as const;

/** What each error status means, for the OpenAPI description (its `code` says exactly why). */
const ERROR_MEANINGS: Readonly<Record<number, string>> = {
  400: 'The request is invalid; nothing was done',
  401: 'No token, or an unknown or revoked one',
  403: "The token's role (or ownership) does not allow this",
  404: 'No such job, token or route (or not one this token may see)',
  409: 'The resource is in a state that does not allow this',
  413: 'The body is larger than 1 MiB',
  415: 'The body is not JSON',
  422: 'The Idempotency-Key was used with another body',
  429: 'Over the rate limit; Retry-After says when to retry',
  503: 'Redis or MySQL did not answer in time; try again shortly',
};

/** Error responses a route may give, by status, for the OpenAPI description. */
export function errorResponses(...statuses: number[]): Record<number, { description: string; $ref: string }> {
  return Object.fromEntries(
    statuses.map((status) => [status, { description: ERROR_MEANINGS[status] ?? 'An error', $ref: 'Error#' }]),
  );
}

/** `limit` and `cursor` query parameters for a list route. */
export function cursorQuery(maxLimit: number, defaultLimit: number) {
  return {
    limit: { type: 'integer', minimum: 1, maximum: maxLimit, default: defaultLimit },
    cursor: { type: 'integer', minimum: 1, description: "The previous page's nextCursor" },
  } as const;
}
