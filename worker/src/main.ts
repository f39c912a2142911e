import { migrate } from '@coffer/db';
import { createLogger, createMysqlPool, loadConfigOrExit } from '@coffer/shared';
import { serveWorkerMetrics, type WorkerMetrics } from './metrics.js';
import { startWorker, type RunningWorker } from './start-worker.js';
import { StoreMismatch, claimStore } from './store-identity.js';

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

// Workers on several hosts must write one shared store: a BACKUP_ROOT that is not it stops here.
const storePool = createMysqlPool(config.mysql, { connectionLimit: 1, limits: config.mysqlLimits });
try {
  const store = await claimStore(config.backupRoot, storePool, config.instanceName);
  logger.info(
    { store: store.id, backupRoot: config.backupRoot },
    store.created ? 'backup store created' : 'backup store checked',
  );
} catch (err) {
  if (err instanceof StoreMismatch) logger.fatal(err.message);
  else logger.fatal({ err }, 'cannot check which backup store BACKUP_ROOT is');
  process.exit(1);
} finally {
  await storePool.end();
}

// Off unless WORKER_METRICS_PORT is set; a port that cannot be had stops the worker.
let metrics: WorkerMetrics | undefined = undefined;
if (config.workerMetricsPort !== undefined) {
  try {
    metrics = await serveWorkerMetrics(config.host, config.workerMetricsPort, logger);
  } catch (err) {
    logger.fatal({ err, port: config.workerMetricsPort }, 'cannot serve metrics on WORKER_METRICS_PORT');
    process.exit(1);
  }
}

running = startWorker(config, logger, { metrics });
logger.info({ concurrency: config.workerConcurrency, backupRoot: config.backupRoot }, 'worker started');
