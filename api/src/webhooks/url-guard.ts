import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/** The longest webhook URL taken. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** Resolves a host name to every address it has (dns.lookup with `all`). */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** A URL, or the address it resolves to, that webhooks may not call. */
export class UrlRefused extends Error {}

/** Ranges no webhook calls, even with WEBHOOK_ALLOW_PRIVATE: they name no single receiver. */
const NEVER = new Set(['unspecified', 'multicast', 'broadcast']);

/**
 * Why a webhook may not call `address`, or null if it may. Only public unicast addresses are
 * taken (an IPv4-mapped IPv6 address counts as its IPv4 address); WEBHOOK_ALLOW_PRIVATE lets
 * loopback, private, link-local and other special ranges through, but never an unspecified,
 * multicast or broadcast address.
 */
export function addressProblem(address: string, allowPrivate: boolean): string | null {
  let range: string;
  try {
    range = ipaddr.process(address).range();
  } catch {
    return `"${address}" is not an IP address`;
  }
  if (range === 'unicast') return null;
  // ipaddr.js names ranges in camel case (linkLocal, carrierGradeNat): said in words.
  const words = range.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
  if (NEVER.has(range)) return `${address} is a ${words} address`;
  if (allowPrivate) return null;
  return `${address} is a ${words} address; set WEBHOOK_ALLOW_PRIVATE=true to allow loopback, private and link-local receivers`;
}

/** Checks what a URL says, before any DNS: http or https, no credentials, not too long. */
export function parseWebhookUrl(text: string): URL {
  if (text.length > MAX_WEBHOOK_URL_LENGTH) {
    throw new UrlRefused(`the URL is longer than ${MAX_WEBHOOK_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UrlRefused('the URL is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UrlRefused(`the URL must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new UrlRefused('the URL must not carry a user name or password; sign with the secret instead');
  }
  if (url.hostname === '') throw new UrlRefused('the URL has no host');
  return url;
}

/** The host of a URL as DNS and net take it: without the brackets of an IPv6 literal. */
export function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/**
 * Every address `url`'s host resolves to, if a webhook may call all of them; refused
 * (UrlRefused) if the host does not resolve or if any address is not allowed, since the
 * connection could go to any of them.
 */
export async function vetUrl(url: URL, allowPrivate: boolean, resolve: Resolver = systemResolver) {
  const host = hostOf(url);
  let addresses: LookupAddress[];
  if (isIP(host) !== 0) {
    addresses = [{ address: host, family: isIP(host) }];
  } else {
    try {
      addresses = await resolve(host);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new UrlRefused(`the host "${host}" does not resolve${typeof code === 'string' ? ` (${code})` : ''}`);
    }
    if (addresses.length === 0) throw new UrlRefused(`the host "${host}" does not resolve`);
  }
  for (const { address } of addresses) {
    const problem = addressProblem(address, allowPrivate);
    if (problem) throw new UrlRefused(`the host "${host}" resolves to a refused address: ${problem}`);
  }
  return addresses;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for node:http's request that answers only with addresses already vetted, so the
 * connection goes where the check said (a name that resolves elsewhere the second time, DNS
 * rebinding, gets nowhere new).
 */
export function pinnedLookup(addresses: readonly LookupAddress[]) {
  return (_hostname: string, options: { all?: boolean; family?: number | string }, callback: LookupCallback): void => {
    const family = options.family === 6 || options.family === 'IPv6' ? 6 : options.family === 4 ? 4 : 0;
    const usable = addresses.filter((a) => family === 0 || a.family === family);
    const first = usable[0];
    if (!first) {
      const err: NodeJS.ErrnoException = new Error('no vetted address of the requested family');
      err.code = 'ENOTFOUND';
      callback(err, '');
      return;
    }
    if (options.all)
      callback(
        null,
        usable.map((a) => ({ ...a })),
      );
    else callback(null, first.address, first.family);
  };
}
