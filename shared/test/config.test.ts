import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_SETTINGS_FILE, loadConfig, withSettingsFile } from '@coffer/shared';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration from the environment', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      redis: { mode: 'single', url: 'redis://127.0.0.1:6379' },
      queuePrefix: 'coffer',
      mysql: { host: '127.0.0.1', port: 3306, user: 'root', password: '', database: 'coffer' },
      host: '127.0.0.1',
      port: 3000,
      backupRoot: '/var/lib/coffer/backups',
      sourceRoots: ['/srv'],
      workerConcurrency: 2,
      jobAttempts: 3,
      logLevel: 'info',
      apiAdminToken: undefined,
      scheduleMinIntervalSeconds: 60,
      workerMetricsPort: undefined,
      webhookAllowPrivate: false,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('parses numbers and splits SOURCE_ROOTS on ":"', () => {
    const config = loadConfig({
      PORT: '8085',
      MYSQL_PORT: '3307',
      SOURCE_ROOTS: '/data/a:/data/b',
      WORKER_CONCURRENCY: '4',
    });
    expect(config.port).toBe(8085);
    expect(config.mysql.port).toBe(3307);
    expect(config.sourceRoots).toEqual(['/data/a', '/data/b']);
    expect(config.workerConcurrency).toBe(4);
  });

  it('bounds every wait on MySQL: a few seconds by default, configurable, never unbounded', () => {
    expect(loadConfig({}).mysqlLimits).toEqual({
      queryTimeoutMs: 5000,
      acquireTimeoutMs: 2000,
      queueLimit: 100,
      connectTimeoutMs: 5000,
    });
    expect(loadConfig({ MYSQL_QUERY_TIMEOUT_MS: '800', MYSQL_QUEUE_LIMIT: '5' }).mysqlLimits).toMatchObject({
      queryTimeoutMs: 800,
      queueLimit: 5,
    });
    expect(
      problemsOf({ MYSQL_QUERY_TIMEOUT_MS: '0', MYSQL_ACQUIRE_TIMEOUT_MS: 'soon', MYSQL_QUEUE_LIMIT: '0' }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringContaining('MYSQL_QUERY_TIMEOUT_MS'),
        expect.stringContaining('MYSQL_ACQUIRE_TIMEOUT_MS'),
        expect.stringContaining('MYSQL_QUEUE_LIMIT'),
      ]),
    );
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', LOG_LEVEL: '' })).toMatchObject({ port: 3000, logLevel: 'info' });
  });

  it('reads secrets from NAME_FILE, without the trailing newline', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-config-'));
    await writeFile(join(dir, 'pw'), 's3cret-value\n');
    await writeFile(join(dir, 'redis'), 'redis://:pw@redis.internal:6379\n');
    const config = loadConfig({ MYSQL_PASSWORD_FILE: join(dir, 'pw'), REDIS_URL_FILE: join(dir, 'redis') });
    expect(config.mysql.password).toBe('s3cret-value');
    expect(config.redis).toEqual({ mode: 'single', url: 'redis://:pw@redis.internal:6379' });
  });

  it('refuses NAME and NAME_FILE together', () => {
    expect(problemsOf({ MYSQL_PASSWORD: 'a', MYSQL_PASSWORD_FILE: '/x' })).toEqual([
      'MYSQL_PASSWORD and MYSQL_PASSWORD_FILE are both set; set only one',
    ]);
  });

  it('names an unreadable secret file', () => {
    expect(problemsOf({ API_ADMIN_TOKEN_FILE: '/nonexistent/token' })).toEqual([
      'API_ADMIN_TOKEN_FILE: cannot read /nonexistent/token (ENOENT)',
    ]);
  });

  it('bounds how close two runs of a schedule may be: at least a second apart', () => {
    expect(loadConfig({ SCHEDULE_MIN_INTERVAL_SECONDS: '1' }).scheduleMinIntervalSeconds).toBe(1);
    expect(problemsOf({ SCHEDULE_MIN_INTERVAL_SECONDS: '0' }).join('\n')).toMatch(/SCHEDULE_MIN_INTERVAL_SECONDS/);
  });

  it('serves worker metrics only on a valid WORKER_METRICS_PORT', () => {
    expect(loadConfig({ WORKER_METRICS_PORT: '9464' }).workerMetricsPort).toBe(9464);
    expect(loadConfig({ WORKER_METRICS_PORT: '' }).workerMetricsPort).toBeUndefined();
    for (const bad of ['0', '70000', 'ninety']) {
      expect(problemsOf({ WORKER_METRICS_PORT: bad }).join('\n')).toMatch(/WORKER_METRICS_PORT/);
    }
  });

  it('lists every invalid variable by name', () => {
    const problems = problemsOf({ PORT: 'eighty', MYSQL_PORT: '70000', LOG_LEVEL: 'loud', REDIS_URL: 'http://x' });
    expect(problems.join('\n')).toMatch(/PORT/);
    expect(problems.join('\n')).toMatch(/MYSQL_PORT/);
    expect(problems.join('\n')).toMatch(/LOG_LEVEL/);
    expect(problems.join('\n')).toMatch(/REDIS_URL/);
    expect(problems).toHaveLength(4);
  });

  it('requires absolute BACKUP_ROOT and SOURCE_ROOTS', () => {
    expect(problemsOf({ BACKUP_ROOT: 'backups', SOURCE_ROOTS: '/ok:relative' })).toEqual([
      'BACKUP_ROOT must be an absolute path, got "backups"',
      'SOURCE_ROOTS entries must be absolute paths, got "relative"',
    ]);
  });

  it('refuses a database name that could not be used as an identifier', () => {
    expect(problemsOf({ MYSQL_DATABASE: 'coffer; DROP TABLE log' }).join()).toMatch(/MYSQL_DATABASE/);
  });
});

describe('the settings file', () => {
  async function settingsFile(text: string): Promise<string> {
    const file = join(await mkdtemp(join(tmpdir(), 'coffer-settings-')), 'coffer.env');
    await writeFile(file, text);
    return file;
  }

  it('adds its variables beneath the environment, which wins', async () => {
    const file = await settingsFile('# quick start\nSOURCE_ROOTS=/srv/data\nBACKUP_ROOT="/srv/backups"\nPORT=4000\n');

    const env = withSettingsFile({ COFFER_ENV_FILE: file, PORT: '5000' });

    expect(loadConfig(env)).toMatchObject({ sourceRoots: ['/srv/data'], backupRoot: '/srv/backups', port: 5000 });
  });

  it('stops with a named problem when the file COFFER_ENV_FILE names cannot be read', () => {
    expect(() => withSettingsFile({ COFFER_ENV_FILE: '/nonexistent/coffer.env' })).toThrow(
      /COFFER_ENV_FILE: cannot read \/nonexistent\/coffer.env \(ENOENT\)/,
    );
  });

  it('is looked for at the top of the repository by default', () => {
    expect(DEFAULT_SETTINGS_FILE).toBe(join(new URL('../..', import.meta.url).pathname, 'coffer.env'));
  });
});

describe('where Redis is', () => {
  it('is one server, REDIS_URL, unless a cluster or Sentinels are named', () => {
    expect(loadConfig({ REDIS_URL: 'redis://cache:6380' }).redis).toEqual({
      mode: 'single',
      url: 'redis://cache:6380',
    });
  });

  it('reads REDIS_CLUSTER_NODES from REDIS_CLUSTER_NODES_FILE too, as the other secrets', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-config-'));
    await writeFile(join(dir, 'nodes'), 'redis-a:7000,redis-b:7001\n');
    expect(loadConfig({ REDIS_CLUSTER_NODES_FILE: join(dir, 'nodes') }).redis).toMatchObject({
      mode: 'cluster',
      nodes: [
        { host: 'redis-a', port: 7000 },
        { host: 'redis-b', port: 7001 },
      ],
    });
  });

  it('is a Redis Cluster with REDIS_CLUSTER_NODES, whose keys then share one hash tag', () => {
    const config = loadConfig({
      REDIS_CLUSTER_NODES: 'redis-a:7000, 10.0.0.2:7001,[fd00::3]:7002',
      REDIS_PASSWORD: 'pw',
      QUEUE_PREFIX: 'prod',
    });
    expect(config.redis).toEqual({
      mode: 'cluster',
      nodes: [
        { host: 'redis-a', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: 'fd00::3', port: 7002 },
      ],
      username: undefined,
      password: 'pw',
    });
    // BullMQ's documented form: every key of the deployment in the slot of "prod".
    expect(config.queuePrefix).toBe('{prod}');
    expect(loadConfig({ QUEUE_PREFIX: 'prod' }).queuePrefix).toBe('prod');
  });

  it('is a primary watched by Sentinels with REDIS_SENTINELS and REDIS_SENTINEL_NAME, passwords from files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-config-'));
    await writeFile(join(dir, 'redis-pw'), 'data-secret\n');
    await writeFile(join(dir, 'sentinel-pw'), 'sentinel-secret\n');
    const config = loadConfig({
      REDIS_SENTINELS: 's1:26379,s2:26379,s3:26379',
      REDIS_SENTINEL_NAME: 'coffer-main',
      REDIS_USERNAME: 'coffer',
      REDIS_PASSWORD_FILE: join(dir, 'redis-pw'),
      REDIS_SENTINEL_PASSWORD_FILE: join(dir, 'sentinel-pw'),
    });
    expect(config.redis).toEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
        { host: 's3', port: 26379 },
      ],
      name: 'coffer-main',
      username: 'coffer',
      password: 'data-secret',
      sentinelPassword: 'sentinel-secret',
    });
    expect(config.queuePrefix).toBe('coffer');
  });

  it('refuses two ways at once, a Sentinel set without its name, and bad node lists', () => {
    expect(problemsOf({ REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'b:7000' })).toEqual([
      'REDIS_URL and REDIS_CLUSTER_NODES are set; set only one of them',
    ]);
    expect(problemsOf({ REDIS_SENTINELS: 's1:26379' })).toEqual([
      'REDIS_SENTINELS needs REDIS_SENTINEL_NAME, the name the Sentinels monitor',
    ]);
    expect(problemsOf({ REDIS_SENTINEL_NAME: 'main' })).toEqual([
      'REDIS_SENTINEL_NAME goes with REDIS_SENTINELS: set both or neither',
    ]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'a:7000,b,c:99999,d e:1' })).toEqual([
      'REDIS_CLUSTER_NODES entries must be host:port, got "b"',
      'REDIS_CLUSTER_NODES entries must be host:port, got "c:99999"',
      'REDIS_CLUSTER_NODES entries must be host:port, got "d e:1"',
    ]);
    expect(problemsOf({ REDIS_PASSWORD: 'pw' })).toEqual([
      'REDIS_PASSWORD is for REDIS_CLUSTER_NODES or REDIS_SENTINELS; with REDIS_URL, put credentials in the URL',
    ]);
  });
});
