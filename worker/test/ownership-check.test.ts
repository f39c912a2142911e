import { describe, expect, it } from 'vitest';
import { createOwnershipCheck } from '../src/jobs/ownership-check.js';

const LOCK_MS = 30_000;

function setup(answers: boolean[]) {
  const clock = { monotonic: 1_000, wall: Date.parse('2026-11-29T12:00:00Z') };
  let renewals = 0;
  const check = createOwnershipCheck(
    async () => {
      renewals += 1;
      return answers.shift() ?? true;
    },
    LOCK_MS,
    { monotonic: () => clock.monotonic, wall: () => clock.wall },
  );
  const advance = (monotonicMs: number, wallMs = monotonicMs) => {
    clock.monotonic += monotonicMs;
    clock.wall += wallMs;
  };
  return { check, advance, renewals: () => renewals };
}

describe('ownership check', () => {
  it('trusts the lock for half its time after it was taken, then renews it to know', async () => {
    const { check, advance, renewals } = setup([true]);

    expect(await check()).toBe(true);
    advance(LOCK_MS / 2 - 1);
    expect(await check()).toBe(true);
    expect(renewals()).toBe(0);

    advance(1);
    expect(await check()).toBe(true);
    expect(renewals()).toBe(1);
    // A renewal proves the lock again from when it was asked.
    advance(LOCK_MS / 2 - 1);
    expect(await check()).toBe(true);
    expect(renewals()).toBe(1);
  });

  it('answers what Redis says once it asks, and keeps asking after a lost lock', async () => {
    const { check, advance, renewals } = setup([false, false]);
    advance(LOCK_MS);

    expect(await check()).toBe(false);
    expect(await check()).toBe(false);
    expect(renewals()).toBe(2);
  });

  it.each([
    ['the wall clock jumped ahead (a pause the monotonic clock missed)', 10, LOCK_MS],
    ['the wall clock went back', 10, -5_000],
    ['only the monotonic clock moved far', LOCK_MS, 10],
  ])('asks when %s', async (_case, monotonicMs, wallMs) => {
    const { check, advance, renewals } = setup([false]);
    advance(monotonicMs, wallMs);

    expect(await check()).toBe(false);
    expect(renewals()).toBe(1);
  });
});
