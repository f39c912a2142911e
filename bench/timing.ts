import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface Contender {
  name: string;
  /** One timed run; returns its measure (seconds, or a rate). `run` is 0, 1, 2… */
  run: (run: number) => Promise<number>;
}

/**
 * Runs each contender `runs` times, interleaved and in rotating order (A B, B A, … or
 * A B C, B C A, C A B, …) so a drift of the machine (another process, writeback, cache)
 * weighs on every side alike.
 * `before` runs untimed before every timed run. Returns the samples by contender name.
 */
export async function interleave(
  runs: number,
  contenders: readonly Contender[],
  before: () => Promise<void> = async () => undefined,
): Promise<Map<string, number[]>> {
  const samples = new Map(contenders.map((contender) => [contender.name, [] as number[]]));
  for (let run = 0; run < runs; run += 1) {
    const shift = run % contenders.length;
    const order = [...contenders.slice(shift), ...contenders.slice(0, shift)];
    for (const contender of order) {
      await before();
      samples.get(contender.name)?.push(await contender.run(run));
    }
  }
  return samples;
}

/** `interleave`, after one untimed warm-up run of each contender (`run` given -1): caches filled, threads started. */
export async function interleaveAfterWarmUp(
  runs: number,
  contenders: readonly Contender[],
  before?: () => Promise<void>,
): Promise<Map<string, number[]>> {
  for (const contender of contenders) await contender.run(-1);
  return interleave(runs, contenders, before);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
}

/** Runs a command to completion and returns its wall time in seconds; throws if it fails. */
export function timeCommand(command: string, args: readonly string[]): number {
  const started = performance.now();
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const seconds = (performance.now() - started) / 1000;
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
  return seconds;
}

/**
 * Writes dirty pages back, so each timed run starts with none pending and no run pays for
 * the writeback of the one before.
 */
export async function flushWrites(): Promise<void> {
  spawnSync('sync');
}
