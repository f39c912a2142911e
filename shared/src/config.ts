import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute } from 'node:path';
import envSchema from 'env-schema';
import { ConfigError } from './config-error.js';
import { withSettingsFile } from './settings-file.js';

export { ConfigError } from './config-error.js';

/** Variables that may also be read from `NAME_FILE` (Docker secrets). */
const SECRET_VARIABLES = [
  'REDIS_URL',
  'REDIS_CLUSTER_NODES',
  'REDIS_PASSWORD',
  'REDIS_SENTINEL_PASSWORD',
  'MYSQL_PASSWORD',
  'API_ADMIN_TOKEN',
] as const;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const schema = {
  type: 'object',
  properties: {
    REDIS_URL: { type: 'string', pattern: '^rediss?://', default: 'redis://127.0.0.1:6379' },
    REDIS_CLUSTER_NODES: { type: 'string', minLength: 1 },
    REDIS_SENTINELS: { type: 'string', minLength: 1 },
    REDIS_SENTINEL_NAME: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    REDIS_USERNAME: { type: 'string', minLength: 1 },
    REDIS_PASSWORD: { type: 'string', minLength: 1 },
    REDIS_SENTINEL_PASSWORD: { type: 'string', minLength: 1 },
    REDIS_WAIT_REPLICAS: { type: 'integer', minimum: 0, maximum: 16, default: 0 },
    QUEUE_PREFIX: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$', default: 'coffer' },
    MYSQL_HOST: { type: 'string', minLength: 1, default: '127.0.0.1' },
    MYSQL_PORT: { type: 'integer', minimum: 1, maximum: 65535, default: 3306 },
    MYSQL_USER: { type: 'string', minLength: 1, default: 'root' },
    MYSQL_PASSWORD: { type: 'string', default: '' },
    MYSQL_DATABASE: { type: 'string', pattern: '^[A-Za-z0-9_]{1,64}$', default: 'coffer' },
    MYSQL_QUERY_TIMEOUT_MS: { type: 'integer', minimum: 100, maximum: 3_600_000, default: 5000 },
    MYSQL_ACQUIRE_TIMEOUT_MS: { type: 'integer', minimum: 10, maximum: 600_000, default: 2000 },
    MYSQL_QUEUE_LIMIT: { type: 'integer', minimum: 1, maximum: 100_000, default: 100 },
    MYSQL_CONNECT_TIMEOUT_MS: { type: 'integer', minimum: 100, maximum: 600_000, default: 5000 },
    HOST: { type: 'string', minLength: 1, default: '127.0.0.1' },
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 3000 },
    BACKUP_ROOT: { type: 'string', minLength: 1, default: '/var/lib/coffer/backups' },
    SOURCE_ROOTS: { type: 'string', minLength: 1, default: '/srv' },
    RESTORE_ROOTS: { type: 'string', minLength: 1 },
    WORKER_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 64, default: 2 },
    INSTANCE_NAME: { type: 'string', minLength: 1, maxLength: 255 },
    COPY_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 64 },
    JOB_ATTEMPTS: { type: 'integer', minimum: 1, maximum: 100, default: 3 },
    JOB_BACKOFF_MS: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 2000 },
    JOB_LOCK_MS: { type: 'integer', minimum: 1000, maximum: 600_000, default: 30_000 },
    JOB_STALLED_CHECK_MS: { type: 'integer', minimum: 500, maximum: 600_000, default: 15_000 },
    JOB_MAX_STALLS: { type: 'integer', minimum: 1, maximum: 1000, default: 5 },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 20_000 },
    JOB_RETENTION_SECONDS: { type: 'integer', minimum: 0, default: 604_800 },
    JOB_RETENTION_COUNT: { type: 'integer', minimum: 0, default: 10_000 },
    API_ADMIN_TOKEN: { type: 'string', minLength: 16 },
    METRICS_PUBLIC: { type: 'boolean', default: false },
    DOCS_PUBLIC: { type: 'boolean', default: true },
    RATE_LIMIT_PER_MINUTE: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 600 },
    CORS_ORIGINS: { type: 'string' },
    TLS_CERT_FILE: { type: 'string', minLength: 1 },
    TLS_KEY_FILE: { type: 'string', minLength: 1 },
    LOG_LEVEL: { type: 'string', enum: LOG_LEVELS, default: 'info' },
    SCHEDULE_MIN_INTERVAL_SECONDS: { type: 'integer', minimum: 1, maximum: 31_622_400, default: 60 },
    WORKER_METRICS_PORT: { type: 'integer', minimum: 1, maximum: 65535 },
    WEBHOOK_ALLOW_PRIVATE: { type: 'boolean', default: false },
  },
} as const;

export interface MysqlSettings {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** How long a process waits on MySQL before it gives up (and the API answers 503). */
export interface MysqlLimits {
  /**
   * Longest a statement may run, lock waits included. The server aborts it (lock waits at the
   * next whole second); if the server does not answer at all, the client drops the connection
   * a second later. Default 5000 ms.
   */
  queryTimeoutMs: number;
  /** Longest a caller waits for a free connection of the pool. Default 2000 ms. */
  acquireTimeoutMs: number;
  /** Callers that may wait for a connection at once; more are refused at once. Default 100. */
  queueLimit: number;
  /** Longest opening a connection may take. Default 5000 ms. */
  connectTimeoutMs: number;
}

/** The limits when none are configured (the variables' defaults). */
export const DEFAULT_MYSQL_LIMITS: MysqlLimits = Object.freeze({
  queryTimeoutMs: schema.properties.MYSQL_QUERY_TIMEOUT_MS.default,
  acquireTimeoutMs: schema.properties.MYSQL_ACQUIRE_TIMEOUT_MS.default,
  queueLimit: schema.properties.MYSQL_QUEUE_LIMIT.default,
  connectTimeoutMs: schema.properties.MYSQL_CONNECT_TIMEOUT_MS.default,
});

/** A Redis server, cluster node or Sentinel, as `host:port`. */
export interface RedisNode {
  host: string;
  port: number;
}

/** Credentials for the Redis servers of a cluster or a Sentinel-watched primary. */
interface RedisCredentials {
  username: string | undefined;
  password: string | undefined;
}

/**
 * Where Coffer's Redis is: one server (REDIS_URL), a Redis Cluster (REDIS_CLUSTER_NODES), or
 * a primary watched by Sentinels (REDIS_SENTINELS and REDIS_SENTINEL_NAME).
 */
export type RedisTarget =
  | { mode: 'single'; url: string }
  | ({ mode: 'cluster'; nodes: readonly RedisNode[] } & RedisCredentials)
  | ({
      mode: 'sentinel';
      sentinels: readonly RedisNode[];
      name: string;
      sentinelPassword: string | undefined;
    } & RedisCredentials);

/** Everything a Coffer process reads from its environment, validated once. */
export interface CofferConfig {
  redis: RedisTarget;
  /**
   * Prefix of every Redis key and channel: QUEUE_PREFIX (default `coffer`); with a Redis
   * Cluster, wrapped as a hash tag (`{coffer}`), so every key Coffer uses together is in one slot.
   */
  queuePrefix: string;
  /**
   * Replicas that must hold a submitted job before the API answers 202 (Redis's WAIT, at most
   * a second); 0, the default, answers once the primary holds it.
   */
  redisWaitReplicas: number;
  mysql: MysqlSettings;
  mysqlLimits: MysqlLimits;
  host: string;
  port: number;
  /** Where snapshots are written. Default `/var/lib/coffer/backups`. */
  backupRoot: string;
  /** Folders a source must lie inside. Default `/srv`. */
  sourceRoots: readonly string[];
  /** Folders a restore may write into (RESTORE_ROOTS, default SOURCE_ROOTS). */
  restoreRoots: readonly string[];
  /** Jobs one worker process runs at once. Default 2. */
  workerConcurrency: number;
  /** This process in the log's `worker` column. Default `<hostname>:<pid>`. */
  instanceName: string;
  /** Copy threads one job uses. Default: one per core. */
  copyConcurrency: number | undefined;
  /** Attempts per job before it fails for good. Default 3. */
  jobAttempts: number;
  /** First retry delay; doubles each attempt. Default 2000 ms. */
  jobBackoffMs: number;
  /**
   * A worker's lock on a running job; renewed every half of it. A job whose worker
   * died is noticed within `jobLockMs + jobStalledCheckMs`. Default 30 s.
   */
  jobLockMs: number;
  /** How often workers look for jobs whose worker died. Default 15 s. */
  jobStalledCheckMs: number;
  /** Times a job may lose its worker before it fails for good. Default 5. */
  jobMaxStalls: number;
  /** On SIGTERM, running jobs get this long to finish before they are handed back to the queue. Default 20 s. */
  shutdownTimeoutMs: number;
  /** Finished jobs stay in Redis this long (then their view comes from the log). Default 7 days. */
  jobRetentionSeconds: number;
  /** …and at most this many of them. Default 10,000. */
  jobRetentionCount: number;
  apiAdminToken: string | undefined;
  /** Serve GET /metrics without a token. Default false. */
  metricsPublic: boolean;
  /** Serve GET /docs (the OpenAPI description and UI) without a token. Default true. */
  docsPublic: boolean;
  /** Requests per minute one token (or, without one, one address) may make; 0 turns the limit off. Default 600. */
  rateLimitPerMinute: number;
  /** Browser origins allowed by CORS. Default none: CORS stays off. */
  corsOrigins: readonly string[];
  /** PEM certificate and key files: the API serves HTTPS when both are set. Default unset (HTTP). */
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  /** The closest two runs of one schedule may be. Default 60 s. */
  scheduleMinIntervalSeconds: number;
  /** Port a worker serves its own GET /metrics on, bound to `host`. Default unset: no metrics server. */
  workerMetricsPort: number | undefined;
  /** Let webhooks call loopback, private and link-local addresses. Default false. */
  webhookAllowPrivate: boolean;
  logLevel: LogLevel;
}

type Env = Record<string, string | undefined>;

/**
 * Replaces `NAME_FILE` by the content of the file it names. Giving both is a
 * mistake we refuse rather than guess which one wins.
 */
function resolveSecretFiles(env: Env, problems: string[]): Env {
  const resolved: Env = { ...env };
  for (const name of SECRET_VARIABLES) {
    const file = env[`${name}_FILE`];
    delete resolved[`${name}_FILE`];
    if (file === undefined || file === '') continue;
    if (env[name] !== undefined && env[name] !== '') {
      problems.push(`${name} and ${name}_FILE are both set; set only one`);
      continue;
    }
    try {
      // Secret files usually end with a newline the value does not contain.
      resolved[name] = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  return resolved;
}

function describeSchemaErrors(error: unknown): string[] {
  const errors = (error as { errors?: { instancePath: string; message?: string; params?: unknown }[] }).errors;
  if (!errors) return [String(error)];
  return errors.map((e) => {
    const variable = e.instancePath.replace(/^\//, '') || 'environment';
    return `${variable} ${e.message ?? 'is invalid'}`;
  });
}

/** `host:port,host:port` (IPv6 addresses in brackets); problems are added to `problems`. */
function parseNodes(variable: string, value: string, problems: string[]): RedisNode[] {
  const nodes: RedisNode[] = [];
  for (const item of value.split(',').map((part) => part.trim())) {
    const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(item);
    const port = Number(match?.[2]);
    if (!match?.[1] || port < 1 || port > 65535) {
      problems.push(`${variable} entries must be host:port, got "${item}"`);
      continue;
    }
    nodes.push({ host: match[1].replace(/^\[(.*)\]$/, '$1'), port });
  }
  return nodes;
}

/** Which Redis to use; at most one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS. */
function redisTarget(parsed: Record<string, unknown>, data: Record<string, unknown>, problems: string[]): RedisTarget {
  const text = (name: string) => (typeof parsed[name] === 'string' ? parsed[name] : undefined);
  const credentials = { username: text('REDIS_USERNAME'), password: text('REDIS_PASSWORD') };
  const cluster = text('REDIS_CLUSTER_NODES');
  const sentinels = text('REDIS_SENTINELS');
  const chosen = ['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'].filter((name) => data[name] !== undefined);
  if (chosen.length > 1) problems.push(`${chosen.join(' and ')} are set; set only one of them`);
  if (sentinels === undefined && text('REDIS_SENTINEL_NAME') !== undefined) {
    problems.push('REDIS_SENTINEL_NAME goes with REDIS_SENTINELS: set both or neither');
  }
  if (cluster !== undefined) {
    return { mode: 'cluster', nodes: parseNodes('REDIS_CLUSTER_NODES', cluster, problems), ...credentials };
  }
  if (sentinels !== undefined) {
    const name = text('REDIS_SENTINEL_NAME');
    if (name === undefined) problems.push('REDIS_SENTINELS needs REDIS_SENTINEL_NAME, the name the Sentinels monitor');
    return {
      mode: 'sentinel',
      sentinels: parseNodes('REDIS_SENTINELS', sentinels, problems),
      name: name ?? '',
      sentinelPassword: text('REDIS_SENTINEL_PASSWORD'),
      ...credentials,
    };
  }
  for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD']) {
    if (data[name] !== undefined) {
      problems.push(
        `${name} is for REDIS_CLUSTER_NODES or REDIS_SENTINELS; with REDIS_URL, put credentials in the URL`,
      );
    }
  }
  return { mode: 'single', url: String(parsed.REDIS_URL) };
}

function splitRoots(value: string): string[] {
  return value
    .split(':')
    .map((root) => root.trim())
    .filter((root) => root.length > 0);
}

function splitOrigins(value: string): string[] {
  return value
    .split(',')
    .map((origin) => origin.trim())
    .filter((origin) => origin.length > 0);
}

/** An exact origin (scheme, host, optional port): what a browser sends in `Origin`. */
function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === value;
  } catch {
    return false;
  }
}

/** Reads and validates the configuration; throws a ConfigError listing every problem. */
export function loadConfig(env: Env = process.env): CofferConfig {
  const problems: string[] = [];
  const resolved = resolveSecretFiles(env, problems);
  // An empty variable means "not set", as in most shells' `VAR= cmd`.
  const data = Object.fromEntries(
    Object.entries(resolved).filter(([name, value]) => value !== '' && name in schema.properties),
  );
  let parsed: Record<string, unknown> = {};
  try {
    parsed = envSchema<Record<string, unknown>>({ schema: structuredClone(schema), data, env: false });
  } catch (err) {
    problems.push(...describeSchemaErrors(err));
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const redis = redisTarget(parsed, data, problems);
  const backupRoot = String(parsed.BACKUP_ROOT);
  const sourceRoots = splitRoots(String(parsed.SOURCE_ROOTS));
  if (!isAbsolute(backupRoot)) problems.push(`BACKUP_ROOT must be an absolute path, got "${backupRoot}"`);
  if (sourceRoots.length === 0) problems.push('SOURCE_ROOTS must name at least one folder');
  for (const root of sourceRoots) {
    if (!isAbsolute(root)) problems.push(`SOURCE_ROOTS entries must be absolute paths, got "${root}"`);
  }
  // Restores go back where backups come from unless told otherwise.
  const restoreRoots = typeof parsed.RESTORE_ROOTS === 'string' ? splitRoots(parsed.RESTORE_ROOTS) : sourceRoots;
  if (typeof parsed.RESTORE_ROOTS === 'string') {
    if (restoreRoots.length === 0) problems.push('RESTORE_ROOTS must name at least one folder');
    for (const root of restoreRoots) {
      if (!isAbsolute(root)) problems.push(`RESTORE_ROOTS entries must be absolute paths, got "${root}"`);
    }
  }
  const corsOrigins = typeof parsed.CORS_ORIGINS === 'string' ? splitOrigins(parsed.CORS_ORIGINS) : [];
  for (const origin of corsOrigins) {
    if (!isOrigin(origin))
      problems.push(`CORS_ORIGINS entries must be origins like https://app.example.com, got "${origin}"`);
  }
  const tlsCertFile = typeof parsed.TLS_CERT_FILE === 'string' ? parsed.TLS_CERT_FILE : undefined;
  const tlsKeyFile = typeof parsed.TLS_KEY_FILE === 'string' ? parsed.TLS_KEY_FILE : undefined;
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    redis: Object.freeze(redis),
    queuePrefix: redis.mode === 'cluster' ? `{${String(parsed.QUEUE_PREFIX)}}` : String(parsed.QUEUE_PREFIX),
    redisWaitReplicas: Number(parsed.REDIS_WAIT_REPLICAS),
    mysql: Object.freeze({
      host: String(parsed.MYSQL_HOST),
      port: Number(parsed.MYSQL_PORT),
      user: String(parsed.MYSQL_USER),
      password: String(parsed.MYSQL_PASSWORD),
      database: String(parsed.MYSQL_DATABASE),
    }),
    mysqlLimits: Object.freeze({
      queryTimeoutMs: Number(parsed.MYSQL_QUERY_TIMEOUT_MS),
      acquireTimeoutMs: Number(parsed.MYSQL_ACQUIRE_TIMEOUT_MS),
      queueLimit: Number(parsed.MYSQL_QUEUE_LIMIT),
      connectTimeoutMs: Number(parsed.MYSQL_CONNECT_TIMEOUT_MS),
    }),
    host: String(parsed.HOST),
    port: Number(parsed.PORT),
    backupRoot,
    sourceRoots: Object.freeze(sourceRoots),
    restoreRoots: Object.freeze(restoreRoots),
    workerConcurrency: Number(parsed.WORKER_CONCURRENCY),
    instanceName: typeof parsed.INSTANCE_NAME === 'string' ? parsed.INSTANCE_NAME : `${hostname()}:${process.pid}`,
    copyConcurrency: typeof parsed.COPY_CONCURRENCY === 'number' ? parsed.COPY_CONCURRENCY : undefined,
    jobAttempts: Number(parsed.JOB_ATTEMPTS),
    jobBackoffMs: Number(parsed.JOB_BACKOFF_MS),
    jobLockMs: Number(parsed.JOB_LOCK_MS),
    jobStalledCheckMs: Number(parsed.JOB_STALLED_CHECK_MS),
    jobMaxStalls: Number(parsed.JOB_MAX_STALLS),
    shutdownTimeoutMs: Number(parsed.SHUTDOWN_TIMEOUT_MS),
    jobRetentionSeconds: Number(parsed.JOB_RETENTION_SECONDS),
    jobRetentionCount: Number(parsed.JOB_RETENTION_COUNT),
    apiAdminToken: typeof parsed.API_ADMIN_TOKEN === 'string' ? parsed.API_ADMIN_TOKEN : undefined,
    metricsPublic: parsed.METRICS_PUBLIC === true,
    docsPublic: parsed.DOCS_PUBLIC === true,
    rateLimitPerMinute: Number(parsed.RATE_LIMIT_PER_MINUTE),
    corsOrigins: Object.freeze(corsOrigins),
    tlsCertFile,
    tlsKeyFile,
    logLevel: parsed.LOG_LEVEL as LogLevel,
    scheduleMinIntervalSeconds: Number(parsed.SCHEDULE_MIN_INTERVAL_SECONDS),
    workerMetricsPort: typeof parsed.WORKER_METRICS_PORT === 'number' ? parsed.WORKER_METRICS_PORT : undefined,
    webhookAllowPrivate: parsed.WEBHOOK_ALLOW_PRIVATE === true,
  });
}

/** Entry points call this: a bad configuration ends the process with the list of problems. */
/** What a process reads at start: the environment over the settings file (see `withSettingsFile`). */
export function loadConfigOrExit(env: Env = process.env): CofferConfig {
  try {
    return loadConfig(withSettingsFile(env));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`coffer: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}
