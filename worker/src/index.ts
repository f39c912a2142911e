export { createJobProcessor, type KindRunner, type LifecycleDeps } from './jobs/attempt-lifecycle.js';
export { resolveSource } from './source.js';
export { startWorker, type RunningWorker } from './start-worker.js';
