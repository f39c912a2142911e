import { runOnThread } from './copy-threads.js';
import type { TreeSize } from './measure-tree-sync.js';
import { sharedState } from './thread-protocol.js';

export type { TreeSize } from './measure-tree-sync.js';

/**
 * Counts the regular files under `source` and their bytes, as `copyTree` would copy
 * them: links are not followed, other kinds are not counted. Used for progress totals.
 * Runs on a pooled worker thread (see `measureTreeSync`), beside the copy's; rejects with
 * `signal.reason` once aborted.
 */
export async function measureTree(source: string, signal?: AbortSignal): Promise<TreeSize> {
  return runOnThread<TreeSize>({ kind: 'measure', source, state: sharedState() }, { signal });
}
