import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createConnection } from 'mysql2/promise';
import { migrate } from '@coffer/db';
import { loadConfig, type CofferConfig } from '@coffer/shared';

/** A logger that drops everything, for code that requires one. */
export const silentLogger = {
  info() {},
  warn() {},
  error() {},
  debug() {},
  fatal() {},
  trace() {},
  child() {
    return silentLogger;
  },
  level: 'silent',
};

/**
 * Keeps a developer's `coffer.env` (read by every Coffer process started without
 * `COFFER_ENV_FILE`) out of the processes tests start: they get only what the test sets.
 */
export const NO_SETTINGS_FILE = { COFFER_ENV_FILE: '/dev/null' } as const;

export interface TestEnvironment {
  config: CofferConfig;
  /** The one Redis server `config` names (REDIS_URL). */
  redisUrl: string;
  /** The environment variables `config` was read from, for spawning real processes. */
  variables: Record<string, string>;
  /** Temporary folder holding `sources/` (the only SOURCE_ROOT) and `backups/` (BACKUP_ROOT). */
  dir: string;
  sources: string;
  backups: string;
  /** Drops the database, the queue's keys and the temporary folder. */
  cleanup(): Promise<void>;
}

/**
 * Configuration isolated for one test file: its own QUEUE_PREFIX, its own
 * MySQL database (migrated), its own folders. Talks to the real local servers.
 */
export async function createTestEnvironment(env: Record<string, string> = {}): Promise<TestEnvironment> {
  const tag = randomBytes(4).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'coffer-test-'));
  const sources = join(dir, 'sources');
  const backups = join(dir, 'backups');
  const variables: Record<string, string> = {
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    MYSQL_HOST: process.env.MYSQL_HOST ?? '127.0.0.1',
    MYSQL_PORT: process.env.MYSQL_PORT ?? '3306',
    MYSQL_USER: process.env.MYSQL_USER ?? 'root',
    MYSQL_PASSWORD: process.env.MYSQL_PASSWORD ?? '',
    QUEUE_PREFIX: `coffer-test-${tag}`,
    MYSQL_DATABASE: `coffer_test_${tag}`,
    SOURCE_ROOTS: sources,
    BACKUP_ROOT: backups,
    JOB_BACKOFF_MS: '50',
    LOG_LEVEL: 'silent',
    ...NO_SETTINGS_FILE,
    ...env,
  };
  const config = loadConfig(variables);
  await mkdir(sources, { recursive: true });
  await mkdir(backups, { recursive: true });
  await migrate(config.mysql, silentLogger);
  return {
    config,
    redisUrl: singleServer(config),
    variables,
    dir,
    sources,
    backups,
    async cleanup() {
      await dropDatabase(config);
      await deleteQueueKeys(config);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function dropDatabase(config: CofferConfig): Promise<void> {
  const { database, ...server } = config.mysql;
  const connection = await createConnection(server);
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
  } finally {
    await connection.end();
  }
}

/** The one Redis server a test's configuration names (REDIS_URL). */
function singleServer(config: CofferConfig): string {
  if (config.redis.mode !== 'single') throw new Error('tests run on one Redis server (REDIS_URL)');
  return config.redis.url;
}

export async function deleteQueueKeys(config: CofferConfig): Promise<void> {
  const redis = new Redis(singleServer(config), { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.queuePrefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
