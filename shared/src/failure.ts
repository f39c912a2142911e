/**
 * Stable machine codes for why a job or a request failed. Clients and dashboards
 * match on these; the message beside them is for humans and may change.
 */
export const FAILURE_CODES = [
  'SOURCE_NOT_FOUND',
  'SOURCE_OUTSIDE_ROOTS',
  'SOURCE_OVERLAPS_BACKUP_ROOT',
  'SOURCE_UNREADABLE',
  'DESTINATION_FULL',
  'DESTINATION_NOT_WRITABLE',
  'INVALID_DESTINATION',
  'PATH_TOO_LONG',
  'CANCELLED',
  'WORKER_LOST',
  'INVALID_JOB',
  'COPY_FAILED',
] as const;

export type FailureCode = (typeof FAILURE_CODES)[number];

export interface Failure {
  code: FailureCode;
  message: string;
}

/**
 * A job failure that carries its code. `permanent` failures are never retried
 * (the worker wraps them in BullMQ's UnrecoverableError).
 */
export class JobFailure extends Error {
  override readonly name = 'JobFailure';
  constructor(
    readonly code: FailureCode,
    message: string,
    readonly permanent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// BullMQ keeps only an error's message (`failedReason`), so the code travels
// inside it as a "CODE: message" prefix.
const ENCODED = /^([A-Z_]+): ([\s\S]*)$/;

export function encodeFailure(failure: Failure): string {
  return `${failure.code}: ${failure.message}`;
}

export function decodeFailure(reason: string | undefined | null): Failure {
  const match = reason ? ENCODED.exec(reason) : null;
  if (match && (FAILURE_CODES as readonly string[]).includes(match[1] ?? '')) {
    return { code: match[1] as FailureCode, message: match[2] ?? '' };
  }
  return { code: 'COPY_FAILED', message: reason ?? 'unknown error' };
}
