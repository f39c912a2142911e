import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NO_SETTINGS_FILE, waitFor } from '../test/helpers/environment.js';
import { freePort } from '../test/helpers/ports.js';

// Fault tests run their own Redis (with AOF, as compose does) and their own
// MariaDB on spare ports, so stopping them never disturbs anything else.

const ROOT = new URL('..', import.meta.url).pathname;

/** A child process we started and may stop, kill (by pid) and start again. */
export class ManagedProcess {
  child: ChildProcess | null = null;
  readonly output: string[] = [];
  // Chunks ever received, and those dropped from the front of `output` to bound it.
  #received = 0;
  #dropped = 0;

  constructor(
    readonly name: string,
    private readonly command: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
  ) {}

  start(): this {
    const child = spawn(this.command, this.args, {
      env: { PATH: process.env.PATH ?? '', ...NO_SETTINGS_FILE, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      this.output.push(chunk.toString());
      this.#received += 1;
      if (this.output.length > 2000) {
        this.output.splice(0, 1000);
        this.#dropped += 1000;
      }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.child = child;
    return this;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and waits for the exit; returns the exit code (null when killed by a signal). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    const child = this.child;
    if (!child || !this.running) return child?.exitCode ?? null;
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const [code] = await exited;
    clearTimeout(timer);
    return code;
  }

  log(): string {
    return this.output.join('');
  }

  /** A point in the output, for `logSince`. */
  mark(): number {
    return this.#received;
  }

  /** The output received since `mark` (what is still kept of it). */
  logSince(mark: number): string {
    return this.output.slice(Math.max(0, mark - this.#dropped)).join('');
  }
}

export interface Servers {
  redis: ManagedProcess;
  mariadb: ManagedProcess;
  redisUrl: string;
  mysqlPort: number;
  dir: string;
  stopAll(): Promise<void>;
}

async function answers(command: string, args: string[]): Promise<true | undefined> {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0 ? true : undefined;
}

export async function startServers(): Promise<Servers> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-faults-'));
  const redisPort = await freePort();
  const mysqlPort = await freePort();
  await mkdir(join(dir, 'redis'));
  const redis = new ManagedProcess(
    'redis',
    'redis-server',
    [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--dir',
      join(dir, 'redis'),
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    ],
    {},
  ).start();
  const install = spawnSync(
    'mariadb-install-db',
    [
      '--no-defaults',
      `--datadir=${join(dir, 'mysql')}`,
      '--user=root',
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
    ],
    { stdio: 'ignore' },
  );
  if (install.status !== 0) throw new Error('mariadb-install-db failed');
  const mariadb = new ManagedProcess(
    'mariadb',
    'mariadbd',
    [
      '--no-defaults',
      `--datadir=${join(dir, 'mysql')}`,
      `--port=${mysqlPort}`,
      '--bind-address=127.0.0.1',
      `--socket=${join(dir, 'mysql.sock')}`,
      '--user=root',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=64M',
    ],
    {},
  ).start();
  const servers: Servers = {
    redis,
    mariadb,
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    mysqlPort,
    dir,
    async stopAll() {
      await redis.stop('SIGKILL');
      await mariadb.stop('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
  await waitForServers(servers);
  return servers;
}

export async function waitForServers(servers: Servers): Promise<void> {
  const redisPort = servers.redisUrl.split(':').pop() ?? '';
  await waitFor(() => answers('redis-cli', ['-p', redisPort, 'ping']), 20_000, 'private Redis');
  await waitFor(
    () => answers('mariadb-admin', ['-h', '127.0.0.1', '-P', String(servers.mysqlPort), '-u', 'root', 'ping']),
    30_000,
    'private MariaDB',
  );
}

export interface JobView {
  id: string;
  status: string;
  attempts: number;
  progress: { files: number; filesTotal: number; bytes: number; bytesTotal: number };
  result?: {
    path: string;
    files: number;
    bytes: number;
    warnings?: { count: number; items: { path: string; code: string }[] };
  };
  error?: { code: string; message: string };
}

export interface LogRow {
  id: number;
  status: string;
  jobId: string | null;
  attempt: number | null;
  worker: string | null;
  code: string | null;
  date: string;
}

/** The API and workers of one test, run as real processes from the built packages. */
export class Cluster {
  readonly api: ManagedProcess;
  readonly workers = new Map<string, ManagedProcess>();
  readonly baseUrl: string;

  constructor(
    readonly env: Record<string, string>,
    port: number,
  ) {
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.api = new ManagedProcess('api', process.execPath, [join(ROOT, 'api/dist/server.js')], {
      ...env,
      PORT: String(port),
      INSTANCE_NAME: 'api',
    });
  }

  static async create(env: Record<string, string>): Promise<Cluster> {
    return new Cluster(env, await freePort());
  }

  /** Starts a worker and waits until it takes jobs. */
  async startWorker(name: string, extra: Record<string, string> = {}): Promise<ManagedProcess> {
    const worker = this.worker(name, extra);
    await waitFor(async () => (worker.log().includes('"worker started"') ? true : undefined), 20_000, `worker ${name}`);
    return worker;
  }

  worker(name: string, extra: Record<string, string> = {}): ManagedProcess {
    const worker = new ManagedProcess(name, process.execPath, [join(ROOT, 'worker/dist/main.js')], {
      ...this.env,
      INSTANCE_NAME: name,
      ...extra,
    });
    this.workers.set(name, worker);
    return worker.start();
  }

  async startApi(): Promise<void> {
    this.api.start();
    await waitFor(
      async () => ((await fetch(`${this.baseUrl}/health`).catch(() => null))?.status === 200 ? true : undefined),
      20_000,
      'the API',
    );
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; ms: number }> {
    const started = performance.now();
    const response = await fetch(this.baseUrl + path, {
      method,
      headers: body === undefined ? this.headers() : { 'content-type': 'application/json', ...this.headers() },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, body: (await response.json()) as T, ms: performance.now() - started };
  }

  /** Headers every request carries (authentication, when the API requires it). */
  headers(): Record<string, string> {
    return this.env.API_ADMIN_TOKEN ? { authorization: `Bearer ${this.env.API_ADMIN_TOKEN}` } : {};
  }

  async submit(source: string, destination?: string): Promise<string> {
    const response = await this.request<{ id: string }>('POST', '/backup', { source, destination });
    if (response.status !== 202)
      throw new Error(`POST /backup answered ${response.status}: ${JSON.stringify(response.body)}`);
    return response.body.id;
  }

  async job(id: string): Promise<JobView> {
    return (await this.request<JobView>('GET', `/jobs/${id}`)).body;
  }

  async waitForStatus(id: string, statuses: string[], timeoutMs = 60_000): Promise<JobView> {
    return waitFor(
      async () => {
        const view = await this.job(id).catch(() => undefined);
        return view && statuses.includes(view.status) ? view : undefined;
      },
      timeoutMs,
      `job ${id} to be ${statuses.join(' or ')}`,
    );
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.workers.values()].map((worker) => worker.stop('SIGKILL')));
    await this.api.stop('SIGKILL');
  }
}

/** Environment for processes talking to the private servers. */
export function clusterEnv(
  servers: Servers,
  folders: { sources: string; backups: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: servers.redisUrl,
    MYSQL_HOST: '127.0.0.1',
    MYSQL_PORT: String(servers.mysqlPort),
    MYSQL_USER: 'root',
    MYSQL_DATABASE: 'coffer',
    QUEUE_PREFIX: 'coffer',
    SOURCE_ROOTS: folders.sources,
    BACKUP_ROOT: folders.backups,
    LOG_LEVEL: 'info',
    // A fresh admin token per run; the API refuses to start without one.
    API_ADMIN_TOKEN: `cfr_faults_${randomBytes(24).toString('base64url')}`,
    // The soak submits thousands of jobs with one token.
    RATE_LIMIT_PER_MINUTE: '1000000',
    JOB_LOCK_MS: '2000',
    JOB_STALLED_CHECK_MS: '1000',
    JOB_BACKOFF_MS: '100',
    ...extra,
  };
}

/** Runs one statement on the log database of the private MariaDB. */
async function queryLog<T>(servers: Servers, sql: string, params: unknown[]): Promise<T[]> {
  const { createConnection } = await import('mysql2/promise');
  const connection = await createConnection({
    host: '127.0.0.1',
    port: servers.mysqlPort,
    user: 'root',
    database: 'coffer',
  });
  try {
    const [rows] = await connection.query(sql, params);
    return rows as T[];
  } finally {
    await connection.end();
  }
}

/** Reads the log table straight from the private MariaDB, oldest first. */
export async function logRows(servers: Servers, jobId?: string): Promise<LogRow[]> {
  return queryLog<LogRow>(
    servers,
    `SELECT id, status, job_id AS jobId, attempt, worker, code, date FROM log ${jobId ? 'WHERE job_id = ?' : ''} ORDER BY id`,
    jobId ? [jobId] : [],
  );
}

/** How many log rows have one of `statuses`, straight from the private MariaDB. */
export async function countLogRows(servers: Servers, statuses: readonly string[]): Promise<number> {
  const [row] = await queryLog<{ n: number | string }>(servers, 'SELECT COUNT(*) AS n FROM log WHERE status IN (?)', [
    statuses,
  ]);
  return Number(row?.n ?? 0);
}

/** The log rows waiting in the workers' outbox in Redis (MySQL away), oldest first. */
export async function outboxRows(servers: Servers, prefix = 'coffer'): Promise<{ status: string; jobId?: string }[]> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    const raw = await redis.lrange(`${prefix}:log-outbox`, 0, -1);
    return raw.map((item) => JSON.parse(item) as { status: string; jobId?: string });
  } finally {
    redis.disconnect();
  }
}

/** `dirs` folders of `filesPerDir` files of `size` bytes each, distinct contents. */
export async function makeTree(root: string, dirs: number, filesPerDir: number, size: number): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  for (let d = 0; d < dirs; d++) {
    const folder = join(root, `d${d}`);
    await mkdir(folder, { recursive: true });
    // In slices, so a large folder does not open more files than the process may.
    for (let first = 0; first < filesPerDir; first += 500) {
      const slice = Array.from({ length: Math.min(500, filesPerDir - first) }, (_, k) => first + k);
      await Promise.all(slice.map((f) => writeFile(join(folder, `f${f}`), Buffer.alloc(size, (d * 31 + f) % 251))));
    }
  }
}

/** Every `.partial-*` folder left anywhere under `root`. */
export async function partialFolders(root: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const found: string[] = [];
  async function visit(dir: string, depth: number): Promise<void> {
    if (depth > 4) return;
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory()) continue;
      if (entry.name.startsWith('.partial-')) found.push(join(dir, entry.name));
      // Snapshot folders hold user data; only destination folders need a look.
      else if (!/^\d{8}T\d{6}\.\d{3}Z-/.test(entry.name)) await visit(join(dir, entry.name), depth + 1);
    }
  }
  await visit(root, 0);
  return found;
}

export interface FaultStack {
  servers: Servers;
  cluster: Cluster;
  sources: string;
  backups: string;
  stop(): Promise<void>;
}

/** Private servers, source and backup folders, and a running API: what every fault test starts from. */
export async function startFaultStack(extra: Record<string, string> = {}): Promise<FaultStack> {
  const servers = await startServers();
  const sources = join(servers.dir, 'sources');
  const backups = join(servers.dir, 'backups');
  await mkdir(sources);
  await mkdir(backups);
  const cluster = await Cluster.create(clusterEnv(servers, { sources, backups }, extra));
  await cluster.startApi();
  return {
    servers,
    cluster,
    sources,
    backups,
    async stop() {
      await cluster.stopAll();
      await servers.stopAll();
    },
  };
}
