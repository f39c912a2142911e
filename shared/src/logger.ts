import { pino, type Logger } from 'pino';
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
  'redisUrl',
  '*.redisUrl',
];

export function createLogger(name: string, level: LogLevel): Logger {
  return pino({ name, level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } });
}
