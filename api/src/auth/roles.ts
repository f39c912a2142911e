/** What a token may do. */
export const ROLES = ['admin', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/**
 * Who a route is for: `public` needs no token; otherwise the roles that may call it.
 * A route that declares nothing is for admins only, so a forgotten declaration fails closed.
 */
export type Access = 'public' | readonly Role[];

export const ANY_ROLE: readonly Role[] = ROLES;
export const ADMIN_ONLY: readonly Role[] = ['admin'];
/** Roles that submit and cancel jobs. */
export const SUBMITTERS: readonly Role[] = ['admin', 'operator'];

/** Who may call a route that declares `access` (or nothing, which fails closed: admins only). */
export function accessOf(access: Access | undefined): Access {
  return access ?? ADMIN_ONLY;
}

/** The token behind a request, once authenticated. */
export interface Principal {
  /**
   * The token's row id; null for the configured admin token accepted while MySQL is unreachable
   * by a process that has not looked it up yet.
   */
  id: number | null;
  /** Unique and never reused: recorded as `actor` on every log row the token causes. */
  name: string;
  role: Role;
  /** Folders inside SOURCE_ROOTS this token may back up; null: all of SOURCE_ROOTS. */
  sourceRoots: readonly string[] | null;
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/**
 * Admins and viewers see every job; an operator sees only the jobs it submitted. Jobs of
 * others are reported as unknown (404), so an operator cannot learn which ids exist.
 */
export function seesAllJobs(principal: Principal): boolean {
  return principal.role !== 'operator';
}

export function maySeeJob(principal: Principal, actor: string | null | undefined): boolean {
  return seesAllJobs(principal) || actor === principal.name;
}
