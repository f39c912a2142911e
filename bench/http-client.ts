import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

/** What `postAll` sent and got back. */
export interface Submissions {
  /** Requests answered with the expected status. */
  accepted: number;
  /** Requests answered otherwise, or failed. */
  refused: number;
  /** Seconds from sending the first request until the last answer arrived. */
  seconds: number;
  /** Milliseconds from sending each request until its whole answer arrived. */
  latenciesMs: number[];
  /** The first refusal, to say why. */
  firstRefusal?: string;
}

export interface PostAllOptions {
  url: string;
  count: number;
  /** Requests in flight at once, each on its own kept-alive connection. */
  connections: number;
  headers: Record<string, string>;
  /** The body of the `index`-th request (0, 1, 2…). */
  body: (index: number) => string;
  /** The status that counts as accepted (Coffer: 202, rclone: 200). */
  status: number;
  /** Called with each accepted answer's body, as it arrives. */
  onAccepted?: (body: string, index: number) => void;
}

/**
 * Sends `count` POST requests, `connections` at a time over as many kept-alive connections,
 * and resolves as soon as the last answer arrived: unlike autocannon with `amount`, which
 * notices that it is done only on its next one-second sampling tick, so a caller timing
 * until it resolves would count up to a second too many.
 */
export async function postAll(options: PostAllOptions): Promise<Submissions> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const target = new URL(options.url);
  const latenciesMs: number[] = [];
  let accepted = 0;
  let refused = 0;
  let firstRefusal: string | undefined;
  let next = 0;
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: options.connections }, async () => {
        while (next < options.count) {
          const index = next;
          next += 1;
          const sent = performance.now();
          const answer = await post(agent, target, options.headers, options.body(index)).catch((error: unknown) => ({
            status: 0,
            body: String(error),
          }));
          latenciesMs.push(performance.now() - sent);
          if (answer.status === options.status) {
            accepted += 1;
            options.onAccepted?.(answer.body, index);
          } else {
            refused += 1;
            firstRefusal ??= `${answer.status}: ${answer.body.slice(0, 200)}`;
          }
        }
      }),
    );
    return {
      accepted,
      refused,
      seconds: (performance.now() - started) / 1000,
      latenciesMs,
      ...(firstRefusal === undefined ? {} : { firstRefusal }),
    };
  } finally {
    agent.destroy();
  }
}

function post(
  agent: Agent,
  url: URL,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sending = request(
      url,
      { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        response.on('error', reject);
      },
    );
    sending.on('error', reject);
    sending.end(body);
  });
}

/** The `share` quantile (0.5, 0.99) of `values`, by the nearest rank. */
export function quantile(values: readonly number[], share: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * share) - 1))] ?? Number.NaN;
}
