import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { loadConfig, type CofferConfig } from '@coffer/shared';
import { REPO_ROOT, describeRun, run, type RunResult } from '../delivery/helpers/repo.js';
import { NO_SETTINGS_FILE, deleteQueueKeys, dropDatabase, waitFor } from '../helpers/environment.js';
import { freePort } from '../helpers/ports.js';
import { describeTree } from '../helpers/trees.js';

// `pnpm test:images`: the api and worker images built and run by a real Docker engine.
// scripts/images/engine.sh starts a private dockerd (Debian's docker.io, installed if missing;
// no bridge, no iptables: builds and containers use the host's network), scripts/images/
// base-image.sh makes a stand-in for node:20-bookworm-slim (Docker Hub is out of reach here;
// cached by content), ci/build-images.sh builds both images with the classic builder and
// `--network host`, and the containers run against this machine's Redis and MariaDB with their
// own queue prefix, database and user, secrets as _FILE, sources and backups bind-mounted.
// Skipped, with the reason, only where no engine can start (not root, no docker.io package,
// dockerd refused). The db image (mysql:8.4 cannot be pulled here) keeps its static checks
// (test/delivery/dockerfiles.test.ts, ci/validate-delivery.sh) and its migrations' native runs.

const ENGINE = join(REPO_ROOT, 'scripts/images/engine.sh');
const BASE_IMAGE = join(REPO_ROOT, 'scripts/images/base-image.sh');
const MB = 1024 * 1024;
// The official node:20-bookworm-slim is about 200 MB, the stand-in about 265 MB (Debian
// minbase 80 MB, the node binary 120 MB, npm 15 MB); what the images add is the deployed
// folder: production dependencies and dist/ (about 25-45 MB). 400 MB leaves room for both
// bases and for growth, and is well below what a leaked build stage (the full workspace
// install: about 300 MB over the base) would weigh. The part over the base has its own budget.
const SIZE_BUDGET = 400 * MB;
const APP_BUDGET = 100 * MB;
const COMPONENTS = ['api', 'worker'] as const;
type Component = (typeof COMPONENTS)[number];
// The grace periods compose gives them (stop_grace_period).
const GRACE_SECONDS: Record<Component, number> = { api: 15, worker: 40 };

const tag = randomBytes(4).toString('hex');
const dockerBin = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
let skipReason: string | undefined;
let engineStarted = false;
let dockerEnv: NodeJS.ProcessEnv = {};
let baseImage = '';
const images = {} as Record<Component, string>;
const containers = {} as Record<Component, string>;
const timings: string[] = [];
let tmp = '';
let sources = '';
let backups = '';
let config: CofferConfig | undefined;
let mysqlUser = '';
let apiPort = 0;
let adminToken = '';

async function timed<T>(what: string, action: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await action();
  } finally {
    timings.push(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

function docker(args: readonly string[], timeoutMs = 120_000): Promise<RunResult> {
  return run(dockerBin, args, { env: dockerEnv, timeoutMs });
}

async function dockerOk(args: readonly string[], timeoutMs?: number): Promise<string> {
  const result = await docker(args, timeoutMs);
  expect(result.code, `docker ${args.join(' ')}\n${describeRun(result)}`).toBe(0);
  return result.stdout.trim();
}

async function inspect(container: string, format: string): Promise<string> {
  return (await docker(['inspect', '--format', format, container])).stdout.trim();
}

async function logsOf(): Promise<string> {
  const parts: string[] = [];
  for (const component of COMPONENTS) {
    if (!containers[component]) continue;
    const logs = await docker(['logs', '--tail', '40', containers[component]]);
    parts.push(`--- ${component}\n${logs.stdout}${logs.stderr}`);
  }
  return parts.join('\n');
}

function requireEngine(context: TestContext): void {
  if (skipReason !== undefined) context.skip(skipReason);
}

beforeAll(async () => {
  const started = await timed('engine start (installs docker.io when missing)', () =>
    run('bash', [ENGINE, 'start'], { timeoutMs: 600_000 }),
  );
  if (started.code === 3) {
    // engine.sh's last line: "no Docker engine here: <why>".
    skipReason = started.stderr.trim().split('\n').at(-1) ?? 'no Docker engine here';
    console.warn(`test:images skipped (not failed): ${skipReason}`);
    return;
  }
  expect(started.code, describeRun(started)).toBe(0);
  engineStarted = true;
  const host = /^DOCKER_HOST=(.+)$/m.exec(started.stdout)?.[1];
  expect(host, started.stdout).toBeDefined();
  // Debian's engine speaks API 1.41: a newer client on the PATH is pinned to it.
  dockerEnv = { ...process.env, DOCKER_HOST: host, DOCKER_API_VERSION: '1.41', DOCKER_BUILDKIT: '0' };
}, 660_000);

afterAll(async () => {
  if (engineStarted) {
    for (const component of COMPONENTS) {
      if (containers[component]) await docker(['rm', '--force', '--volumes', containers[component]]);
    }
    // Old images the builds left untagged; the last day's stay as the next run's build cache.
    await docker(['image', 'prune', '--force', '--filter', 'until=24h']);
  }
  if (config) {
    await dropDatabase(config);
    await deleteQueueKeys(config);
  }
  if (mysqlUser) {
    const connection = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root', password: '' });
    await connection.query(`DROP USER IF EXISTS '${mysqlUser}'@'%'`);
    await connection.end();
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
  if (engineStarted) {
    const stopped = await timed('engine stop', () => run('bash', [ENGINE, 'stop'], { timeoutMs: 90_000 }));
    expect(stopped.code, describeRun(stopped)).toBe(0);
  }
  if (timings.length > 0) console.info(`test:images timings:\n  ${timings.join('\n  ')}`);
}, 180_000);

describe('the api and worker images, built and run by a real engine', () => {
  it('has a Node 20 base image: the stand-in for node:20-bookworm-slim, cached by content', async (context) => {
    requireEngine(context);
    const made = await timed('base image (stand-in, cached by content)', () =>
      run('bash', [BASE_IMAGE], { env: dockerEnv, timeoutMs: 840_000 }),
    );
    expect(made.code, describeRun(made)).toBe(0);
    for (const line of made.stderr.split('\n')) {
      if (/^\s+.+: \d+ s$/.test(line)) timings.push(`  base image, ${line.trim()}`);
    }
    baseImage = made.stdout.trim().split('\n').at(-1) ?? '';
    expect(baseImage).toMatch(/^coffer-base\/node:20-bookworm-slim-[0-9a-f]{16}$/);
    const versions = await dockerOk([
      'run',
      '--rm',
      '--network',
      'host',
      baseImage,
      'sh',
      '-c',
      'node --version; id -u node',
    ]);
    expect(versions.split('\n')).toEqual([expect.stringMatching(/^v20\./), '1000']);
  });

  it('builds both with ci/build-images.sh: classic builder, NODE_IMAGE and DOCKER_BUILD_FLAGS', async (context) => {
    requireEngine(context);
    expect(baseImage, 'the base image').not.toBe('');
    const build = await timed('api and worker builds (ci/build-images.sh)', () =>
      run('bash', ['ci/build-images.sh'], {
        env: {
          ...dockerEnv,
          REGISTRY: 'localhost',
          IMAGE_NAMESPACE: 'coffer-images-test',
          IMAGE_TAG: 'ci',
          IMAGE_COMPONENTS: COMPONENTS.join(' '),
          NODE_IMAGE: baseImage,
          DOCKER_BUILD_FLAGS: '--network host',
        },
        timeoutMs: 840_000,
      }),
    );
    expect(build.code, describeRun(build)).toBe(0);
    for (const component of COMPONENTS) {
      images[component] = `localhost/coffer-images-test/${component}:ci`;
      const user = await dockerOk(['image', 'inspect', '--format', '{{.Config.User}}', images[component]]);
      expect(user, `${component} runs as`).toBe('node');
    }
  });

  it('keeps both images under the size budget', async (context) => {
    requireEngine(context);
    const base = Number(await dockerOk(['image', 'inspect', '--format', '{{.Size}}', baseImage]));
    const lines = [`base ${baseImage}: ${(base / MB).toFixed(0)} MB`];
    for (const component of COMPONENTS) {
      const size = Number(await dockerOk(['image', 'inspect', '--format', '{{.Size}}', images[component]]));
      lines.push(
        `${component}: ${(size / MB).toFixed(0)} MB (${((size - base) / MB).toFixed(0)} MB over the base; budget ${SIZE_BUDGET / MB} MB, ${APP_BUDGET / MB} MB over the base)`,
      );
      expect(size, `${component} image size`).toBeLessThanOrEqual(SIZE_BUDGET);
      expect(size - base, `${component}: what it adds to the base`).toBeLessThanOrEqual(APP_BUDGET);
    }
    timings.push(...lines.map((line) => `size ${line}`));
    console.info(`image sizes:\n  ${lines.join('\n  ')}`);
  });

  it('runs both against Redis and MariaDB: ready, a backup completed by the worker container, an exact snapshot', async (context) => {
    requireEngine(context);
    tmp = await realpath(await mkdtemp(join(tmpdir(), 'coffer-images-')));
    await chmod(tmp, 0o755);
    sources = join(tmp, 'sources');
    backups = join(tmp, 'backups');
    const secrets = join(tmp, 'secrets');
    await mkdir(sources, { mode: 0o755 });
    await mkdir(backups, { mode: 0o755 });
    await mkdir(secrets, { mode: 0o755 });
    // The service user (node, uid 1000) writes snapshots; the secrets are its to read only.
    await chown(backups, 1000, 1000);
    adminToken = randomBytes(24).toString('hex');
    const mysqlPassword = randomBytes(18).toString('hex');
    for (const [name, value] of [
      ['api_admin_token', adminToken],
      ['mysql_password', mysqlPassword],
    ] as const) {
      await writeFile(join(secrets, name), `${value}\n`, { mode: 0o400 });
      await chown(join(secrets, name), 1000, 1000);
    }

    // Its own database and a user that may use that database only, with a password.
    const database = `coffer_images_${tag}`;
    mysqlUser = `coffer_img_${tag}`;
    const root = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root', password: '' });
    await root.query(`CREATE USER '${mysqlUser}'@'%' IDENTIFIED BY '${mysqlPassword}'`);
    await root.query(`GRANT ALL PRIVILEGES ON \`${database}\`.* TO '${mysqlUser}'@'%'`);
    await root.end();
    const queuePrefix = `coffer-images-${tag}`;
    config = loadConfig({
      REDIS_URL: 'redis://127.0.0.1:6379',
      QUEUE_PREFIX: queuePrefix,
      MYSQL_HOST: '127.0.0.1',
      MYSQL_USER: 'root',
      MYSQL_DATABASE: database,
      ...NO_SETTINGS_FILE,
    });

    apiPort = await freePort();
    const common = [
      '--detach',
      '--network',
      'host',
      '--init',
      // The images' HEALTHCHECKs, probed every 2 s instead of 15 s.
      '--health-interval',
      '2s',
      '--env',
      'REDIS_URL=redis://127.0.0.1:6379',
      '--env',
      `QUEUE_PREFIX=${queuePrefix}`,
      '--env',
      'MYSQL_HOST=127.0.0.1',
      '--env',
      'MYSQL_PORT=3306',
      '--env',
      `MYSQL_USER=${mysqlUser}`,
      '--env',
      'MYSQL_PASSWORD_FILE=/run/secrets/mysql_password',
      '--env',
      `MYSQL_DATABASE=${database}`,
      '--env',
      'SOURCE_ROOTS=/data/sources',
      '--env',
      'BACKUP_ROOT=/data/backups',
      '--env',
      'JOB_BACKOFF_MS=50',
      '--volume',
      `${join(secrets, 'mysql_password')}:/run/secrets/mysql_password:ro`,
      '--label',
      `coffer.images-test=${tag}`,
    ];
    containers.worker = `coffer-images-worker-${tag}`;
    await timed('worker container start', () =>
      dockerOk([
        'run',
        ...common,
        '--name',
        containers.worker,
        '--env',
        `INSTANCE_NAME=images-worker-${tag}`,
        '--volume',
        `${sources}:/data/sources:ro`,
        '--volume',
        `${backups}:/data/backups`,
        images.worker,
      ]),
    );
    containers.api = `coffer-images-api-${tag}`;
    await timed('api container start', () =>
      dockerOk([
        'run',
        ...common,
        '--name',
        containers.api,
        // On the host's network: loopback and a free port, never the image's 0.0.0.0:3000.
        '--env',
        'HOST=127.0.0.1',
        '--env',
        `PORT=${apiPort}`,
        '--env',
        `INSTANCE_NAME=images-api-${tag}`,
        '--env',
        'API_ADMIN_TOKEN_FILE=/run/secrets/api_admin_token',
        '--volume',
        `${join(secrets, 'api_admin_token')}:/run/secrets/api_admin_token:ro`,
        '--volume',
        `${backups}:/data/backups:ro`,
        images.api,
      ]),
    );

    const baseUrl = `http://127.0.0.1:${apiPort}`;
    await timed('api /ready', () =>
      waitFor(
        async () => ((await fetch(`${baseUrl}/ready`).catch(() => null))?.status === 200 ? true : undefined),
        90_000,
        'the API container to be ready',
      ).catch(async (error: unknown) => {
        throw new Error(`${String(error)}\n${await logsOf()}`);
      }),
    );

    // Read-only sources, files of several modes, an empty folder; the worker reads them as uid 1000.
    const project = join(sources, 'project');
    await mkdir(join(project, 'docs', 'empty'), { recursive: true, mode: 0o755 });
    await writeFile(join(project, 'readme.md'), '# images\n', { mode: 0o644 });
    await writeFile(join(project, 'run.sh'), '#!/bin/sh\necho coffer\n', { mode: 0o755 });
    await writeFile(join(project, 'docs', 'data.bin'), randomBytes(200_000), { mode: 0o444 });
    await chmod(join(project, 'docs', 'empty'), 0o775);
    const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const job = await timed('backup through the containers', async () => {
      const created = await fetch(`${baseUrl}/backup`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ source: '/data/sources/project', destination: 'images' }),
      });
      const body = (await created.json()) as { id: string };
      expect(created.status, JSON.stringify(body)).toBe(202);
      return waitFor(
        async () => {
          const view = (await (await fetch(`${baseUrl}/jobs/${body.id}`, { headers })).json()) as {
            id: string;
            status: string;
            result?: { path: string; files: number };
          };
          return ['completed', 'failed', 'cancelled'].includes(view.status) ? view : undefined;
        },
        60_000,
        `job ${body.id} to finish`,
      ).catch(async (error: unknown) => {
        throw new Error(`${String(error)}\n${await logsOf()}`);
      });
    });
    expect(job.status, `${JSON.stringify(job)}\n${await logsOf()}`).toBe('completed');
    const snapshot = job.result?.path ?? '';
    expect(snapshot.startsWith('/data/backups/'), snapshot).toBe(true);
    // The worker's /data/backups is this machine's `backups` folder.
    const onHost = join(backups, snapshot.slice('/data/backups/'.length));
    expect(await describeTree(onHost)).toEqual(await describeTree(project));

    const logs = (await (await fetch(`${baseUrl}/logs?jobId=${job.id}`, { headers })).json()) as {
      items: { status: string; worker: string }[];
    };
    expect(logs.items.map((row) => row.status).reverse()).toEqual(['queued', 'active', 'completed']);
    expect(logs.items[0]?.worker, 'the worker container did it').toBe(`images-worker-${tag}`);
  });

  it('reports both HEALTHCHECKs healthy', async (context) => {
    requireEngine(context);
    for (const component of COMPONENTS) {
      const status = await timed(`${component} healthy`, () =>
        waitFor(
          async () => {
            const health = await inspect(containers[component], '{{.State.Health.Status}}');
            return health === 'healthy' || health === 'unhealthy' ? health : undefined;
          },
          60_000,
          `${component} to be healthy or unhealthy`,
        ),
      );
      expect(status, `${component}\n${await inspect(containers[component], '{{json .State.Health}}')}`).toBe('healthy');
    }
  });

  it('runs every process as the non-root node user', async (context) => {
    requireEngine(context);
    for (const component of COMPONENTS) {
      expect(await dockerOk(['exec', containers[component], 'id', '-u'])).toBe('1000');
      // Every process of the container, tini (--init) and node included, as the host sees it.
      const top = await dockerOk(['top', containers[component], '-eo', 'pid,uid,comm']);
      const rows = top
        .split('\n')
        .slice(1)
        .map((line) => line.trim().split(/\s+/));
      expect(rows.map((row) => row[2]).sort(), top).toEqual(expect.arrayContaining(['docker-init', 'node']));
      expect(new Set(rows.map((row) => row[1])), top).toEqual(new Set(['1000']));
    }
  });

  it('stops both on `docker stop` within the grace period, with exit code 0', async (context) => {
    requireEngine(context);
    for (const component of COMPONENTS) {
      const grace = GRACE_SECONDS[component];
      const started = Date.now();
      const stopped = await timed(`${component} docker stop -t ${grace}`, () =>
        docker(['stop', '--time', String(grace), containers[component]], (grace + 30) * 1000),
      );
      const seconds = (Date.now() - started) / 1000;
      expect(stopped.code, describeRun(stopped)).toBe(0);
      expect(seconds, `${component} stopped after ${seconds} s`).toBeLessThan(grace);
      const state = await inspect(containers[component], '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}');
      expect(state, await logsOf()).toBe('exited 0 false');
    }
  });
});
