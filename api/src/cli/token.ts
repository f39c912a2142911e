import { pino } from 'pino';
import { migrate } from '@coffer/db';
import { REDACTED_PATHS, createMysqlPool, createRedis, loadConfigOrExit } from '@coffer/shared';
import { createRevocationList } from '../auth/revocation-list.js';
import { createTokenRepository } from '../auth/token-repository.js';
import { runTokenCommand } from './token-command.js';

// `pnpm --dir api token create --name ci --role operator`: manages API tokens straight in
// MySQL, with the API's own configuration. Stdout carries only the secret or the listing.
const config = loadConfigOrExit();
const logger = pino(
  { name: 'coffer-token', level: config.logLevel === 'info' ? 'warn' : config.logLevel, redact: REDACTED_PATHS },
  pino.destination(2),
);

try {
  await migrate(config.mysql, logger);
} catch (err) {
  logger.fatal({ err }, 'cannot apply database migrations');
  process.stderr.write('coffer token: cannot reach or migrate the database (see MYSQL_* settings)\n');
  process.exit(1);
}

const pool = createMysqlPool(config.mysql, { connectionLimit: 1, limits: config.mysqlLimits });
// Connects on its first command (only `revoke` has one) and tries once: a revocation Redis
// does not take is reported, not waited for. The command waits for that one connection (a
// cluster client would refuse it before it is ready).
const redis = createRedis(config.redis, 'worker', { lazyConnect: true, once: true });
redis.on('error', (err) => logger.debug({ err }, 'redis connection error'));
try {
  process.exitCode = await runTokenCommand(process.argv.slice(2), {
    tokens: createTokenRepository(pool),
    // Waits until every API process listening confirmed it dropped the token from its cache.
    revocations: createRevocationList(redis, config.queuePrefix, {
      onUnconfirmed: ({ listeners, confirmed }) =>
        process.stderr.write(
          `coffer token: ${listeners - confirmed} of ${listeners} API processes did not confirm the revocation ` +
            'in time; they stop accepting the token within 30 s (when their cached entry expires)\n',
        ),
    }),
    config,
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  });
} finally {
  redis.disconnect();
  await pool.end();
}
