/** A failure the CLI reports as one line on stderr, with the exit code it stands for. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The command line or the settings are wrong: exit 2, like commander's own usage errors. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** The API answered 4xx/5xx: its stable `code` and its message. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(`${code}: ${oneLine(detail)} (HTTP ${status})`, 1);
    this.name = 'ApiError';
  }
}

/** Nothing answered at the API's address (refused, DNS, timeout). */
export class UnreachableError extends CliError {
  constructor(url: string, reason: string) {
    super(`cannot reach the API at ${url}: ${oneLine(reason)}`, 1);
    this.name = 'UnreachableError';
  }
}

/** Collapses line breaks so every report stays on one line. */
export function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
