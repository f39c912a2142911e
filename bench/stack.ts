import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createConnection } from 'mysql2/promise';
import { ROOT } from './settings.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
const MYSQL = {
  host: process.env.MYSQL_HOST ?? '127.0.0.1',
  port: Number(process.env.MYSQL_PORT ?? 3306),
  user: process.env.MYSQL_USER ?? 'root',
  password: process.env.MYSQL_PASSWORD ?? '',
};

/** Redis prefixes and MySQL databases one benchmark created, removed by `cleanup`. */
export interface Scope {
  tag: string;
  prefixes: string[];
  databases: string[];
  processes: ChildProcess[];
  logDir: string;
}

export function createScope(logDir: string): Scope {
  return { tag: randomBytes(3).toString('hex'), prefixes: [], databases: [], processes: [], logDir };
}

/** A fresh queue prefix and database name, registered for cleanup. */
export function isolate(scope: Scope, name: string): { prefix: string; database: string } {
  const prefix = `coffer-bench-${scope.tag}-${name}`;
  const database = `coffer_bench_${scope.tag}_${name}`.replace(/[^A-Za-z0-9_]/g, '_');
  scope.prefixes.push(prefix);
  scope.databases.push(database);
  return { prefix, database };
}

/** The environment of a Coffer process: the machine's Redis and MySQL, the scope's prefix and database. */
export function cofferEnvironment(
  isolation: { prefix: string; database: string },
  extra: Record<string, string>,
): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    // A developer's coffer.env must not change what is measured.
    COFFER_ENV_FILE: '/dev/null',
    REDIS_URL,
    MYSQL_HOST: MYSQL.host,
    MYSQL_PORT: String(MYSQL.port),
    MYSQL_USER: MYSQL.user,
    MYSQL_PASSWORD: MYSQL.password,
    QUEUE_PREFIX: isolation.prefix,
    MYSQL_DATABASE: isolation.database,
    ...extra,
  };
}

export const redisUrl = REDIS_URL;
export const mysqlServer = MYSQL;

/** Starts `node <args>` from the repository root, its output in `<logDir>/<name>.log`. */
export function launch(scope: Scope, name: string, args: readonly string[], env: Record<string, string>): ChildProcess {
  const log = createWriteStream(join(scope.logDir, `${name}.log`));
  // BENCH_PROFILE_DIR: each process writes a CPU profile there when it exits (see `pnpm bench:profile`).
  const profile = PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
  const child = spawn(process.execPath, [...profile, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  scope.processes.push(child);
  return child;
}

/** Polls `url` until it answers 200. */
export async function waitForHttp(url: string, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited with code ${child.exitCode}`);
    const response = await fetch(url).catch(() => null);
    if (response?.status === 200) return;
    await sleep(100);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
}

/** Waits until the process wrote `text` to its log (a worker has no port to poll). */
export async function waitForLog(scope: Scope, name: string, text: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const log = readFileSync(join(scope.logDir, `${name}.log`), 'utf8');
    if (log.includes(text)) return;
    await sleep(100);
  }
  throw new Error(`${name} did not log "${text}" within ${timeoutMs} ms`);
}

/** Peak resident memory of a process so far (VmHWM), in MiB. */
export function peakRssMiB(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid ?? 0}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error('no VmHWM in /proc status');
  return Number(match[1]) / 1024;
}

/** Resets the process's peak RSS to its current RSS (Linux ≥ 4.0, `/proc/<pid>/clear_refs`); false when refused. */
export function resetPeakRss(child: ChildProcess): boolean {
  try {
    writeFileSync(`/proc/${child.pid ?? 0}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Stops the scope's processes, drops its databases and deletes its queue keys. */
export async function cleanup(scope: Scope): Promise<void> {
  await Promise.all(scope.processes.map(stop));
  const connection = await createConnection(MYSQL);
  try {
    for (const database of scope.databases) await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
  } finally {
    await connection.end();
  }
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    for (const prefix of scope.prefixes) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
}
