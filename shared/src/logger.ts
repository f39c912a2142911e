import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import type { LogLevel } from './config.js';

/** Paths pino replaces by "[redacted]": credentials must never reach a log line. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'password',
  '*.password',
  'token',
  '*.token',
  'redis.url',
  '*.redis.url',
];

/**
 * The process's logger: JSON lines (for log shippers), or readable colour lines when `pretty`,
 * which defaults to whether standard output is a terminal (a person watching `pnpm start`).
 */
export function createLogger(name: string, level: LogLevel, pretty = process.stdout.isTTY === true): Logger {
  const options = { name, level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  if (!pretty) return pino(options);
  // In-process and synchronous, so nothing is lost when the process exits right after a line.
  return pino(
    options,
    PinoPretty({ sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
  );
}
