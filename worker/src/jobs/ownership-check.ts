import { performance } from 'node:perf_hooks';

/** The two clocks a lease is judged by: monotonic (ms) and wall (ms since the epoch). */
export interface Clocks {
  monotonic(): number;
  wall(): number;
}

const systemClocks: Clocks = { monotonic: () => performance.now(), wall: () => Date.now() };

/**
 * Whether this attempt still owns its job, asking Redis (renewing the lock) only when the lock
 * could have lapsed: another attempt can take a job only once its lock expired, so within half
 * the lock's duration of the last proof (the lock taken when the attempt started, or a renewal
 * that succeeded) the answer is yes without a round trip. Both clocks must agree that little time
 * passed: a pause one of them does not count (a suspended VM, a clock set back) makes it ask.
 */
export function createOwnershipCheck(
  renew: () => Promise<boolean>,
  lockMs: number,
  clocks: Clocks = systemClocks,
): () => Promise<boolean> {
  const trustedMs = lockMs / 2;
  const reading = () => ({ monotonic: clocks.monotonic(), wall: clocks.wall() });
  let proven = reading();
  const within = (elapsed: number) => elapsed >= 0 && elapsed < trustedMs;
  return async () => {
    const now = reading();
    if (within(now.monotonic - proven.monotonic) && within(now.wall - proven.wall)) return true;
    const owned = await renew();
    if (owned) proven = now;
    return owned;
  };
}
