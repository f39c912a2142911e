import { createHmac } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { UrlRefused, parseWebhookUrl, pinnedLookup, systemResolver, vetUrl, type Resolver } from './url-guard.js';

export const USER_AGENT = 'coffer-webhooks';

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the Coffer-Signature header. */
export function signature(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export interface Delivery {
  url: string;
  secret: string;
  /** The JSON body, the same text on every attempt. */
  body: string;
  event: string;
  /** Coffer-Delivery: the same on every attempt at one delivery. */
  deliveryId: string;
}

export interface AttemptResult {
  /** A 2xx answer. */
  ok: boolean;
  httpStatus: number | null;
  /** Why the attempt failed; null when it did not. */
  error: string | null;
  durationMs: number;
}

export interface SendOptions {
  timeoutMs: number;
  allowPrivate: boolean;
  resolve?: Resolver;
  now?: () => number;
}

/**
 * POSTs one delivery, once. The URL is checked again (and its host resolved again) now, and the
 * connection goes only to the addresses just checked. Redirects are not followed (a redirect
 * could lead past the check): a 3xx answer is a failed attempt, as is any non-2xx answer, a
 * network error or no answer within `timeoutMs`.
 */
export async function send(delivery: Delivery, options: SendOptions): Promise<AttemptResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const signal = AbortSignal.timeout(options.timeoutMs);
  let addresses;
  let url: URL;
  try {
    url = parseWebhookUrl(delivery.url);
    addresses = await vetUrl(url, options.allowPrivate, options.resolve ?? systemResolver);
  } catch (err) {
    const message = err instanceof UrlRefused ? err.message : String(err);
    return { ok: false, httpStatus: null, error: `refused: ${message}`, durationMs: elapsed() };
  }
  const unixSeconds = Math.floor((options.now ?? Date.now)() / 1000);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const finish = (result: Omit<AttemptResult, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...result, durationMs: elapsed() });
    };
    const req = request(url, {
      method: 'POST',
      agent: false,
      lookup: pinnedLookup(addresses),
      signal,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(delivery.body),
        'user-agent': USER_AGENT,
        'coffer-event': delivery.event,
        'coffer-delivery': delivery.deliveryId,
        'coffer-signature': signature(delivery.secret, delivery.body, unixSeconds),
      },
    });
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      // The answer's body is not read: it only needs to end (or be cut at the timeout).
      res.resume();
      res.on('error', () => undefined);
      if (status >= 200 && status < 300) finish({ ok: true, httpStatus: status, error: null });
      else if (status >= 300 && status < 400) {
        finish({ ok: false, httpStatus: status, error: `redirect to ${res.headers.location ?? '?'} not followed` });
      } else finish({ ok: false, httpStatus: status, error: `the receiver answered ${status}` });
      req.destroy();
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (signal.aborted) finish({ ok: false, httpStatus: null, error: `no answer within ${options.timeoutMs} ms` });
      else finish({ ok: false, httpStatus: null, error: err.code ? `${err.code}: ${err.message}` : err.message });
    });
    req.end(delivery.body);
  });
}
