import { ApiError, UnreachableError } from './errors.js';
import type { CliConfig } from './config.js';

/** How long one request may take before the API counts as unreachable. */
const REQUEST_TIMEOUT_MS = 30_000;

export type Query = Record<string, string | number | boolean | undefined>;

export interface ApiClient {
  /** Sends one request; resolves with the parsed JSON body (undefined for 204), rejects with a CliError. */
  request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, options?: { query?: Query; body?: unknown }): Promise<T>;
}

interface ErrorBody {
  code?: unknown;
  message?: unknown;
  error?: unknown;
}

/** The reason a fetch failed, as Node reports it (`connect ECONNREFUSED 127.0.0.1:3000`). */
function failureReason(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  }
  const cause = error instanceof Error ? (error.cause as (Error & { code?: string }) | undefined) : undefined;
  if (cause !== undefined) {
    // An address with several IPs (localhost) fails with an AggregateError whose message is empty.
    if (cause.message) return cause.message;
    if (cause.code) return cause.code;
  }
  return error instanceof Error ? error.message : String(error);
}

export function createApiClient(config: CliConfig): ApiClient {
  return {
    async request<T>(method: string, path: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
      const search = new URLSearchParams();
      for (const [key, value] of Object.entries(options.query ?? {})) {
        if (value !== undefined) search.set(key, String(value));
      }
      const query = search.size > 0 ? `?${search.toString()}` : '';
      const headers: Record<string, string> = { accept: 'application/json' };
      if (config.token !== undefined) headers.authorization = `Bearer ${config.token}`;
      if (options.body !== undefined) headers['content-type'] = 'application/json';

      let response: Response;
      let text: string;
      try {
        response = await fetch(`${config.url}${path}${query}`, {
          method,
          headers,
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        text = await response.text();
      } catch (error) {
        throw new UnreachableError(config.url, failureReason(error));
      }

      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (!response.ok) {
        const { code, message, error } = (body ?? {}) as ErrorBody;
        throw new ApiError(
          response.status,
          typeof code === 'string' ? code : `HTTP_${response.status}`,
          typeof message === 'string' ? message : typeof error === 'string' ? error : response.statusText,
        );
      }
      return body as T;
    },
  };
}
