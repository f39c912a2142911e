import { runOnThread } from './copy-threads.js';
import type { TreeSize } from './measure-tree-sync.js';
import { sharedState } from './thread-protocol.js';

export type { TreeSize } from './measure-tree-sync.js';

export interface MeasureOptions {
  /** The copy's `exclude` patterns: what they leave out is not counted, excluded folders not walked. Default: none. */
  exclude?: readonly string[];
}

/**
 * Counts the regular files under `source` and their bytes, as `copyTree` would copy
 * them: links are not followed, other kinds are not counted. Used for progress totals.
 * Runs on a pooled worker thread (see `measureTreeSync`), beside the copy's; rejects with
 * `signal.reason` once aborted.
 */
export async function measureTree(
  source: string,
  signal?: AbortSignal,
  { exclude }: MeasureOptions = {},
): Promise<TreeSize> {
  return runOnThread<TreeSize>({ kind: 'measure', source, exclude, state: sharedState() }, { signal });
}
