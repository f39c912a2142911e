/**
 * Waits for `work` to settle (resolve or reject), at most `ms`; true when it settled. For
 * closing what may never finish: BullMQ's close waits forever for a first connection that a
 * Redis away since start never gave.
 */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = work.then(
    () => true as const,
    () => true as const,
  );
  const result = await Promise.race([settled, timeout]);
  clearTimeout(timer);
  return result;
}
