import createError from '@fastify/error';

// Every error the API answers with carries a stable `code`; clients match on it.
export const SourceInvalid = createError('INVALID_SOURCE', '%s', 400);
export const SourceOutsideRoots = createError('SOURCE_OUTSIDE_ROOTS', '%s', 400);
export const SourceOverlapsBackupRoot = createError('SOURCE_OVERLAPS_BACKUP_ROOT', '%s', 400);
export const ExcludeInvalid = createError('INVALID_EXCLUDE', '%s', 400);
export const DestinationInvalid = createError('INVALID_DESTINATION', '%s', 400);
export const DestinationNotOwned = createError('DESTINATION_NOT_OWNED', '%s', 403);
export const SnapshotNotFound = createError('SNAPSHOT_NOT_FOUND', 'no snapshot with id "%s"', 404);
export const TargetInvalid = createError('INVALID_TARGET', '%s', 400);
export const TargetOutsideRoots = createError('TARGET_OUTSIDE_ROOTS', '%s', 400);
export const RestorePathInvalid = createError('INVALID_RESTORE_PATH', '%s', 400);
export const RetentionNotFound = createError('RETENTION_NOT_FOUND', 'destination "%s" has no retention policy', 404);
export const RetentionNotSet = createError(
  'RETENTION_NOT_SET',
  'destination "%s" has no retention policy to prune by; set one with PUT /destinations/%s/retention',
  409,
);
export const ScheduleInvalid = createError('INVALID_SCHEDULE', '%s', 400);
export const ScheduleNotFound = createError('SCHEDULE_NOT_FOUND', 'no schedule named "%s"', 404);
export const ScheduleNameTaken = createError('SCHEDULE_NAME_TAKEN', 'a schedule named "%s" exists', 409);
export const WebhookUrlInvalid = createError('INVALID_WEBHOOK_URL', '%s', 400);
export const WebhookNotFound = createError('WEBHOOK_NOT_FOUND', 'no webhook with id "%s"', 404);
export const JobNotFound = createError('JOB_NOT_FOUND', 'no job with id "%s"', 404);
export const JobFinished = createError('JOB_FINISHED', 'job "%s" already finished as %s; nothing to cancel', 409);
export const IdempotencyKeyReused = createError(
  'IDEMPOTENCY_KEY_REUSED',
  'Idempotency-Key "%s" was already used with a different request body',
  422,
);
export const QueueUnavailable = createError(
  'QUEUE_UNAVAILABLE',
  'the job queue (Redis) is unavailable; try again shortly',
  503,
);
export const LogUnavailable = createError(
  'LOG_UNAVAILABLE',
  'the job log (MySQL) is unavailable; try again shortly',
  503,
);

export const Unauthenticated = createError('UNAUTHENTICATED', '%s', 401);
export const Forbidden = createError('FORBIDDEN', '%s', 403);
export const RateLimited = createError(
  'RATE_LIMITED',
  'rate limit exceeded: at most %s requests a minute; retry in %s',
  429,
);
export const InvalidTokenRequest = createError('INVALID_TOKEN_REQUEST', '%s', 400);
export const TokenNotFound = createError('TOKEN_NOT_FOUND', 'no token with id "%s"', 404);
export const TokenNameTaken = createError(
  'TOKEN_NAME_TAKEN',
  'a token named "%s" exists or existed; token names are never reused',
  409,
);

/** Fastify's own error codes, renamed to the vocabulary our clients see. */
export const FRAMEWORK_CODES: Readonly<Record<string, string>> = {
  FST_ERR_VALIDATION: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_CONTENT_LENGTH',
};
