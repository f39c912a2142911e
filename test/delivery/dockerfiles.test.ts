import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DockerIgnore, listContext, matchSource } from './helpers/build-context.js';
import {
  copyOperands,
  execForm,
  parseDockerfile,
  parsePairs,
  type Dockerfile,
  type Instruction,
} from './helpers/dockerfile.js';
import { REPO_ROOT } from './helpers/repo.js';

// What the Dockerfiles promise, read from the files themselves. Their RUN steps are replayed
// for real by image-replay.test.ts.
const SERVICES = [
  { component: 'api', entry: 'dist/server.js' },
  { component: 'worker', entry: 'dist/main.js' },
] as const;

let files: Record<string, Dockerfile>;
let texts: Record<string, string>;
let context: string[];
let ignore: DockerIgnore;

beforeAll(async () => {
  files = {};
  texts = {};
  for (const component of ['api', 'worker', 'db']) {
    texts[component] = await readFile(join(REPO_ROOT, component, 'Dockerfile'), 'utf8');
    files[component] = parseDockerfile(texts[component]);
  }
  ignore = await DockerIgnore.read(REPO_ROOT);
  context = await listContext(REPO_ROOT, ignore);
});

/** The KEY=value pairs of every ARG or ENV instruction, merged. */
function pairsOf(instructions: readonly Instruction[], keyword: 'ARG' | 'ENV'): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const instruction of instructions) {
    if (instruction.keyword === keyword) Object.assign(pairs, parsePairs(instruction.args));
  }
  return pairs;
}

function dockerfile(component: string): Dockerfile {
  const parsed = files[component];
  if (!parsed) throw new Error(`no ${component}/Dockerfile`);
  return parsed;
}

// Where only a private registry (or none) is reachable: nothing may be pulled but the base
// images, and those are build arguments (Jenkins points them at Nexus's proxy). BuildKit
// pulls its frontend image for a `# syntax=` line, so there is none, and nothing needs
// BuildKit: the classic builder (DOCKER_BUILDKIT=0, as `pnpm test:images` builds) builds them.
describe('every Dockerfile builds where only a private registry (or none) is reachable', () => {
  const BASES = {
    api: ['NODE_IMAGE', 'node:20-bookworm-slim'],
    worker: ['NODE_IMAGE', 'node:20-bookworm-slim'],
    db: ['MYSQL_IMAGE', 'mysql:8.4'],
  } as const;

  it.each(['api', 'worker', 'db'] as const)(
    '%s/Dockerfile: no parser directive, no BuildKit-only syntax',
    (component) => {
      const text = texts[component] ?? '';
      // Docker reads directives (`# syntax=`, `# escape=`, `# check=`) from the leading comments.
      const lines = text.split('\n');
      const firstInstruction = lines.findIndex((line) => !/^\s*(#|$)/.test(line));
      const leading = lines.slice(0, firstInstruction);
      expect(leading.filter((line) => /^#\s*[a-z]+\s*=/i.test(line))).toEqual([]);
      expect(text).not.toMatch(/^#\s*syntax\s*=/im);
      const instructions = dockerfile(component).stages.flatMap((stage) => stage.instructions);
      // RUN --mount/--network/--security, COPY --link/--chmod/--parents, heredocs: BuildKit only.
      expect(instructions.filter((i) => i.keyword === 'RUN' && Object.keys(i.flags).length > 0)).toEqual([]);
      for (const copy of instructions.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD')) {
        expect(
          Object.keys(copy.flags).filter((flag) => !['from', 'chown'].includes(flag)),
          copy.args,
        ).toEqual([]);
      }
      expect(instructions.filter((i) => /<<-?\s*['"]?[A-Z]+/.test(i.args)).map((i) => i.args)).toEqual([]);
    },
  );

  it.each(['api', 'worker', 'db'] as const)(
    "%s/Dockerfile: every base image is a build argument with today's default",
    (component) => {
      const [name, fallback] = BASES[component];
      const { globalArgs, stages } = dockerfile(component);
      expect(globalArgs[name]).toBe(fallback);
      const names = stages.map((stage) => stage.name).filter(Boolean);
      const froms = [...(texts[component] ?? '').matchAll(/^FROM\s+(\S+)/gim)].map((match) => match[1]);
      expect(froms.length).toBeGreaterThan(0);
      // Either the argument or an earlier stage: never a literal image that a build arg cannot replace.
      for (const from of froms) expect([`\${${name}}`, ...names], `FROM ${from}`).toContain(from);
      expect(froms[0]).toBe(`\${${name}}`);
    },
  );
});

describe('every COPY source is in the build context (the repository root, less .dockerignore)', () => {
  it.each(['api', 'worker', 'db'])('%s/Dockerfile', (component) => {
    const sources = dockerfile(component)
      .stages.flatMap((stage) => stage.instructions)
      .filter((instruction) => instruction.keyword === 'COPY' && instruction.flags.from === undefined)
      .flatMap((instruction) => copyOperands(instruction).sources);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      expect(matchSource(source, context), `COPY ${source} matches nothing in the context`).not.toEqual([]);
    }
  });
});

describe('.dockerignore', () => {
  it('keeps installed modules, build output, tests, secrets and local env files out', () => {
    for (const path of [
      'node_modules/fastify/package.json',
      'api/node_modules/fastify/package.json',
      'api/dist/server.js',
      'api/test/backup-route.test.ts',
      'test/e2e/system.test.ts',
      'compose/secrets/mysql_password',
      'secrets/token',
      '.env',
      'compose/.env',
      '.git/HEAD',
    ]) {
      expect(ignore.excludes(path), path).toBe(true);
    }
    expect(context.filter((file) => /(^|\/)(node_modules|dist|test|secrets)\//.test(file))).toEqual([]);
  });

  it('keeps everything the images build from', () => {
    for (const path of [
      'pnpm-lock.yaml',
      'pnpm-workspace.yaml',
      '.npmrc',
      'package.json',
      'tsconfig.base.json',
      'api/package.json',
      'api/tsconfig.json',
      'api/src/server.ts',
      'worker/src/main.ts',
      'shared/src/index.ts',
      'db/src/migrate.ts',
      'db/migrations/001_log.sql',
    ]) {
      expect(ignore.excludes(path), path).toBe(false);
    }
  });
});

describe.each(SERVICES)('$component/Dockerfile', ({ component, entry }) => {
  it('builds in a separate stage: pnpm fetch from the lockfile alone, offline install, filtered build, deploy', async () => {
    const { stages, globalArgs } = dockerfile(component);
    expect(stages).toHaveLength(2);
    const [build] = stages;
    expect(build?.name).toBe('build');
    const steps = (build?.instructions ?? []).map((i) => `${i.keyword} ${i.args}`);
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { packageManager: string };
    const pnpmVersion = pkg.packageManager.replace(/^pnpm@/, '');
    const args = pairsOf(build?.instructions ?? [], 'ARG');
    expect(args.PNPM_VERSION, 'pnpm pinned to package.json packageManager').toBe(pnpmVersion);
    expect(globalArgs.NODE_IMAGE).toBe('node:20-bookworm-slim');
    expect(steps).toEqual([
      'ARG PNPM_VERSION=' + pnpmVersion,
      'RUN npm install --global --no-audit --no-fund pnpm@${PNPM_VERSION}',
      'WORKDIR /src',
      'COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./',
      'RUN pnpm fetch',
      'COPY . .',
      'RUN pnpm install --offline --frozen-lockfile',
      `RUN pnpm --filter @coffer/${component}... build`,
      `RUN pnpm --filter @coffer/${component} --prod deploy --legacy /out`,
    ]);
  });

  it('runs from a slim Node 20 image holding only the deployed folder, as the node user', () => {
    const runtime = dockerfile(component).stages[1];
    expect(runtime?.from).toBe('node:20-bookworm-slim');
    const copies = (runtime?.instructions ?? []).filter((i) => i.keyword === 'COPY');
    expect(copies.map((i) => [i.flags.from, i.args])).toEqual([['build', '/out ./']]);
    const keywords = (runtime?.instructions ?? []).map((i) => i.keyword);
    expect(keywords.filter((k) => k === 'USER')).toHaveLength(1);
    const user = runtime?.instructions.find((i) => i.keyword === 'USER');
    expect(user?.args).toBe('node');
    // Nothing after USER may run as root or bring files in.
    const afterUser = keywords.slice(keywords.indexOf('USER') + 1);
    expect(afterUser.filter((k) => ['RUN', 'COPY', 'ADD'].includes(k))).toEqual([]);
    const env = pairsOf(runtime?.instructions ?? [], 'ENV');
    expect(env).toMatchObject({ NODE_ENV: 'production', HOST: '0.0.0.0' });
  });

  it('starts node directly (exec form: node is PID 1 and gets SIGTERM) and has a HEALTHCHECK', () => {
    const instructions = dockerfile(component).stages[1]?.instructions ?? [];
    const cmd = instructions.filter((i) => i.keyword === 'CMD');
    expect(cmd).toHaveLength(1);
    expect(execForm(cmd[0]?.args ?? '')).toEqual(['node', entry]);
    expect(instructions.some((i) => i.keyword === 'ENTRYPOINT')).toBe(false);
    const stop = instructions.find((i) => i.keyword === 'STOPSIGNAL');
    expect(stop?.args ?? 'SIGTERM').toBe('SIGTERM');
    const healthcheck = instructions.filter((i) => i.keyword === 'HEALTHCHECK');
    expect(healthcheck).toHaveLength(1);
    expect(healthcheck[0]?.flags.interval).toMatch(/^\d+s$/);
    expect(healthcheck[0]?.flags.timeout).toMatch(/^\d+s$/);
    expect(execForm(healthcheck[0]?.args.replace(/^CMD\s+/, '') ?? '')?.[0]).toBe('node');
  });
});

describe('db/Dockerfile', () => {
  it('is MySQL 8.4 initialised with the migrations, healthy over TCP only', () => {
    const { stages } = dockerfile('db');
    expect(stages).toHaveLength(1);
    const [stage] = stages;
    expect(stage?.from).toBe('mysql:8.4');
    const copy = stage?.instructions.filter((i) => i.keyword === 'COPY') ?? [];
    expect(copy.map((i) => copyOperands(i))).toEqual([
      { sources: ['db/migrations/*.sql'], destination: '/docker-entrypoint-initdb.d/' },
    ]);
    const healthcheck = stage?.instructions.find((i) => i.keyword === 'HEALTHCHECK');
    expect(execForm(healthcheck?.args.replace(/^CMD\s+/, '') ?? '')).toEqual([
      'mysqladmin',
      'ping',
      '-h',
      '127.0.0.1',
      '--silent',
    ]);
  });

  it('copies every migration, and only migrations, in the order the runner applies them', () => {
    const migrations = matchSource('db/migrations/*.sql', context);
    expect(migrations.length).toBeGreaterThan(0);
    expect(migrations.every((file) => /^db\/migrations\/\d{3,}_[a-z0-9_]+\.sql$/.test(file))).toBe(true);
  });
});
