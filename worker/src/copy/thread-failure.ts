// How the work of a copy, verify or restore thread ends when it does not finish, as it crosses
// the thread boundary to the main thread.
import { JobFailure, type FailureCode, type FailureProblem } from '@coffer/shared/failure';
import { errorDest, isErrnoException } from './errno.js';
import { PathTooLongError } from './path-too-long.js';
import { UnsupportedSourceError } from './unsupported-source.js';

/**
 * An error as it crosses the thread boundary. Structured cloning keeps an Error's message
 * but drops `code`, `path` and the like, which callers match on (`toSnapshotFailure`).
 */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  dest?: string;
  /** Set when the error is an `UnsupportedSourceError` for this path. */
  unsupportedSource?: string;
  /** Set when the error is a `PathTooLongError` for this path. */
  pathTooLong?: string;
  /** Set when the error is a `JobFailure`: what it carries besides its message. */
  jobFailure?: { code: FailureCode; permanent: boolean; problems?: FailureProblem[] };
}

/**
 * The last message of a thread's work that did not finish: `stopped` when it saw the stop flag,
 * else `failed`.
 */
export type Unfinished = { type: 'stopped' } | { type: 'failed'; error: SerializedError };

/** The last message for `error`, which ended a thread's work; `stopped` tells it is the thread's own stop signal. */
export function unfinished(error: unknown, stopped: boolean): Unfinished {
  return stopped ? { type: 'stopped' } : { type: 'failed', error: serializeError(error) };
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof JobFailure) {
    const { code, permanent, problems } = error;
    const jobFailure = problems === undefined ? { code, permanent } : { code, permanent, problems };
    return { name: error.name, message: error.message, jobFailure };
  }
  if (error instanceof UnsupportedSourceError) {
    return { name: error.name, message: error.message, unsupportedSource: error.path };
  }
  if (error instanceof PathTooLongError) {
    return { name: error.name, message: error.message, stack: error.stack, pathTooLong: error.path };
  }
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const serialized: SerializedError = { name: error.name, message: error.message, stack: error.stack };
  if (isErrnoException(error)) {
    serialized.code = error.code;
    serialized.errno = error.errno;
    serialized.syscall = error.syscall;
    serialized.path = error.path;
    serialized.dest = errorDest(error);
  }
  return serialized;
}

export function deserializeError(serialized: SerializedError): Error {
  if (serialized.jobFailure !== undefined) {
    const { code, permanent, problems } = serialized.jobFailure;
    return new JobFailure(code, serialized.message, permanent, { problems });
  }
  if (serialized.unsupportedSource !== undefined) return new UnsupportedSourceError(serialized.unsupportedSource);
  if (serialized.pathTooLong !== undefined) return new PathTooLongError(serialized.pathTooLong);
  const error: NodeJS.ErrnoException = new Error(serialized.message);
  error.name = serialized.name;
  if (serialized.stack !== undefined) error.stack = serialized.stack;
  if (serialized.code !== undefined) error.code = serialized.code;
  if (serialized.errno !== undefined) error.errno = serialized.errno;
  if (serialized.syscall !== undefined) error.syscall = serialized.syscall;
  if (serialized.path !== undefined) error.path = serialized.path;
  if (serialized.dest !== undefined) Object.assign(error, { dest: serialized.dest });
  return error;
}
