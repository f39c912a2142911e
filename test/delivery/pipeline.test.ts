import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, describeRun, run } from './helpers/repo.js';

// The Jenkinsfile, run here without Jenkins or Docker: its `sh` steps, in order, with the
// parameters and environment it declares, against a fake docker (test/delivery/fixtures/
// fake-docker.mjs) that models an engine and a registry, and fake pnpm/npm. Three builds on
// the same "Docker host": a first deploy, an update to a new commit with fewer workers, and
// a re-run of the same commit that must change nothing.

interface Call {
  tool: string;
  args: string[];
  env?: Record<string, string>;
  dockerConfig?: string | null;
  failed?: string;
  passwordOnCommandLine?: boolean;
  passwordDigest?: string;
  envFromEnvironment?: Record<string, string>;
}
interface Container {
  name: string;
  image: string;
  command: string[];
  network: string;
  aliases: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  volumes: string[];
  publish: string[];
  init: boolean;
  restart: string;
  running: boolean;
}
interface EngineState {
  images: Record<string, string>;
  registry: Record<string, string>;
  containers: Record<string, Container>;
  networks: string[];
  logins: Record<string, unknown>;
}
interface SmokeRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: { source?: string; destination?: string } | undefined;
  probeFiles: string[];
}

const REGISTRY = 'nexus.example.test:8443';
const NEXUS_USER = 'ci-pusher';
const NEXUS_PASSWORD = randomBytes(12).toString('hex');
const COMMITS = ['0123456789abcdef0123456789abcdef01234567', 'fedcba9876543210fedcba9876543210fedcba98'] as const;
const digest = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

let tmp: string;
let workspace: string;
let bin: string;
let fakeDir: string;
let secretsDir: string;
let sourcesDir: string;
let jenkinsfile: string;
let steps: { line: number; script: string }[];
let smokeServer: Server;
let smokeUrl: string;
const smokeRequests: SmokeRequest[] = [];

/** The defaults of the Jenkinsfile's parameters. */
function parameterDefaults(): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const match of jenkinsfile.matchAll(
    /(?:string|booleanParam)\(name: '([A-Z_]+)', defaultValue: ('[^']*'|true|false)/g,
  )) {
    defaults[match[1] ?? ''] = (match[2] ?? '').replace(/^'|'$/g, '');
  }
  return defaults;
}

/** The Jenkinsfile's environment block, evaluated as Jenkins would ("${params.X ?: env.Y}"). */
function environmentBlock(params: Record<string, string>, env: Record<string, string>): Record<string, string> {
  const block = /\n {4}environment \{([\s\S]*?)\n {4}\}/.exec(jenkinsfile)?.[1] ?? '';
  const evaluate = (expression: string): string => {
    for (const operand of expression.replace(/[()]/g, '').split('?:')) {
      const term = operand.trim();
      const value = term.startsWith('params.')
        ? params[term.slice(7)]
        : term.startsWith('env.')
          ? env[term.slice(4)]
          : /^'(.*)'$/.exec(term)?.[1];
      if (value) return value;
    }
    return '';
  };
  const result: Record<string, string> = {};
  for (const match of block.matchAll(/^\s*([A-Z_]+) = "(.*)"$/gm)) {
    result[match[1] ?? ''] = (match[2] ?? '').replace(/\$\{([^}]*)\}/g, (_, expression: string) =>
      evaluate(expression),
    );
  }
  return result;
}

async function calls(): Promise<Call[]> {
  const text = await readFile(join(fakeDir, 'calls.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Call);
}
async function engine(): Promise<EngineState> {
  return JSON.parse(await readFile(join(fakeDir, 'state.json'), 'utf8')) as EngineState;
}
const docker = (list: Call[], command: string) => list.filter((c) => c.tool === 'docker' && c.args[0] === command);
/** The value of each `--flag value` in a docker call. */
const flagValues = (call: Call, flag: string) =>
  call.args.flatMap((arg, i) => (arg === flag ? [call.args[i + 1] ?? ''] : []));

interface Build {
  number: number;
  commit: string;
  parameters: Record<string, string>;
  /** Calls made by this build only. */
  calls: Call[];
  env: Record<string, string>;
  results: { line: number; script: string; code: number | null; output: string }[];
}

/** Runs the Jenkinsfile's sh steps in order, as one build of the job would. */
async function runBuild(number: number, commit: string, overrides: Record<string, string>): Promise<Build> {
  const before = (await calls()).length;
  const parameters: Record<string, string> = {
    ...parameterDefaults(),
    REGISTRY_HOST: REGISTRY,
    SECRETS_DIR: secretsDir,
    SOURCES_DIR: sourcesDir,
    API_PORT: '18085',
    DEPLOY_NETWORK: 'coffer-it',
    ...overrides,
  };
  const jenkins = {
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    HOME: join(tmp, 'home'),
    WORKSPACE: workspace,
    BUILD_NUMBER: String(number),
    BUILD_TAG: `jenkins-coffer/main-${number}`,
    GIT_COMMIT: commit,
  };
  const env: Record<string, string> = {
    ...jenkins,
    ...parameters,
    ...environmentBlock(parameters, jenkins),
    SMOKE_API_URL: smokeUrl,
    SMOKE_TIMEOUT: '20',
    FAKE_DOCKER_DIR: fakeDir,
    FAKE_PNPM_VERSION: '9.0.0',
  };
  const results: Build['results'] = [];
  let failed = false;
  for (const step of steps) {
    const isPost = step.line > jenkinsfile.indexOf('\n    post {') && isInPost(step.line);
    const isDeployStage = /ci\/(deploy|smoke-test)\.sh/.test(step.script);
    if ((failed && !isPost) || (isDeployStage && parameters.DEPLOY !== 'true')) continue;
    // withCredentials binds the registry login only around the step that uses it.
    const credentials = step.script.includes('$NEXUS_') ? { NEXUS_USER, NEXUS_PASSWORD } : {};
    const result = await run('sh', ['-xe', '-c', step.script], { cwd: workspace, env: { ...env, ...credentials } });
    results.push({ ...step, code: result.code, output: describeRun(result) });
    if (result.code !== 0) failed = true;
  }
  return { number, commit, parameters, env, results, calls: (await calls()).slice(before) };
}

function isInPost(line: number): boolean {
  const postLine = jenkinsfile.slice(0, jenkinsfile.indexOf('\n    post {')).split('\n').length;
  return line > postLine;
}

function expectAllPassed(build: Build): void {
  for (const result of build.results) expect(result.code, `Jenkinsfile:${result.line} ${result.output}`).toBe(0);
  expect(build.results.map((r) => r.line)).toEqual(steps.map((s) => s.line));
}

const tagOf = (commit: string) => commit.slice(0, 12);
const image = (component: string, tag: string) => `${REGISTRY}/coffer/${component}:${tag}`;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coffer-pipeline-'));
  workspace = join(tmp, 'workspace');
  bin = join(tmp, 'bin');
  fakeDir = join(tmp, 'docker');
  secretsDir = join(tmp, 'secrets');
  sourcesDir = join(tmp, 'sources');
  for (const dir of [workspace, bin, fakeDir, sourcesDir, join(tmp, 'home')]) await mkdir(dir, { recursive: true });
  // The workspace: what the pipeline scripts read from a checkout.
  const files = ['Jenkinsfile', 'package.json', 'api/Dockerfile', 'worker/Dockerfile', 'db/Dockerfile'];
  for (const name of await readdir(join(REPO_ROOT, 'ci'))) files.push(`ci/${name}`);
  for (const file of files) {
    await mkdir(dirname(join(workspace, file)), { recursive: true });
    await copyFile(join(REPO_ROOT, file), join(workspace, file));
    if (file.endsWith('.sh')) await chmod(join(workspace, file), 0o755);
  }
  for (const [name, fixture] of [
    ['docker', 'fake-docker.mjs'],
    ['pnpm', 'fake-tool.mjs'],
    ['npm', 'fake-tool.mjs'],
  ] as const) {
    await copyFile(join(REPO_ROOT, 'test/delivery/fixtures', fixture), join(bin, name));
    await chmod(join(bin, name), 0o755);
  }
  const secrets = await run('sh', ['compose/init-secrets.sh', secretsDir]);
  expect(secrets.code, describeRun(secrets)).toBe(0);

  jenkinsfile = await readFile(join(REPO_ROOT, 'Jenkinsfile'), 'utf8');
  const extracted = await run('node', ['ci/jenkins-sh-steps.mjs', 'Jenkinsfile']);
  expect(extracted.code, describeRun(extracted)).toBe(0);
  steps = JSON.parse(extracted.stdout) as typeof steps;

  // The deployed API, as the smoke test sees it: answers at once, completes on the 2nd poll.
  let polls = 0;
  smokeServer = createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      const body = text ? (JSON.parse(text) as SmokeRequest['body']) : undefined;
      const probe = body?.source?.replace(/^\/data\/sources\//, `${sourcesDir}/`);
      const probeFiles: string[] = [];
      if (probe && existsSync(probe)) {
        probeFiles.push(...['hello.txt', 'sub/nested.txt'].filter((file) => existsSync(join(probe, file))));
      }
      smokeRequests.push({
        method: request.method ?? '',
        url: request.url ?? '',
        authorization: request.headers.authorization,
        body,
        probeFiles,
      });
      response.setHeader('content-type', 'application/json');
      if (request.url === '/ready') return response.end('{"status":"ok"}');
      if (request.method === 'POST' && request.url === '/backup') {
        polls = 0;
        response.statusCode = 202;
        return response.end(JSON.stringify({ id: 'job-1', status: 'queued' }));
      }
      if (request.url === '/jobs/job-1') {
        polls++;
        return response.end(
          JSON.stringify(
            polls < 2
              ? { id: 'job-1', status: 'active' }
              : { id: 'job-1', status: 'completed', result: { path: '/data/backups/coffer-smoke/x', files: 2 } },
          ),
        );
      }
      response.statusCode = 404;
      response.end('{}');
    });
  });
  smokeServer.listen(0, '127.0.0.1');
  await once(smokeServer, 'listening');
  const address = smokeServer.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  smokeUrl = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  smokeServer?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('Jenkinsfile', () => {
  it('is a thin declarative pipeline for Linux agents: every stage calls a ci/ script', () => {
    expect(jenkinsfile).toMatch(/^pipeline \{/m);
    expect(jenkinsfile).not.toMatch(/\bbat\b|\bpowershell\b/);
    const stages = [...jenkinsfile.matchAll(/stage\('([^']+)'\)/g)].map((m) => m[1]);
    expect(stages).toEqual([
      'Checkout',
      'Install',
      'Lint, typecheck, test',
      'Build images',
      'Push to Nexus',
      'Deploy',
      'Smoke test',
    ]);
    const scripts = steps.filter((s) => !s.script.includes('docker log'));
    expect(scripts.map((s) => s.script)).toEqual([
      'ci/check-params.sh',
      'ci/install.sh',
      'ci/test.sh',
      'ci/build-images.sh',
      'ci/push-images.sh',
      'ci/deploy.sh',
      'ci/smoke-test.sh',
      'ci/cleanup.sh',
    ]);
    for (const { script } of scripts) expect(existsSync(join(REPO_ROOT, script)), script).toBe(true);
  });

  it('takes the registry, credentials id, replicas and port from parameters, never literals', () => {
    expect(Object.keys(parameterDefaults())).toEqual(
      expect.arrayContaining(['REGISTRY_HOST', 'REGISTRY_CREDENTIALS_ID', 'WORKER_REPLICAS', 'API_PORT']),
    );
    expect(parameterDefaults().REGISTRY_HOST).toBe('');
    expect(jenkinsfile).toContain('credentialsId: params.REGISTRY_CREDENTIALS_ID');
    // Outside the parameters block (defaults a job may change): no host, domain or port.
    const code = jenkinsfile.replace(/\n {4}parameters \{[\s\S]*?\n {4}\}/, '');
    expect(code).toContain('credentialsId: params.REGISTRY_CREDENTIALS_ID');
    expect(code).not.toMatch(/[a-z0-9-]+\.[a-z]{2,}(:\d+)?\//i);
    expect(code).not.toMatch(/\b\d{4,5}\b/);
  });

  it('logs in with --password-stdin in a single-quoted sh inside withCredentials, into a per-build DOCKER_CONFIG, and logs out in post', () => {
    expect(jenkinsfile).toMatch(
      /withCredentials\(\[usernamePassword\(credentialsId: params\.REGISTRY_CREDENTIALS_ID,\s*usernameVariable: 'NEXUS_USER', passwordVariable: 'NEXUS_PASSWORD'\)\]\) \{\s*(\/\/.*\s*)*sh '''echo "\$NEXUS_PASSWORD" \| docker login --username "\$NEXUS_USER" --password-stdin "\$REGISTRY"'''\s*\}/,
    );
    expect(jenkinsfile).toMatch(/DOCKER_CONFIG = "\$\{env\.WORKSPACE\}\/\.docker-\$\{env\.BUILD_NUMBER\}"/);
    const post = jenkinsfile.slice(jenkinsfile.indexOf('\n    post {'));
    expect(post).toContain(`sh 'docker logout "$REGISTRY" || true'`);
    // No Groovy-interpolated shell anywhere.
    expect(jenkinsfile).not.toMatch(/\bsh\s*\(?\s*"/);
  });
});

describe('the pipeline against a fake Docker host', () => {
  let first: Build;
  let second: Build;
  let third: Build;

  beforeAll(async () => {
    first = await runBuild(7, COMMITS[0], { WORKER_REPLICAS: '3' });
    second = await runBuild(8, COMMITS[1], { WORKER_REPLICAS: '2' });
    third = await runBuild(9, COMMITS[1], { WORKER_REPLICAS: '2' });
  }, 120_000);

  it('runs every step of three builds to success', () => {
    expectAllPassed(first);
    expectAllPassed(second);
    expectAllPassed(third);
  });

  it('installs the pinned pnpm and the workspace, then lints, typechecks and tests against sidecar containers', async () => {
    const npm = first.calls.filter((c) => c.tool === 'npm');
    expect(npm.map((c) => c.args)).toEqual([
      ['install', '--prefix', `${workspace}/.ci-tools`, '--no-audit', '--no-fund', '--no-save', 'pnpm@10.34.9'],
    ]);
    const pnpm = first.calls.filter((c) => c.tool === 'pnpm' && c.args[0] !== '--version');
    expect(pnpm.map((c) => c.args.slice(0, 2))).toEqual([
      ['install', '--frozen-lockfile'],
      ['lint'],
      ['typecheck'],
      ['test', '--reporter=default'],
    ]);
    const runs = docker(first.calls, 'run').filter((c) =>
      flagValues(c, '--label').some((l) => l.startsWith('coffer.ci=')),
    );
    expect(runs.map((c) => flagValues(c, '--publish'))).toEqual([['127.0.0.1::6379'], ['127.0.0.1::3306']]);
    const mysql = runs[1];
    // The sidecar's root password travels by environment, never on a command line.
    expect(Object.keys(mysql?.envFromEnvironment ?? {})).toEqual(['MYSQL_ROOT_PASSWORD']);
    const testEnv = pnpm.at(-1)?.env ?? {};
    expect(testEnv).toMatchObject({
      REDIS_URL: 'redis://127.0.0.1:46379',
      MYSQL_HOST: '127.0.0.1',
      MYSQL_PORT: '43306',
      MYSQL_USER: 'root',
    });
    expect(digest(testEnv.MYSQL_PASSWORD ?? '')).toBe(mysql?.envFromEnvironment?.MYSQL_ROOT_PASSWORD);
    expect(Object.values((await engine()).containers).filter((c) => 'coffer.ci' in c.labels)).toEqual([]);
  });

  it('builds the three images with the short commit and latest tags', () => {
    const builds = docker(first.calls, 'build');
    expect(builds.map((c) => [flagValues(c, '--file'), flagValues(c, '--tag'), c.args.at(-1)])).toEqual(
      ['api', 'worker', 'db'].map((component) => [
        [`${component}/Dockerfile`],
        [image(component, tagOf(COMMITS[0])), image(component, 'latest')],
        '.',
      ]),
    );
  });

  it('logs in to the configured registry with the password on stdin, then pushes both tags of each image there', () => {
    const logins = docker(first.calls, 'login');
    expect(logins).toHaveLength(1);
    expect(logins[0]?.args).toEqual(['login', '--username', NEXUS_USER, '--password-stdin', REGISTRY]);
    expect(logins[0]?.passwordOnCommandLine).toBeUndefined();
    expect(logins[0]?.passwordDigest).toBe(digest(NEXUS_PASSWORD));
    const pushes = docker(first.calls, 'push').map((c) => c.args[1]);
    expect(pushes).toEqual(
      ['api', 'worker', 'db'].flatMap((component) => [image(component, tagOf(COMMITS[0])), image(component, 'latest')]),
    );
    expect(first.calls.indexOf(logins[0] as Call)).toBeLessThan(
      first.calls.indexOf(docker(first.calls, 'push')[0] as Call),
    );
  });

  it('uses its own DOCKER_CONFIG for every docker call, removed with the login in post', async () => {
    const config = `${workspace}/.docker-7`;
    expect(new Set(first.calls.filter((c) => c.tool === 'docker').map((c) => c.dockerConfig))).toEqual(
      new Set([config]),
    );
    expect(docker(first.calls, 'logout').map((c) => c.args)).toEqual([['logout', REGISTRY]]);
    expect(existsSync(config)).toBe(false);
    expect((await engine()).logins).toEqual({});
  });

  it('creates the network once and attaches every deployed container to it, with images of the build tag', async () => {
    expect(
      docker(first.calls, 'network')
        .filter((c) => c.args[1] === 'create')
        .map((c) => c.args),
    ).toEqual([['network', 'create', 'coffer-it']]);
    const deployed = docker(first.calls, 'run').filter((c) =>
      flagValues(c, '--label').includes('coffer.deployment=coffer'),
    );
    expect(deployed.map((c) => flagValues(c, '--name')[0])).toEqual([
      'coffer-redis',
      'coffer-db',
      'coffer-api',
      'coffer-worker-1',
      'coffer-worker-2',
      'coffer-worker-3',
    ]);
    for (const call of deployed) expect(flagValues(call, '--network'), call.args.join(' ')).toEqual(['coffer-it']);
    // Pulled back from the registry: what runs is what Nexus serves.
    const pulls = docker(first.calls, 'pull').map((c) => c.args.at(-1));
    for (const component of ['db', 'api', 'worker']) expect(pulls).toContain(image(component, tagOf(COMMITS[0])));

    const { containers } = await engine();
    const state = (name: string) => containers[name] as Container;
    expect(state('coffer-api').image).toBe(image('api', tagOf(COMMITS[1])));
    expect(state('coffer-api').publish).toEqual(['18085:3000']);
    expect(state('coffer-redis').aliases).toEqual(['redis']);
    expect(state('coffer-redis').command.join(' ')).toBe(
      'redis-server --appendonly yes --appendfsync always --maxmemory-policy noeviction',
    );
    expect(state('coffer-db').aliases).toEqual(['db']);
    expect(state('coffer-db').volumes).toContain('coffer-mysql-data:/var/lib/mysql');
    for (const name of ['coffer-api', 'coffer-worker-1']) {
      expect(state(name).init, name).toBe(true);
      expect(state(name).env).toMatchObject({
        REDIS_URL: 'redis://redis:6379',
        MYSQL_HOST: 'db',
        MYSQL_PASSWORD_FILE: '/run/secrets/mysql_password',
      });
    }
    expect(state('coffer-worker-1').volumes).toEqual(
      expect.arrayContaining([`${sourcesDir}:/data/sources:ro`, 'coffer-backups:/data/backups']),
    );
    for (const container of Object.values(containers)) {
      expect(container.network, container.name).toBe('coffer-it');
      expect(container.restart, container.name).toBe('unless-stopped');
    }
  });

  it('never puts a secret on a command line', async () => {
    const secrets = await Promise.all(
      (await readdir(secretsDir)).map(async (name) => (await readFile(join(secretsDir, name), 'utf8')).trim()),
    );
    const all = [...first.calls, ...second.calls, ...third.calls];
    for (const call of all) {
      for (const secret of [...secrets, NEXUS_PASSWORD]) expect(call.args.join(' ')).not.toContain(secret);
    }
  });

  it('updates a deployment: new images for db, api and workers, Redis kept, extra workers stopped, the network reused', async () => {
    expect(docker(second.calls, 'network').filter((c) => c.args[1] === 'create')).toEqual([]);
    const started = docker(second.calls, 'run').map((c) => flagValues(c, '--name')[0]);
    expect(started.filter((name) => !name?.startsWith('coffer-ci-'))).toEqual([
      'coffer-db',
      'coffer-api',
      'coffer-worker-1',
      'coffer-worker-2',
    ]);
    // Graceful: docker stop with the grace period, never a kill.
    const stopped = docker(second.calls, 'stop').map((c) => c.args);
    expect(stopped).toEqual([
      ['stop', '--time', '60', 'coffer-db'],
      ['stop', '--time', '15', 'coffer-api'],
      ['stop', '--time', '40', 'coffer-worker-1'],
      ['stop', '--time', '40', 'coffer-worker-2'],
      ['stop', '--time', '40', 'coffer-worker-3'],
    ]);
    const { containers, networks } = await engine();
    expect(Object.keys(containers).sort()).toEqual([
      'coffer-api',
      'coffer-db',
      'coffer-redis',
      'coffer-worker-1',
      'coffer-worker-2',
    ]);
    expect(networks).toEqual(['coffer-it']);
    for (const name of ['coffer-api', 'coffer-worker-1', 'coffer-worker-2']) {
      expect(containers[name]?.image).toBe(image(name.replace(/^coffer-|-\d+$/g, ''), tagOf(COMMITS[1])));
    }
  });

  it('re-running the same commit changes nothing that runs', () => {
    const deployed = docker(third.calls, 'run').filter((c) => !flagValues(c, '--name')[0]?.startsWith('coffer-ci-'));
    expect(deployed).toEqual([]);
    expect(docker(third.calls, 'stop')).toEqual([]);
  });

  it('smoke-tests each deploy: a probe under SOURCES_DIR, backed up through the API with the admin token', async () => {
    const token = (await readFile(join(secretsDir, 'api_admin_token'), 'utf8')).trim();
    const posts = smokeRequests.filter((r) => r.method === 'POST');
    expect(posts).toHaveLength(3);
    for (const post of posts) {
      expect(post.url).toBe('/backup');
      expect(post.authorization).toBe(`Bearer ${token}`);
      expect(post.body?.source).toMatch(/^\/data\/sources\/\.coffer-smoke\/jenkins-coffer-main-\d$/);
      expect(post.body?.destination).toBe('coffer-smoke');
      expect(post.probeFiles).toEqual(['hello.txt', 'sub/nested.txt']);
    }
    expect(await readdir(join(sourcesDir, '.coffer-smoke'))).toEqual([]);
  });
});

describe('pipeline scripts refuse a bad configuration', () => {
  it('check-params names a missing registry', async () => {
    const result = await run('bash', ['ci/check-params.sh'], {
      env: { PATH: process.env.PATH ?? '', REGISTRY: '', GIT_COMMIT: COMMITS[0] },
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/REGISTRY is not set/);
  });

  it('check-params refuses a non-numeric replica count', async () => {
    const result = await run('bash', ['ci/check-params.sh'], {
      env: {
        PATH: process.env.PATH ?? '',
        REGISTRY,
        GIT_COMMIT: COMMITS[0],
        WORKER_REPLICAS: 'two',
        API_PORT: '8085',
        DEPLOY_NETWORK: 'coffer',
        SECRETS_DIR: '/nonexistent',
        SOURCES_DIR: '/nonexistent',
      },
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/WORKER_REPLICAS must be a positive integer/);
  });

  it('deploy stops before touching Docker when a secret file is missing', async () => {
    const empty = await mkdtemp(join(tmp, 'no-secrets-'));
    const before = (await calls()).length;
    const result = await run('bash', ['ci/deploy.sh'], {
      cwd: workspace,
      env: {
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        FAKE_DOCKER_DIR: fakeDir,
        REGISTRY,
        GIT_COMMIT: COMMITS[0],
        WORKER_REPLICAS: '1',
        API_PORT: '8085',
        DEPLOY_NETWORK: 'coffer-it',
        SECRETS_DIR: empty,
        SOURCES_DIR: sourcesDir,
      },
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`missing secret file ${empty}/mysql_root_password`);
    expect((await calls()).length).toBe(before);
  });
});

describe('ci/build-images.sh on agents that reach only a private registry', () => {
  /** Runs the script against a docker that only records its arguments. */
  async function buildWith(env: Record<string, string>) {
    const stub = await mkdtemp(join(tmp, 'recording-docker-'));
    const record = join(stub, 'calls.jsonl');
    await writeFile(
      join(stub, 'docker'),
      `#!/usr/bin/env node\nrequire('node:fs').appendFileSync(${JSON.stringify(record)}, JSON.stringify(process.argv.slice(2)) + '\\n');\n`,
      { mode: 0o755 },
    );
    const result = await run('bash', ['ci/build-images.sh'], {
      cwd: workspace,
      env: { PATH: `${stub}:${process.env.PATH ?? ''}`, REGISTRY, GIT_COMMIT: COMMITS[0], ...env },
    });
    const text = await readFile(record, 'utf8').catch(() => '');
    const builds = text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as string[]);
    return { result, builds };
  }

  it('passes the base images and DOCKER_BUILD_FLAGS to every build, and builds IMAGE_COMPONENTS only', async () => {
    const proxy = `${REGISTRY}/dockerhub`;
    const { result, builds } = await buildWith({
      NODE_IMAGE: `${proxy}/library/node:20-bookworm-slim`,
      MYSQL_IMAGE: `${proxy}/library/mysql:8.4`,
      DOCKER_BUILD_FLAGS: ' --network host  --build-arg HTTPS_PROXY=http://proxy.example.test:3128 ',
      IMAGE_COMPONENTS: 'api db',
    });
    expect(result.code, describeRun(result)).toBe(0);
    expect(builds.map((args) => [args[0], flagValues({ tool: 'docker', args }, '--file'), args.at(-1)])).toEqual([
      ['build', ['api/Dockerfile'], '.'],
      ['build', ['db/Dockerfile'], '.'],
    ]);
    for (const args of builds) {
      const call = { tool: 'docker', args };
      expect(flagValues(call, '--network')).toEqual(['host']);
      expect(flagValues(call, '--build-arg')).toEqual([
        `NODE_IMAGE=${proxy}/library/node:20-bookworm-slim`,
        `MYSQL_IMAGE=${proxy}/library/mysql:8.4`,
        'HTTPS_PROXY=http://proxy.example.test:3128',
      ]);
      expect(args).not.toContain('');
    }
  });

  it("adds nothing when the flags are empty (the Jenkinsfile parameter's default)", async () => {
    expect(parameterDefaults().DOCKER_BUILD_FLAGS).toBe('');
    const { result, builds } = await buildWith({ DOCKER_BUILD_FLAGS: '' });
    expect(result.code, describeRun(result)).toBe(0);
    expect(builds.map((args) => flagValues({ tool: 'docker', args }, '--file')[0])).toEqual([
      'api/Dockerfile',
      'worker/Dockerfile',
      'db/Dockerfile',
    ]);
    for (const args of builds) {
      expect(args.filter((arg) => ['--network', '--build-arg', ''].includes(arg))).toEqual([]);
    }
  });

  it('refuses an unknown component before building anything', async () => {
    const { result, builds } = await buildWith({ IMAGE_COMPONENTS: 'api web' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('IMAGE_COMPONENTS: unknown component web');
    expect(builds.map((args) => flagValues({ tool: 'docker', args }, '--file')[0])).toEqual([]);
  });
});
