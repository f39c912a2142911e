import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type CofferConfig } from '@coffer/shared';
import { deleteQueueKeys, dropDatabase, waitFor } from '../helpers/environment.js';
import { describeTree } from '../helpers/trees.js';
import { copyContext } from './helpers/build-context.js';
import { parseDockerfile } from './helpers/dockerfile.js';
import { replayDockerfile, type Runtime } from './helpers/replay.js';
import { REPO_ROOT, describeRun, run } from './helpers/repo.js';
import { freePort } from '../helpers/ports.js';

// The closest thing to `docker build` + `docker run` without a Docker engine: the build
// context is copied as Docker would send it (.dockerignore applied), each Dockerfile's steps
// run natively in order (pnpm fetch from the lockfile alone → offline install → filtered
// build → pnpm deploy), the build stage is then deleted, and the api and worker are started
// from their deployed folders alone, as the images' CMD says, against the local Redis and
// MySQL. A file missing from the context, a dependency missing from the deployed folder or
// migrations left behind fail here.

const COMPONENTS = ['api', 'worker'] as const;
type Component = (typeof COMPONENTS)[number];

let tmp: string;
const runtimes = {} as Record<Component, Runtime>;
const timings: string[] = [];
let config: CofferConfig;
let variables: Record<string, string>;
const children: { name: string; child: ChildProcess; output: string[] }[] = [];

/** The environment of a container: the image's ENV, then what the deployment sets. */
function containerEnv(component: Component, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', ...runtimes[component].env, ...variables, ...extra };
}

function start(component: Component, extra: Record<string, string>): ChildProcess {
  const [command = 'node', ...args] = runtimes[component].cmd;
  const child = spawn(command, args, {
    cwd: runtimes[component].workdir,
    env: containerEnv(component, extra),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  children.push({ name: component, child, output });
  return child;
}

function healthcheck(component: Component, extra: Record<string, string> = {}) {
  const [command = 'node', ...args] = runtimes[component].healthcheck;
  return run(command, args, {
    cwd: runtimes[component].workdir,
    env: containerEnv(component, extra),
    timeoutMs: 15_000,
  });
}

/** Every symbolic link under `root` (node_modules is full of them) must stay inside it. */
async function linksLeaving(root: string): Promise<string[]> {
  const leaving: string[] = [];
  async function visit(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isSymbolicLink()) {
        const target = resolve(dirname(path), await readlink(path));
        if (relative(root, target).startsWith('..') || !existsSync(target)) leaving.push(`${path} -> ${target}`);
      } else if (entry.isDirectory()) {
        await visit(path);
      }
    }
  }
  await visit(root);
  return leaving;
}

beforeAll(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'coffer-replay-')));
  // Module resolution climbs parent folders: none may offer a node_modules.
  for (let dir = tmp; dir !== dirname(dir); dir = dirname(dir)) {
    expect(existsSync(join(dirname(dir), 'node_modules')), `${dirname(dir)}/node_modules exists`).toBe(false);
  }
  const context = join(tmp, 'context');
  const contextFiles = await copyContext(REPO_ROOT, context);
  const pinned = (JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { packageManager: string })
    .packageManager;

  for (const component of COMPONENTS) {
    const dockerfile = parseDockerfile(await readFile(join(REPO_ROOT, component, 'Dockerfile'), 'utf8'));
    const root = join(tmp, component);
    runtimes[component] = await replayDockerfile(dockerfile, {
      context,
      contextFiles,
      root,
      // The base image's global install of pnpm: this machine's pnpm must be that version.
      async globalInstall(command) {
        const wanted = /\bpnpm@(\S+)/.exec(command)?.[1];
        expect(`pnpm@${wanted}`).toBe(pinned);
        const version = await run('pnpm', ['--version']);
        expect(version.stdout.trim(), 'the pnpm on PATH').toBe(wanted);
      },
      onRun: (command, ms) => timings.push(`${component}: ${command} (${ms} ms)`),
    });
    // As Docker drops the build stage: the runtime stage's folder must stand alone.
    await rm(join(root, 'stage-0'), { recursive: true, force: true });
  }

  const tag = randomBytes(4).toString('hex');
  const sources = join(tmp, 'sources');
  const backups = join(tmp, 'backups');
  await mkdir(sources, { recursive: true });
  await mkdir(backups, { recursive: true });
  variables = {
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    MYSQL_HOST: process.env.MYSQL_HOST ?? '127.0.0.1',
    MYSQL_PORT: process.env.MYSQL_PORT ?? '3306',
    MYSQL_USER: process.env.MYSQL_USER ?? 'root',
    MYSQL_PASSWORD: process.env.MYSQL_PASSWORD ?? '',
    QUEUE_PREFIX: `coffer-replay-${tag}`,
    // A new database: the deployed services must create and migrate it from their own folders.
    MYSQL_DATABASE: `coffer_replay_${tag}`,
    // The images' /data/sources and /data/backups, here in the temporary folder.
    SOURCE_ROOTS: sources,
    BACKUP_ROOT: backups,
    API_ADMIN_TOKEN: randomBytes(24).toString('hex'),
    JOB_BACKOFF_MS: '50',
    LOG_LEVEL: 'info',
  };
  config = loadConfig(variables);
}, 300_000);

afterAll(async () => {
  for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (config) {
    await dropDatabase(config);
    await deleteQueueKeys(config);
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the Dockerfiles, replayed natively', () => {
  it('build stages ran every step: fetch, offline install, filtered build, deploy', () => {
    for (const component of COMPONENTS) {
      const steps = timings.filter((line) => line.startsWith(`${component}: `));
      expect(steps.map((line) => line.replace(/ \(\d+ ms\)$/, '').replace(`${component}: `, ''))).toEqual([
        expect.stringMatching(/^npm install --global .*pnpm@/),
        'pnpm fetch',
        'pnpm install --offline --frozen-lockfile',
        `pnpm --filter @coffer/${component}... build`,
        `pnpm --filter @coffer/${component} --prod deploy --legacy /out`,
      ]);
    }
    console.info(`replayed build steps:\n  ${timings.join('\n  ')}`);
  });

  it.each(COMPONENTS)(
    'the %s folder holds the built service, production dependencies and migrations only',
    async (component) => {
      const app = runtimes[component].workdir;
      expect(runtimes[component].user).toBe('node');
      expect(existsSync(join(app, runtimes[component].cmd[1] ?? 'missing'))).toBe(true);
      const manifest = JSON.parse(await readFile(join(REPO_ROOT, component, 'package.json'), 'utf8')) as {
        dependencies: Record<string, string>;
      };
      for (const dependency of Object.keys(manifest.dependencies)) {
        expect(existsSync(join(app, 'node_modules', dependency, 'package.json')), dependency).toBe(true);
      }
      for (const devOnly of ['typescript', 'vitest', 'eslint', 'prettier', '@types/node']) {
        expect(existsSync(join(app, 'node_modules', devOnly)), devOnly).toBe(false);
      }
      const pnpmStore = await readdir(join(app, 'node_modules', '.pnpm'));
      expect(pnpmStore.filter((name) => /^(typescript|vitest|eslint)@/.test(name))).toEqual([]);
      // Workspace packages are copied with their published files: dist/, and db's migrations/.
      const shipped = (await readdir(join(app, 'node_modules', '@coffer', 'db', 'migrations'))).sort();
      const migrations = (await readdir(join(REPO_ROOT, 'db', 'migrations'))).filter((f) => f.endsWith('.sql')).sort();
      expect(shipped).toEqual(migrations);
      for (const workspacePackage of ['shared', 'db']) {
        const dir = join(app, 'node_modules', '@coffer', workspacePackage);
        expect((await readdir(dir)).filter((name) => name === 'src' || name === 'test')).toEqual([]);
        expect((await lstat(join(dir, 'dist', 'index.js'))).isFile()).toBe(true);
      }
      // pnpm deploy hoists a link to the deployed package itself (.pnpm/node_modules/@coffer/<name>)
      // that points back into the workspace; nothing imports a package by its own name, so
      // that one may dangle. Every other link must resolve inside the folder.
      const selfLink = join(app, 'node_modules', '.pnpm', 'node_modules', '@coffer', component);
      expect((await linksLeaving(app)).filter((link) => !link.startsWith(`${selfLink} -> `))).toEqual([]);
    },
  );

  it('the deployed api and worker migrate a new database, complete a backup and stop cleanly on SIGTERM', async () => {
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    // HOST: the image listens on 0.0.0.0; here loopback is enough.
    const api = start('api', { HOST: '127.0.0.1', PORT: String(port), INSTANCE_NAME: 'replay-api' });
    const worker = start('worker', { INSTANCE_NAME: 'replay-worker' });
    const headers = { authorization: `Bearer ${variables.API_ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const output = () => children.map(({ name, output: lines }) => `--- ${name}\n${lines.join('')}`).join('\n');

    await waitFor(
      async () => ((await fetch(`${baseUrl}/ready`).catch(() => null))?.status === 200 ? true : undefined),
      30_000,
      `the replayed API to be ready\n${output()}`,
    );

    // The images' HEALTHCHECK commands, run in the deployed folders with the same environment.
    const apiHealth = await healthcheck('api', { PORT: String(port) });
    expect(apiHealth.code, describeRun(apiHealth)).toBe(0);
    const workerHealth = await healthcheck('worker');
    expect(workerHealth.code, describeRun(workerHealth)).toBe(0);

    const source = join(variables.SOURCE_ROOTS ?? '', 'project');
    await mkdir(join(source, 'docs', 'empty'), { recursive: true });
    await writeFile(join(source, 'readme.md'), '# replay\n');
    await writeFile(join(source, 'docs', 'data.bin'), randomBytes(100_000));
    const created = await fetch(`${baseUrl}/backup`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ source, destination: 'replay' }),
    });
    const body = (await created.json()) as { id: string; status: string };
    expect(created.status, JSON.stringify(body)).toBe(202);

    const job = await waitFor(
      async () => {
        const view = (await (await fetch(`${baseUrl}/jobs/${body.id}`, { headers })).json()) as {
          status: string;
          result?: { path: string; files: number };
        };
        return ['completed', 'failed', 'cancelled'].includes(view.status) ? view : undefined;
      },
      30_000,
      `job ${body.id} to finish\n${output()}`,
    );
    expect(job.status, JSON.stringify(job)).toBe('completed');
    expect(await describeTree(job.result?.path ?? '')).toEqual(await describeTree(source));

    const logs = (await (await fetch(`${baseUrl}/logs?jobId=${body.id}`, { headers })).json()) as {
      items: { status: string; worker: string }[];
    };
    expect(logs.items.map((row) => row.status).reverse()).toEqual(['queued', 'active', 'completed']);
    expect(logs.items[0]?.worker).toBe('replay-worker');

    api.kill('SIGTERM');
    worker.kill('SIGTERM');
    const codes = await Promise.all(
      [api, worker].map(async (child) =>
        child.exitCode !== null ? child.exitCode : ((await once(child, 'exit')) as [number | null])[0],
      ),
    );
    expect(codes, output()).toEqual([0, 0]);
  }, 90_000);

  it('the HEALTHCHECK commands fail when the service does not answer', async () => {
    const closedPort = await freePort();
    const api = await healthcheck('api', { PORT: String(closedPort) });
    expect(api.code).not.toBe(0);
    const worker = await healthcheck('worker', { REDIS_URL: `redis://127.0.0.1:${closedPort}` });
    expect(worker.code, describeRun(worker)).not.toBe(0);
    expect(worker.signal, 'ends by itself, before Docker would kill it').toBeNull();
  });
});
