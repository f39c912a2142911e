import { posix } from 'node:path';
import { checkSourcePath, isInsideRoots, type CofferConfig } from '@coffer/shared';
import { InvalidTokenRequest, TokenNameTaken } from '../errors.js';
import type { RevocationList } from './revocation-list.js';
import { isRole, type Role } from './roles.js';
import type { TokenRecord, TokenRepository } from './token-repository.js';
import { generateToken, hashToken } from './token-secret.js';

/** The name of the token `API_ADMIN_TOKEN` stands for; reserved, so nobody else can take it. */
export const CONFIG_ADMIN_NAME = 'admin';
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_TOKEN_ROOTS = 32;

/** A token as the API and the command line show it: never its secret, never its hash. */
export interface TokenView {
  id: number;
  name: string;
  role: Role;
  sourceRoots: string[] | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export function viewOf(record: TokenRecord): TokenView {
  return {
    id: record.id,
    name: record.name,
    role: record.role,
    sourceRoots: record.sourceRoots,
    createdAt: record.createdAt.toISOString(),
    lastUsedAt: record.lastUsedAt?.toISOString() ?? null,
    revokedAt: record.revokedAt?.toISOString() ?? null,
  };
}

function normaliseRoot(root: string): string {
  const normal = posix.normalize(root);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

/**
 * A token's own roots, checked: absolute folders inside SOURCE_ROOTS, normalised, without
 * duplicates. They narrow what the token may back up; they can never widen SOURCE_ROOTS.
 */
export function checkTokenRoots(roots: readonly string[], config: Pick<CofferConfig, 'sourceRoots'>): string[] {
  if (roots.length === 0 || roots.length > MAX_TOKEN_ROOTS) {
    throw new InvalidTokenRequest(`sourceRoots must list 1 to ${MAX_TOKEN_ROOTS} folders`);
  }
  const checked = new Set<string>();
  for (const root of roots) {
    const problem = checkSourcePath(root);
    if (problem) throw new InvalidTokenRequest(problem.message.replace(/^source/, 'each of sourceRoots'));
    const normal = normaliseRoot(root);
    if (!isInsideRoots(normal, config.sourceRoots)) {
      throw new InvalidTokenRequest(
        `sourceRoots entry "${normal}" is not inside SOURCE_ROOTS (${config.sourceRoots.join(':')})`,
      );
    }
    checked.add(normal);
  }
  return [...checked];
}

export interface CreateTokenRequest {
  name: string;
  role: string;
  sourceRoots?: readonly string[] | null;
}

/** Creates a token and returns its secret, which exists nowhere else from then on. */
export async function createToken(
  tokens: TokenRepository,
  config: Pick<CofferConfig, 'sourceRoots'>,
  request: CreateTokenRequest,
): Promise<{ token: string; record: TokenRecord }> {
  if (!TOKEN_NAME.test(request.name)) {
    throw new InvalidTokenRequest(
      `name must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit; got "${request.name}"`,
    );
  }
  if (request.name === CONFIG_ADMIN_NAME) {
    throw new InvalidTokenRequest(`the name "${CONFIG_ADMIN_NAME}" is reserved for API_ADMIN_TOKEN`);
  }
  if (!isRole(request.role))
    throw new InvalidTokenRequest(`role must be admin, operator or viewer; got "${request.role}"`);
  const sourceRoots = request.sourceRoots ? checkTokenRoots(request.sourceRoots, config) : null;
  const token = generateToken();
  const id = await tokens.insert({ name: request.name, tokenHash: hashToken(token), role: request.role, sourceRoots });
  // Names are never reused, revoked tokens' included, so an `actor` in the log always names one token.
  if (id === null) throw new TokenNameTaken(request.name);
  const record = await tokens.byId(id);
  if (!record) throw new Error(`token ${id} vanished after its creation`);
  return { token, record };
}

/**
 * A revocation MySQL recorded but the revocation list in Redis did not: the token is refused
 * wherever MySQL answers, but an API replica that cannot reach MySQL could still accept it
 * until the list is filled again (each replica does so every minute). Revoking again completes it.
 */
export class RevocationNotShared extends Error {
  override readonly name = 'RevocationNotShared';
  constructor(
    readonly record: TokenRecord,
    options: { cause: unknown },
  ) {
    super(`token "${record.name}" is revoked in MySQL, but Redis did not record it`, options);
  }
}

/**
 * Revokes a token in MySQL, then in the revocation list, so it holds on every API replica, even
 * one that cannot reach MySQL. Null when there is no such token; throws RevocationNotShared
 * when Redis did not take it.
 */
export async function revokeToken(
  tokens: TokenRepository,
  revocations: Pick<RevocationList, 'add'>,
  id: number,
): Promise<TokenRecord | null> {
  const record = await tokens.revoke(id);
  if (!record) return null;
  try {
    await revocations.add(record.tokenHash);
  } catch (err) {
    throw new RevocationNotShared(record, { cause: err });
  }
  return record;
}

/** Why the API refuses to start. */
export class AdminTokenProblem extends Error {
  override readonly name = 'AdminTokenProblem';
}

/**
 * Start-up: with `API_ADMIN_TOKEN` set, makes it the secret of the admin token named
 * "admin" (created, or rotated when the value changed). Without it, at least one admin token
 * must exist already. A configured token that was revoked, or that is another token's
 * secret, stops the start: a leaked admin token must not come back by a restart. A rotated-away
 * secret joins the revocation list first, so replicas still configured with it refuse it even
 * while they cannot reach MySQL.
 */
export async function ensureAdminToken(
  tokens: TokenRepository,
  config: Pick<CofferConfig, 'apiAdminToken'>,
  revocations: Pick<RevocationList, 'add'>,
): Promise<{ name: string; outcome: 'created' | 'rotated' | 'present' | 'not-configured' }> {
  if (config.apiAdminToken === undefined) {
    if ((await tokens.activeAdmins()) > 0) return { name: '', outcome: 'not-configured' };
    throw new AdminTokenProblem(
      'no admin token exists and API_ADMIN_TOKEN is not set: set API_ADMIN_TOKEN (or API_ADMIN_TOKEN_FILE), ' +
        'or create one with `pnpm --dir api token create --name <name> --role admin`',
    );
  }
  const tokenHash = hashToken(config.apiAdminToken);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const existing = await tokens.byHash(tokenHash);
    if (existing) {
      if (existing.revokedAt) {
        throw new AdminTokenProblem(
          `API_ADMIN_TOKEN was revoked (token "${existing.name}", ${existing.revokedAt.toISOString()}); set a new value`,
        );
      }
      if (existing.role !== 'admin') {
        throw new AdminTokenProblem(
          `API_ADMIN_TOKEN is the secret of the ${existing.role} token "${existing.name}"; choose another value`,
        );
      }
      return { name: existing.name, outcome: 'present' };
    }
    const slot = await tokens.byName(CONFIG_ADMIN_NAME);
    if (slot) {
      try {
        await revocations.add(slot.tokenHash);
      } catch (err) {
        throw new AdminTokenProblem(
          'cannot rotate the "admin" token: Redis does not answer, and the previous API_ADMIN_TOKEN must be ' +
            'recorded there as revoked first; start again once Redis answers',
          { cause: err },
        );
      }
      await tokens.rotate(slot.id, tokenHash);
      return { name: CONFIG_ADMIN_NAME, outcome: 'rotated' };
    }
    const id = await tokens.insert({ name: CONFIG_ADMIN_NAME, tokenHash, role: 'admin', sourceRoots: null });
    if (id !== null) return { name: CONFIG_ADMIN_NAME, outcome: 'created' };
    // Another API replica inserted it at the same moment: look again.
  }
  throw new AdminTokenProblem('cannot record API_ADMIN_TOKEN: the "admin" token keeps changing under us');
}

/** Finds a token by id (digits) or name, for the command line. */
export async function findToken(tokens: TokenRepository, idOrName: string): Promise<TokenRecord | null> {
  if (/^[0-9]{1,15}$/.test(idOrName)) {
    const byId = await tokens.byId(Number(idOrName));
    if (byId) return byId;
  }
  return tokens.byName(idOrName);
}
