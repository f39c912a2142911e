export { createBackupHandler, type BackupHandlerDeps, type BackupJob } from './backup-handler.js';
export { resolveSource } from './source.js';
export { startWorker, type RunningWorker } from './start-worker.js';
