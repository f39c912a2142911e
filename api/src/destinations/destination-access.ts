import type { Principal } from '../auth/roles.js';
import type { DestinationRepository } from './destination-repository.js';

/** Why a token may not write into a destination. */
export type DestinationRefusal =
  /** Another token owns the destination itself. */
  | { reason: 'owned' }
  /** The destination's folder lies inside `holder`, another token's destination. */
  | { reason: 'inside'; holder: string }
  /** The destination's folder would hold another token's destination. */
  | { reason: 'contains' };

/** Owners remembered per process; ownership never changes once recorded, so they never go stale. */
const KNOWN_OWNERS_MAX = 10_000;

/**
 * Destination ownership: the first token to write a destination owns it. An operator writes
 * only into destinations it owns, or claims a new one, and never a new one nested inside
 * another token's destination or around one (their folders, and so their snapshots, would
 * mix). Admins write anywhere; a new destination an admin writes is claimed for the admin.
 */
export function createDestinationAccess(store: DestinationRepository) {
  const known = new Map<string, string>();
  const remember = (name: string, owner: string) => {
    if (known.size >= KNOWN_OWNERS_MAX) known.clear();
    known.set(name, owner);
  };

  // A burst into a destination not yet known reads its owner once; a burst of first backups
  // into a new destination waits for one claim instead of queueing each for the claim lock.
  const lookUps = singleFlight<string | null>();
  const claims = singleFlight<{ neighbour: string | null; owner: string | null }>();
  const lookUp = (destination: string): Promise<string | null> => {
    const cached = known.get(destination);
    if (cached !== undefined) return Promise.resolve(cached);
    return lookUps(destination, () => store.owner(destination));
  };
  const claimOnce = (destination: string, principal: Principal, admin: boolean) =>
    claims(`${destination}\0${principal.name}\0${admin}`, () =>
      store.serialised(async (queries) => {
        const [neighbour] = await queries.neighbours(destination, principal.name);
        if (neighbour && !admin) return { neighbour: neighbour.name, owner: null };
        return { neighbour: null, owner: await queries.claim(destination, principal.name) };
      }),
    );

  return {
    /** The token that owns `destination`, null while nobody does. Only looks: never claims. */
    async owner(destination: string): Promise<string | null> {
      const owner = await lookUp(destination);
      if (owner !== null) remember(destination, owner);
      return owner;
    },

    /** Null when `principal` may write into `destination` (claiming it if nobody owns it yet). */
    async authorise(principal: Principal, destination: string): Promise<DestinationRefusal | null> {
      const admin = principal.role === 'admin';
      const owner = await lookUp(destination);
      if (owner !== null) {
        remember(destination, owner);
        return owner === principal.name || admin ? null : { reason: 'owned' };
      }
      const outcome = await claimOnce(destination, principal, admin);
      if (outcome.owner !== null) {
        remember(destination, outcome.owner);
        // Another token claimed it between our first look and the lock.
        return outcome.owner === principal.name || admin ? null : { reason: 'owned' };
      }
      const holder = outcome.neighbour ?? '';
      return destination.startsWith(`${holder}/`) ? { reason: 'inside', holder } : { reason: 'contains' };
    },
  };
}

export type DestinationAccess = ReturnType<typeof createDestinationAccess>;

/** The refusal as said to the token: it names the destination, never the owner. */
export function refusalMessage(destination: string, refusal: DestinationRefusal): string {
  switch (refusal.reason) {
    case 'owned':
      return `destination "${destination}" belongs to another token; back up into a destination of your own`;
    case 'inside':
      return `destination "${destination}" lies inside destination "${refusal.holder}", which belongs to another token`;
    case 'contains':
      return `destination "${destination}" would contain a destination that belongs to another token`;
  }
}

/** Runs `start` once per key at a time: callers asking while it runs share its promise. */
function singleFlight<T>(): (key: string, start: () => Promise<T>) => Promise<T> {
  const running = new Map<string, Promise<T>>();
  return (key, start) => {
    let pending = running.get(key);
    if (!pending) {
      pending = start().finally(() => running.delete(key));
      running.set(key, pending);
    }
    return pending;
  };
}
