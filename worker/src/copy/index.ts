export { copyTree, UnsupportedSourceError } from './copy-tree.js';
export type {
  CopyCounts,
  CopyOptions,
  CopyReport,
  CopyResult,
  CopyWarning,
  CopyWarnings,
  ManifestOptions,
} from './copy-tree.js';
export { MAX_LISTED_WARNINGS } from './copy-counts.js';
export { measureTree } from './measure-tree.js';
export type { MeasureOptions, TreeSize } from './measure-tree.js';
export { AttemptSuperseded, SMALL_JOB, createSnapshot, snapshotName } from './snapshot.js';
export type { SnapshotRequest, SnapshotResult } from './snapshot.js';
export { removeTree } from './remove-tree.js';
