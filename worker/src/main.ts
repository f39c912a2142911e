import { migrate } from '@coffer/db';
import { createLogger, loadConfigOrExit } from '@coffer/shared';
import { startWorker, type RunningWorker } from './start-worker.js';

const config = loadConfigOrExit();
const logger = createLogger('coffer-worker', config.logLevel).child({ worker: config.instanceName });
let running: RunningWorker | undefined = undefined;

// Registered first, so a stop during start-up is graceful too.
async function shutdown(signal: string): Promise<void> {
  logger.info({ signal }, 'shutting down: finishing running jobs');
  await running?.close();
  process.exit(0);
}
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));

try {
  await migrate(config.mysql, logger);
} catch (err) {
  logger.fatal({ err }, 'cannot apply database migrations');
  process.exit(1);
}

running = startWorker(config, logger);
logger.info({ concurrency: config.workerConcurrency, backupRoot: config.backupRoot }, 'worker started');
