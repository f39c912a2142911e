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
  'SNAPSHOT_NOT_FOUND',
  'SNAPSHOT_DAMAGED',
  'INVALID_TARGET',
  'TARGET_OUTSIDE_ROOTS',
  'TARGET_EXISTS',
  'RESTORE_FAILED',
  'VERIFY_FAILED',
  'PRUNE_FAILED',
] as const;

export type FailureCode = (typeof FAILURE_CODES)[number];

/** An entry of a snapshot that does not match its manifest (see `SNAPSHOT_DAMAGED`). */
export interface FailureProblem {
  path: string;
  pathBase64?: string;
  problem: 'missing' | 'changed' | 'extra' | 'unreadable';
}

export interface Failure {
  code: FailureCode;
  message: string;
  /** With `SNAPSHOT_DAMAGED`: the first entries (at most 100) that do not match the manifest. */
  problems?: FailureProblem[];
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
    options?: { cause?: unknown; problems?: FailureProblem[] },
  ) {
    super(message, options);
    this.problems = options?.problems;
  }

  readonly problems: FailureProblem[] | undefined;
}

// BullMQ keeps only an error's message (`failedReason`), so the code travels
// inside it as a "CODE: message" prefix, and problems, if any, as JSON after a marker line.
const ENCODED = /^([A-Z_]+): ([\s\S]*)$/;
const PROBLEMS_MARKER = '\n\u0000problems:';

export function encodeFailure(failure: Failure): string {
  const problems = failure.problems?.length ? PROBLEMS_MARKER + JSON.stringify(failure.problems) : '';
  return `${failure.code}: ${failure.message}${problems}`;
}

export function decodeFailure(reason: string | undefined | null): Failure {
  const [text, problems] = splitProblems(reason ?? '');
  const match = reason ? ENCODED.exec(text) : null;
  if (match && (FAILURE_CODES as readonly string[]).includes(match[1] ?? '')) {
    const failure: Failure = { code: match[1] as FailureCode, message: match[2] ?? '' };
    if (problems) failure.problems = problems;
    return failure;
  }
  return { code: 'COPY_FAILED', message: reason ?? 'unknown error' };
}

function splitProblems(reason: string): [string, FailureProblem[] | undefined] {
  const at = reason.indexOf(PROBLEMS_MARKER);
  if (at < 0) return [reason, undefined];
  try {
    return [reason.slice(0, at), JSON.parse(reason.slice(at + PROBLEMS_MARKER.length)) as FailureProblem[]];
  } catch {
    return [reason.slice(0, at), undefined];
  }
}
