import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Every token Coffer issues starts with this, so a leaked one is easy to recognise and scan for. */
export const TOKEN_PREFIX = 'cfr_';
const TOKEN_BYTES = 32;
/** Longer Authorization values are refused before any hashing or lookup. */
const MAX_TOKEN_LENGTH = 512;
// RFC 6750 b64token.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** A new token: 256 random bits, base64url, with the Coffer prefix. Shown once, never stored. */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_BYTES).toString('base64url');
}

/**
 * What is stored and looked up: the token's SHA-256, hex. A keyed hash (HMAC, a pepper) or a
 * slow one (scrypt) would add nothing for 256-bit random tokens: nobody can guess a
 * preimage, so a plain digest is as good and lets us look tokens up by it.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Compares two hex digests in constant time. */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}

/**
 * The token of an `Authorization: Bearer <token>` header; null when the header is missing,
 * uses another scheme or does not hold a well-formed token.
 */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  const token = match?.[1];
  if (token === undefined || token.length > MAX_TOKEN_LENGTH || !B64TOKEN.test(token)) return null;
  return token;
}
