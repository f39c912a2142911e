import { InvalidArgumentError } from 'commander';

/** For repeatable options (`--exclude a --exclude b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `--limit`: a positive integer (the API checks its own upper bound). */
export function positiveInteger(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}
