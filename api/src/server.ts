import { migrate } from '@coffer/db';
import { createLogger, loadConfigOrExit } from '@coffer/shared';
import { buildApp } from './app.js';

const SHUTDOWN_TIMEOUT_MS = 10_000;

const config = loadConfigOrExit();
const logger = createLogger('coffer-api', config.logLevel);

try {
  await migrate(config.mysql, logger);
} catch (err) {
  logger.fatal({ err }, 'cannot apply database migrations');
  process.exit(1);
}

const app = await buildApp({ config, logger });

async function shutdown(signal: string): Promise<void> {
  logger.info({ signal }, 'shutting down');
  const timer = setTimeout(() => {
    logger.error('graceful shutdown timed out');
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS);
  timer.unref();
  await app.close();
  process.exit(0);
}
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));

try {
  await app.listen({ host: config.host, port: config.port });
} catch (err) {
  logger.fatal({ err }, 'cannot listen');
  process.exit(1);
}
