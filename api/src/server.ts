import { readFileSync } from 'node:fs';
import { migrate } from '@coffer/db';
import { createLogger, loadConfigOrExit } from '@coffer/shared';
import { buildApp } from './app.js';
import { AdminTokenProblem, ensureAdminToken } from './auth/token-admin.js';

const SHUTDOWN_TIMEOUT_MS = 10_000;

const config = loadConfigOrExit();
const logger = createLogger('coffer-api', config.logLevel);

function fail(message: string, err?: unknown): never {
  logger.fatal({ err }, message);
  process.stderr.write(`coffer: ${message}\n`);
  process.exit(1);
}

let https: { cert: Buffer; key: Buffer } | undefined;
if (config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined) {
  try {
    https = { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) };
  } catch (err) {
    fail(`cannot read TLS_CERT_FILE or TLS_KEY_FILE (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
  }
}

try {
  await migrate(config.mysql, logger);
} catch (err) {
  fail('cannot apply database migrations', err);
}

const app = await buildApp({ config, logger, https });

try {
  const admin = await ensureAdminToken(app.tokenStore, config, app.revocations);
  if (admin.outcome === 'created' || admin.outcome === 'rotated') {
    logger.info({ tokenName: admin.name, outcome: admin.outcome }, 'admin token from API_ADMIN_TOKEN recorded');
  }
} catch (err) {
  await app.close();
  if (err instanceof AdminTokenProblem) fail(err.message);
  fail('cannot check the admin token', err);
}

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
  fail('cannot listen', err);
}
