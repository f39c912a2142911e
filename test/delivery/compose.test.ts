import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { migrate } from '@coffer/db';
import { loadConfig } from '@coffer/shared';
import { silentLogger } from '../helpers/environment.js';
import { parseDockerfile, expand } from './helpers/dockerfile.js';
import { COMPOSE_SCHEMA, REPO_ROOT, describeRun, run } from './helpers/repo.js';

// compose/compose.yaml against the official Compose schema and what the stack needs.
// (ci/validate-delivery.sh also runs Debian's docker-compose 1.29 `config -q` on it.)

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  secrets?: (string | { source: string })[];
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
  profiles?: string[];
  restart?: string;
  init?: boolean;
  container_name?: string;
  stop_grace_period?: string;
}
interface ComposeFile {
  name?: string;
  version?: string;
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  networks?: Record<string, unknown>;
  secrets?: Record<string, { file: string }>;
}

const COMPOSE_DIR = join(REPO_ROOT, 'compose');
let raw: unknown;
let compose: ComposeFile;
let composeText: string;
let tmp: string;

function service(name: string): Service {
  const found = compose.services[name];
  if (!found) throw new Error(`no service ${name}`);
  return found;
}
const secretNames = (svc: Service) => (svc.secrets ?? []).map((s) => (typeof s === 'string' ? s : s.source));
const isNamedVolume = (source: string) => !/^[./~$]/.test(source) && !isAbsolute(source);

/** The variables of .env.example: NAME=value lines. */
async function envExample(): Promise<Record<string, string>> {
  const text = await readFile(join(REPO_ROOT, '.env.example'), 'utf8');
  return Object.fromEntries(
    [...text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((match) => [match[1] ?? '', match[2] ?? '']),
  );
}

beforeAll(async () => {
  composeText = await readFile(join(COMPOSE_DIR, 'compose.yaml'), 'utf8');
  raw = parse(composeText, { merge: true });
  compose = raw as ComposeFile;
  tmp = await mkdtemp(join(tmpdir(), 'coffer-compose-'));
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('compose/compose.yaml', () => {
  it('is valid against the official Compose schema', async () => {
    const schema = JSON.parse(await readFile(COMPOSE_SCHEMA, 'utf8')) as Record<string, unknown>;
    // Its $schema names draft-07 by an https URL Ajv does not know; the content is draft-07.
    delete schema.$schema;
    const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
    const valid = validate(raw);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(valid).toBe(true);
  });

  it('has no top-level name (docker-compose 1.29 rejects it) nor version: the project name comes from -p', () => {
    expect(Object.keys(raw as object).filter((key) => !key.startsWith('x-'))).toEqual(
      expect.arrayContaining(['services', 'volumes', 'secrets']),
    );
    expect(compose.name).toBeUndefined();
    expect(compose.version).toBeUndefined();
  });

  it('refers only to secrets, volumes, networks and services it declares', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const secret of secretNames(svc))
        expect(compose.secrets, `${name}: secret ${secret}`).toHaveProperty(secret);
      for (const volume of svc.volumes ?? []) {
        const source = volume.split(':')[0] ?? '';
        if (isNamedVolume(source)) expect(compose.volumes, `${name}: volume ${source}`).toHaveProperty(source);
        else if (source.startsWith('./')) {
          expect(existsSync(resolve(COMPOSE_DIR, source)), `${name}: bind mount ${source}`).toBe(true);
        }
      }
      for (const target of Object.keys(svc.depends_on ?? {})) {
        expect(compose.services, `${name} depends on ${target}`).toHaveProperty(target);
      }
      if (svc.build) {
        const context = resolve(COMPOSE_DIR, svc.build.context);
        expect(context).toBe(REPO_ROOT);
        expect(existsSync(join(context, svc.build.dockerfile)), `${name}: ${svc.build.dockerfile}`).toBe(true);
      }
    }
    // Everything declared is used.
    const usedSecrets = new Set(Object.values(compose.services).flatMap(secretNames));
    expect(Object.keys(compose.secrets ?? {}).filter((s) => !usedSecrets.has(s))).toEqual([]);
    const usedVolumes = new Set(
      Object.values(compose.services).flatMap((svc) => (svc.volumes ?? []).map((v) => v.split(':')[0])),
    );
    expect(Object.keys(compose.volumes ?? {}).filter((v) => !usedVolumes.has(v))).toEqual([]);
  });

  it('waits for healthy dependencies, each of which has a healthcheck (in compose or in its image)', async () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const [target, { condition }] of Object.entries(svc.depends_on ?? {})) {
        expect(condition, `${name} -> ${target}`).toBe('service_healthy');
        const dependency = service(target);
        const imageHealthcheck = dependency.build
          ? parseDockerfile(await readFile(join(REPO_ROOT, dependency.build.dockerfile), 'utf8'))
              .stages.at(-1)
              ?.instructions.some((i) => i.keyword === 'HEALTHCHECK')
          : false;
        expect(Boolean(dependency.healthcheck) || imageHealthcheck, `${target} has a healthcheck`).toBe(true);
      }
    }
    expect(Object.keys(service('api').depends_on ?? {}).sort()).toEqual(['db', 'redis']);
    expect(Object.keys(service('worker').depends_on ?? {}).sort()).toEqual(['db', 'redis']);
  });

  it('gives secrets only as files: *_FILE names a /run/secrets file of a secret the service mounts', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const [variable, value] of Object.entries(svc.environment ?? {})) {
        if (variable.endsWith('_FILE') || variable.endsWith('__FILE')) {
          const secret = /^\/run\/secrets\/([a-z_]+)$/.exec(value)?.[1];
          expect(secret, `${name}: ${variable}=${value}`).toBeDefined();
          expect(secretNames(svc), `${name}: ${variable}`).toContain(secret);
        } else {
          expect(variable, `${name}: a secret given as a plain variable`).not.toMatch(/PASSWORD|TOKEN|SECRET/);
        }
      }
    }
    for (const [secret, { file }] of Object.entries(compose.secrets ?? {})) {
      expect(file).toBe(`\${COFFER_SECRETS_DIR:-./secrets}/${secret}`);
    }
    expect(service('api').environment).toMatchObject({
      MYSQL_PASSWORD_FILE: '/run/secrets/mysql_password',
      API_ADMIN_TOKEN_FILE: '/run/secrets/api_admin_token',
    });
    expect(service('db').environment).toMatchObject({
      MYSQL_PASSWORD_FILE: '/run/secrets/mysql_password',
      MYSQL_ROOT_PASSWORD_FILE: '/run/secrets/mysql_root_password',
    });
  });

  it('publishes the API on ${API_PORT:-8085}, to the port it listens on inside', () => {
    expect(service('api').ports).toEqual(['${API_PORT:-8085}:3000']);
    expect(service('api').environment?.PORT ?? '3000').toBe('3000');
  });

  it('scales workers: 2 replicas, no container_name, no host port, sources read-only, backups on a volume', () => {
    const worker = service('worker');
    expect(worker.deploy?.replicas).toBe(2);
    expect(worker.container_name).toBeUndefined();
    expect(worker.ports).toBeUndefined();
    const roots = worker.environment?.SOURCE_ROOTS ?? '';
    expect(roots).toBe('/data/sources');
    expect(worker.volumes).toContain('${SOURCES_DIR:-./sources}:/data/sources:ro');
    const backupMount = (worker.volumes ?? []).find((v) => v.split(':')[1] === worker.environment?.BACKUP_ROOT);
    expect(backupMount?.split(':')[0], 'BACKUP_ROOT on a named volume').toBe('backups');
    // The API checks sources against the same roots.
    expect(service('api').environment?.SOURCE_ROOTS).toBe(roots);
    for (const svc of Object.values(compose.services)) expect(svc.container_name).toBeUndefined();
  });

  it('runs Redis with an append-only file synced on every write, noeviction and a healthcheck', () => {
    const redis = service('redis');
    expect(redis.command?.join(' ')).toContain('--appendonly yes');
    expect(redis.command?.join(' ')).toContain('--appendfsync always');
    expect(redis.command?.join(' ')).toContain('--maxmemory-policy noeviction');
    expect(redis.healthcheck?.test.join(' ')).toMatch(/redis-cli ping/);
    expect(redis.volumes?.some((v) => v.endsWith(':/data'))).toBe(true);
  });

  it('keeps MySQL data on a named volume and initialises the Grafana reader after the migrations', () => {
    const db = service('db');
    expect(db.volumes).toContain('mysql-data:/var/lib/mysql');
    const init = (db.volumes ?? []).find((v) => v.includes('/docker-entrypoint-initdb.d/'));
    expect(init).toMatch(/:ro$/);
    // Init files run in name order: after every NNN_name.sql migration.
    const script = init?.split(':')[1]?.split('/').pop() ?? '';
    expect(script > '899').toBe(true);
  });

  it('restarts every service, runs api and worker under an init, and lets the worker finish its jobs', () => {
    for (const [name, svc] of Object.entries(compose.services)) expect(svc.restart, name).toBe('unless-stopped');
    expect(service('api').init).toBe(true);
    expect(service('worker').init).toBe(true);
    // The worker gives running jobs 30 s on SIGTERM.
    expect(Number.parseInt(service('worker').stop_grace_period ?? '10', 10)).toBeGreaterThan(30);
  });

  it('starts Grafana only with the ops profile; the default stack needs no profile', () => {
    expect(service('grafana').profiles).toEqual(['ops']);
    for (const name of ['redis', 'db', 'api', 'worker']) expect(service(name).profiles, name).toBeUndefined();
  });

  it('hands api and worker a valid Coffer configuration, of variables Coffer knows', async () => {
    const secrets = join(tmp, 'config-secrets');
    const made = await run('sh', ['compose/init-secrets.sh', secrets]);
    expect(made.code, describeRun(made)).toBe(0);
    const configSource = await readFile(join(REPO_ROOT, 'shared', 'src', 'config.ts'), 'utf8');
    for (const name of ['api', 'worker']) {
      const env = Object.fromEntries(
        Object.entries(service(name).environment ?? {}).map(([key, value]) => [
          key,
          expand(String(value), {}).replace(/^\/run\/secrets\//, `${secrets}/`),
        ]),
      );
      for (const variable of Object.keys(env)) {
        expect(configSource, `${name}: ${variable} is read by shared/src/config.ts`).toContain(
          `${variable.replace(/_FILE$/, '')}`,
        );
      }
      // The images' ENV first, as in the container.
      expect(() => loadConfig({ HOST: '0.0.0.0', ...env }), name).not.toThrow();
    }
  });
});

describe('.env.example', () => {
  it('documents every variable the compose file uses, with its default, and nothing else', async () => {
    const documented = await envExample();
    const used = new Map<string, string>();
    for (const match of composeText.matchAll(/\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}/g)) {
      used.set(match[1] ?? '', match[2] ?? '');
    }
    expect(Object.keys(documented).sort()).toEqual([...used.keys()].sort());
    for (const [variable, fallback] of used) expect(documented[variable], variable).toBe(fallback);
  });
});

describe('compose/init-secrets.sh', () => {
  it('creates every declared secret, readable by the containers, in a private folder, and keeps existing ones', async () => {
    const dir = join(tmp, 'secrets');
    const first = await run('sh', ['compose/init-secrets.sh', dir]);
    expect(first.code, describeRun(first)).toBe(0);
    expect((await readdir(dir)).sort()).toEqual(Object.keys(compose.secrets ?? {}).sort());
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    for (const name of await readdir(dir)) {
      const file = join(dir, name);
      expect((await stat(file)).mode & 0o777, name).toBe(0o644);
      // API_ADMIN_TOKEN needs 16 characters or more.
      expect(await readFile(file, 'utf8'), name).toMatch(/^[0-9a-f]{48}$/);
    }
    const before = await readFile(join(dir, 'mysql_password'), 'utf8');
    const second = await run('sh', ['compose/init-secrets.sh', dir]);
    expect(second.code).toBe(0);
    expect(second.stdout).not.toContain('created');
    expect(await readFile(join(dir, 'mysql_password'), 'utf8')).toBe(before);
  });
});

describe('Grafana (profile ops)', () => {
  interface Target {
    rawSql: string;
    format: string;
    datasource: { uid: string };
  }
  interface Panel {
    title: string;
    type: string;
    datasource: { type: string; uid: string };
    targets: Target[];
  }
  let dashboard: { uid: string; panels: Panel[] };
  let datasource: {
    uid: string;
    type: string;
    url: string;
    user: string;
    jsonData: { database: string };
    secureJsonData: { password: string };
  };

  beforeAll(async () => {
    const provisioned = parse(
      await readFile(join(COMPOSE_DIR, 'grafana/provisioning/datasources/coffer-mysql.yaml'), 'utf8'),
    ) as { datasources: (typeof datasource)[] };
    expect(provisioned.datasources).toHaveLength(1);
    datasource = provisioned.datasources[0] ?? datasource;
    dashboard = JSON.parse(
      await readFile(join(COMPOSE_DIR, 'grafana/dashboards/coffer-jobs.json'), 'utf8'),
    ) as typeof dashboard;
  });

  it('is provisioned with a MySQL data source logging in as the read-only user, password from a secret', () => {
    const grafana = service('grafana');
    expect(datasource).toMatchObject({ type: 'mysql', url: '${COFFER_DB_ADDRESS}', user: '${COFFER_DB_USER}' });
    expect(datasource.jsonData.database).toBe('${COFFER_DB_NAME}');
    expect(datasource.secureJsonData.password).toBe('$__file{/run/secrets/grafana_db_password}');
    expect(secretNames(grafana)).toEqual(expect.arrayContaining(['grafana_db_password', 'grafana_admin_password']));
    expect(grafana.environment).toMatchObject({
      COFFER_DB_ADDRESS: 'db:3306',
      COFFER_DB_USER: service('db').environment?.GRAFANA_DB_USER,
      COFFER_DB_NAME: service('db').environment?.MYSQL_DATABASE,
      GF_SECURITY_ADMIN_PASSWORD__FILE: '/run/secrets/grafana_admin_password',
    });
    expect(grafana.volumes).toEqual(
      expect.arrayContaining([
        './grafana/provisioning:/etc/grafana/provisioning:ro',
        './grafana/dashboards:/etc/grafana/dashboards:ro',
      ]),
    );
  });

  it('loads the dashboard folder that compose mounts', async () => {
    const providers = parse(
      await readFile(join(COMPOSE_DIR, 'grafana/provisioning/dashboards/coffer.yaml'), 'utf8'),
    ) as { providers: { type: string; options: { path: string } }[] };
    expect(providers.providers.map((p) => [p.type, p.options.path])).toEqual([['file', '/etc/grafana/dashboards']]);
  });

  it('has panels for jobs by status over time, failures with their messages, throughput and durations', () => {
    const titles = dashboard.panels.map((panel) => panel.title);
    expect(titles).toEqual(
      expect.arrayContaining([
        'Jobs by status over time',
        'Failures with their messages',
        'Throughput: jobs and files',
        'Throughput: bytes in new snapshots',
        'Job durations',
      ]),
    );
    for (const panel of dashboard.panels) {
      expect(panel.datasource.uid, panel.title).toBe(datasource.uid);
      for (const target of panel.targets) {
        expect(target.datasource.uid).toBe(datasource.uid);
        expect(target.rawSql, panel.title).toMatch(/\bFROM log\b/);
      }
    }
    const failures = dashboard.panels.find((panel) => panel.title === 'Failures with their messages');
    expect(failures?.targets[0]?.rawSql).toMatch(/\bmessage\b/);
  });

  describe('against the real database', () => {
    const tag = randomBytes(4).toString('hex');
    const database = `coffer_test_grafana_${tag}`;
    const reader = `coffer_reader_${tag}`;
    const server = {
      host: process.env.MYSQL_HOST ?? '127.0.0.1',
      port: Number(process.env.MYSQL_PORT ?? '3306'),
      user: process.env.MYSQL_USER ?? 'root',
      password: process.env.MYSQL_PASSWORD ?? '',
    };

    beforeAll(async () => {
      await migrate({ ...server, database }, silentLogger);
      const connection = await createConnection({ ...server, database });
      try {
        const rows = [
          ['queued', 'job-1', null, null, null, null, null],
          ['active', 'job-1', 1, null, null, null, null],
          ['completed', 'job-1', 1, 12, 34_567, 890, null],
          ['queued', 'job-2', null, null, null, null, null],
          ['active', 'job-2', 1, null, null, null, null],
          ['failed', 'job-2', 1, null, null, null, 'source /srv/gone does not exist'],
          ['rejected', null, null, null, null, null, 'source is outside SOURCE_ROOTS'],
        ];
        for (const [status, jobId, attempt, files, bytes, duration, message] of rows) {
          await connection.query(
            `INSERT INTO log (action, parameter, status, job_id, attempt, worker, files, bytes, duration_ms, message)
             VALUES ('backup', '/srv/data', ?, ?, ?, 'worker-1', ?, ?, ?, ?)`,
            [status, jobId, attempt, files, bytes, duration, message],
          );
        }
      } finally {
        await connection.end();
      }
    });

    afterAll(async () => {
      const connection = await createConnection(server);
      try {
        await connection.query(`DROP USER IF EXISTS '${reader}'@'%'`);
        await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
      } finally {
        await connection.end();
      }
    });

    /** Grafana's MySQL macros, expanded as Grafana does, over the last hour. */
    function expandMacros(sql: string): string {
      const to = Math.ceil(Date.now() / 1000) + 60;
      const from = to - 3600;
      const expanded = sql
        .replace(/\$__timeGroupAlias\(\s*([^,]+?)\s*,\s*[^)]+?\)/g, 'UNIX_TIMESTAMP($1) DIV 60 * 60 AS `time`')
        .replace(/\$__timeGroup\(\s*([^,]+?)\s*,\s*[^)]+?\)/g, 'UNIX_TIMESTAMP($1) DIV 60 * 60')
        .replace(/\$__timeFilter\(\s*([^)]+?)\s*\)/g, `$1 BETWEEN FROM_UNIXTIME(${from}) AND FROM_UNIXTIME(${to})`);
      expect(expanded).not.toContain('$__');
      return expanded;
    }

    it('runs every panel query on the log table', async () => {
      const connection = await createConnection({ ...server, database });
      try {
        const results = new Map<string, RowDataPacket[]>();
        for (const panel of dashboard.panels) {
          for (const target of panel.targets) {
            const [rows] = await connection.query<RowDataPacket[]>(expandMacros(target.rawSql));
            results.set(panel.title, rows);
          }
        }
        const byStatus = results.get('Jobs by status over time') ?? [];
        expect(byStatus.map((row) => row.metric as string).sort()).toEqual(
          ['active', 'completed', 'failed', 'queued', 'rejected'].sort(),
        );
        expect(byStatus.every((row) => typeof row.time === 'number' || typeof row.time === 'string')).toBe(true);
        const failures = results.get('Failures with their messages') ?? [];
        expect(failures.map((row) => [row.status as string, row.message as string])).toEqual([
          ['rejected', 'source is outside SOURCE_ROOTS'],
          ['failed', 'source /srv/gone does not exist'],
        ]);
        const bytes = results.get('Throughput: bytes in new snapshots') ?? [];
        expect(bytes.map((row) => Number(row['snapshot bytes']))).toEqual([34_567]);
        const durations = results.get('Job durations') ?? [];
        expect(durations.map((row) => Number(row.average))).toEqual([0.89]);
      } finally {
        await connection.end();
      }
    });

    it('the db init script creates a reader that may read the log and nothing else', async () => {
      // A password with the characters SQL quoting must survive.
      const password = `it's a \\ test ${randomBytes(6).toString('hex')}`;
      const passwordFile = join(tmp, 'grafana_db_password');
      const sqlFile = join(tmp, 'grafana-reader.sql');
      await writeFile(passwordFile, `${password}\n`);
      // Sourced as the MySQL image's entrypoint does, with its SQL helper standing in.
      const result = await run(
        'bash',
        [
          '-c',
          'docker_process_sql() { cat >"$SQL_OUT"; }; source "$1"',
          'init',
          'compose/db-init/900-grafana-reader.sh',
        ],
        {
          env: {
            PATH: process.env.PATH ?? '',
            GRAFANA_DB_USER: reader,
            GRAFANA_DB_PASSWORD_FILE: passwordFile,
            MYSQL_DATABASE: database,
            SQL_OUT: sqlFile,
          },
        },
      );
      expect(result.code, describeRun(result)).toBe(0);
      const root = await createConnection({ ...server, multipleStatements: true });
      try {
        await root.query(await readFile(sqlFile, 'utf8'));
      } finally {
        await root.end();
      }
      const asReader = await createConnection({ ...server, user: reader, password, database });
      try {
        const [rows] = await asReader.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM log');
        expect(Number(rows[0]?.n)).toBe(7);
        await expect(
          asReader.query("INSERT INTO log (action, parameter, status) VALUES ('x', 'y', 'z')"),
        ).rejects.toThrow(/denied/i);
        await expect(asReader.query('SELECT * FROM schema_migrations')).rejects.toThrow(/denied/i);
      } finally {
        await asReader.end();
      }
    });
  });
});

describe('compose/compose.sentinel.yaml, the Sentinel override', () => {
  let override: ComposeFile;
  let overrideRaw: unknown;

  beforeAll(async () => {
    overrideRaw = parse(await readFile(join(COMPOSE_DIR, 'compose.sentinel.yaml'), 'utf8'), { merge: true });
    override = overrideRaw as ComposeFile;
  });

  it('is valid against the official Compose schema', async () => {
    const schema = JSON.parse(await readFile(COMPOSE_SCHEMA, 'utf8')) as Record<string, unknown>;
    delete schema.$schema;
    const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
    expect(validate(overrideRaw), JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it('points the API and the workers at its three Sentinels instead of REDIS_URL', () => {
    for (const name of ['api', 'worker']) {
      const environment = override.services[name]?.environment ?? {};
      const config = loadConfig({ ...environment });
      expect(config.redis.mode, name).toBe('sentinel');
      if (config.redis.mode !== 'sentinel') continue;
      expect(config.redis.name).toBe('coffer');
      // Every Sentinel named is a service of the override, answering on the port named.
      for (const { host, port } of config.redis.sentinels) {
        const sentinel = override.services[host];
        expect(sentinel, `${name}: ${host}`).toBeDefined();
        expect(sentinel?.command?.join(' ')).toContain(`port ${port}`);
        expect(sentinel?.command?.join(' ')).toContain('sentinel monitor coffer redis 6379 2');
      }
      expect(config.redis.sentinels).toHaveLength(3);
    }
  });

  it('gives the primary a replica of it, with its own volume', () => {
    expect(override.services['redis-replica']?.command).toEqual(expect.arrayContaining(['--replicaof', 'redis']));
    expect(override.volumes).toHaveProperty('redis-replica-data');
  });
});
