import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { MAX_PATH_LENGTH, type CofferConfig } from '@coffer/shared';
import auth from './plugins/auth.js';
import destinationStore from './plugins/destination-store.js';
import retentionStore from './plugins/retention-store.js';
import scheduleRunner from './plugins/schedule-runner.js';
import docs from './plugins/docs.js';
import errors from './plugins/errors.js';
import jobEvents from './plugins/job-events.js';
import jobSubmitter from './plugins/job-submitter.js';
import logOutbox from './plugins/log-outbox.js';
import logStore from './plugins/log-store.js';
import metrics from './plugins/metrics.js';
import mysql from './plugins/mysql.js';
import queue from './plugins/queue.js';
import queueEvents from './plugins/queue-events.js';
import rateLimit from './plugins/rate-limit.js';
import security from './plugins/security.js';
import snapshotStore from './plugins/snapshot-store.js';
import tokenStore from './plugins/token-store.js';
import webhooks from './plugins/webhooks.js';
import backupRoutes from './routes/backup.js';
import destinationRoutes from './routes/destinations.js';
import eventRoutes from './routes/events.js';
import healthRoutes from './routes/health.js';
import jobRoutes from './routes/jobs.js';
import logRoutes from './routes/logs.js';
import pruneRoutes from './routes/prune.js';
import restoreRoutes from './routes/restore.js';
import scheduleRoutes from './routes/schedules.js';
import snapshotRoutes from './routes/snapshots.js';
import tokenRoutes from './routes/tokens.js';
import uiRoutes from './routes/ui.js';
import webhookRoutes from './routes/webhooks.js';
import whoamiRoutes from './routes/whoami.js';
import verifyRoutes from './routes/verify.js';
import { errorSchema, jobViewSchema, logRowSchema } from './schemas.js';
import { wellFormedStrings } from './well-formed.js';

/** Request bodies above this are refused with 413. */
export const BODY_LIMIT_BYTES = 1024 * 1024;

export interface AppOptions {
  config: CofferConfig;
  logger?: FastifyServerOptions['loggerInstance'];
  /** PEM certificate and key: the app then serves HTTPS. Default: plain HTTP. */
  https?: { cert: string | Buffer; key: string | Buffer };
}

// Bodies are validated without type coercion, so `{"source": 5}` is refused
// rather than read as "5"; query strings are text and need coercion.
function validators() {
  const strict = addFormats.default(
    new Ajv.default({
      allErrors: false,
      coerceTypes: false,
      removeAdditional: false,
      useDefaults: true,
      strict: false,
    }),
  );
  const lenient = addFormats.default(
    new Ajv.default({
      allErrors: false,
      coerceTypes: 'array',
      removeAdditional: false,
      useDefaults: true,
      strict: false,
    }),
  );
  for (const ajv of [strict, lenient]) {
    for (const schema of [errorSchema, jobViewSchema, logRowSchema]) ajv.addSchema(schema);
    ajv.addFormat('date-time', { type: 'string', validate: isInstant });
  }
  return { strict, lenient };
}

// RFC 3339 allows a leap second (`23:59:60`) and offsets without minutes, which Date cannot
// read; such an instant would reach the database as an invalid date. Only instants Date reads.
const rfc3339 = addFormats.default(new Ajv.default(), ['date-time']).compile({ type: 'string', format: 'date-time' });
function isInstant(value: string): boolean {
  return rfc3339(value) && Number.isFinite(Date.parse(value));
}

/** Builds the API without listening; server.ts listens, tests inject. */
export async function buildApp({ config, logger, https }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(logger ? { loggerInstance: logger } : { logger: false }),
    ...(https ? { https } : {}),
    bodyLimit: BODY_LIMIT_BYTES,
    // Ids are ours (UUIDs); request ids help correlate log lines.
    requestIdHeader: 'x-request-id',
    // A destination in a path (`/destinations/:name/retention`) may be as long as one in a body;
    // each route's schema bounds its own parameters.
    routerOptions: { maxParamLength: MAX_PATH_LENGTH },
  }) as unknown as FastifyInstance;

  // JSON only: without this, text/plain bodies would reach the routes as strings.
  app.removeContentTypeParser('text/plain');

  const { strict, lenient } = validators();
  app.setValidatorCompiler(({ schema, httpPart }) =>
    wellFormedStrings((httpPart === 'body' ? strict : lenient).compile(schema)),
  );
  app.addSchema(errorSchema);
  app.addSchema(jobViewSchema);
  app.addSchema(logRowSchema);

  // Order matters: headers first (every answer has them, refusals too), then the stores,
  // then authentication, then the rate limit (per token, so after it), then the routes.
  await app.register(security, { config, tls: https !== undefined });
  await app.register(mysql, { config });
  await app.register(logStore);
  await app.register(tokenStore);
  await app.register(destinationStore);
  await app.register(snapshotStore);
  await app.register(retentionStore);
  await app.register(queue, { config });
  await app.register(queueEvents, { config });
  await app.register(logOutbox, { config });
  await app.register(errors, { config });
  await app.register(auth, { config });
  await app.register(rateLimit, { config });
  await app.register(docs);
  await app.register(metrics, { config });
  await app.register(healthRoutes);
  await app.register(jobSubmitter, { config });
  await app.register(backupRoutes, { config });
  await app.register(restoreRoutes, { config });
  await app.register(verifyRoutes);
  await app.register(jobRoutes, { config });
  await app.register(jobEvents);
  await app.register(eventRoutes);
  await app.register(logRoutes);
  await app.register(snapshotRoutes);
  await app.register(tokenRoutes, { config });
  await app.register(destinationRoutes, { config });
  await app.register(pruneRoutes, { config });
  await app.register(scheduleRoutes, { config });
  await app.register(scheduleRunner, { config });
  await app.register(webhooks, { config });
  await app.register(webhookRoutes, { config });
  await app.register(whoamiRoutes);
  await app.register(uiRoutes);
  return app;
}
