import { LogUnavailable } from './errors.js';

type AsyncMethods = Record<string, (...args: never[]) => Promise<unknown>>;

/** Any failure of a MySQL repository becomes a 503 LOG_UNAVAILABLE; the cause stays in the server log. */
export function unavailableOnFailure<T extends AsyncMethods>(methods: T): T {
  const wrapped = Object.entries(methods).map(([name, method]) => [
    name,
    async (...args: never[]) => {
      try {
        return await method(...args);
      } catch (err) {
        throw new LogUnavailable({ cause: err });
      }
    },
  ]);
  return Object.fromEntries(wrapped) as T;
}
