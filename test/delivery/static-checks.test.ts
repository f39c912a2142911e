import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, describeRun, run } from './helpers/repo.js';

// ci/validate-delivery.sh: dockerfile-utils, docker-compose 1.29, npm-groovy-lint and
// shellcheck over the delivery files. Tests install nothing: `.ci/run` runs
// `ci/validate-delivery.sh install` first; without the tools these tests fail, naming that command.

const SCRIPT = 'ci/validate-delivery.sh';
// Everything the script reads, for copies with one deliberate mistake.
const DELIVERY_FILES = [
  'ci',
  'compose',
  'Jenkinsfile',
  '.env.example',
  'api/Dockerfile',
  'worker/Dockerfile',
  'db/Dockerfile',
  'db/migrations',
];

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coffer-static-'));
  const tools = await run('bash', [SCRIPT, 'tools'], { timeoutMs: 30_000 });
  expect(tools.code, describeRun(tools)).toBe(0);
}, 60_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('ci/validate-delivery.sh without its tools', () => {
  it('installs nothing and names the command that installs them', async () => {
    // Only bash and node on the PATH: docker-compose, shellcheck and java are missing.
    const bin = await mkdtemp(join(tmp, 'bin-'));
    for (const tool of ['bash', 'node', 'dirname', 'mktemp', 'rm']) {
      const found = await run('bash', ['-c', `command -v ${tool}`]);
      await symlink(found.stdout.trim(), join(bin, tool));
    }
    const result = await run('bash', [SCRIPT, 'shell'], { env: { PATH: bin, HOME: tmp } });
    expect(result.code, describeRun(result)).toBe(1);
    expect(result.stderr).toContain('missing: shellcheck');
    expect(result.stderr).toContain('bash ci/validate-delivery.sh install');
    expect(result.stderr).not.toContain('installing');
  });
});

describe('ci/validate-delivery.sh passes on the repository', () => {
  it.each([
    ['dockerfiles', 'dockerfile-utils lint of the three Dockerfiles'],
    ['compose', 'docker-compose 1.29 config -q, with and without the ops profile and .env.example'],
    ['jenkinsfile', 'npm-groovy-lint --failon error'],
    ['shell', "shellcheck over ci/, compose/ scripts and the Jenkinsfile's sh steps"],
  ])(
    '%s: %s',
    async (check) => {
      const result = await run('bash', [SCRIPT, check], { timeoutMs: 120_000 });
      expect(result.code, describeRun(result)).toBe(0);
      expect(result.stderr).toContain(`ok ${check}`);
    },
    130_000,
  );
});

describe('the scripts of `pnpm test:images` (scripts/images)', () => {
  it('pass shellcheck, following the library they source', async () => {
    const scripts = (await readdir(join(REPO_ROOT, 'scripts/images'))).filter((name) => name.endsWith('.sh'));
    expect(scripts.sort()).toEqual(['base-image.sh', 'engine.sh', 'lib.sh']);
    const result = await run('shellcheck', ['-x', ...scripts.map((name) => `scripts/images/${name}`)], {
      timeoutMs: 60_000,
    });
    expect(result.code, describeRun(result)).toBe(0);
  });
});

/** A copy of the delivery files with `edit` applied to one of them. */
async function brokenCopy(file: string, edit: (text: string) => string): Promise<string> {
  const root = await mkdtemp(join(tmp, 'broken-'));
  for (const path of DELIVERY_FILES) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await cp(join(REPO_ROOT, path), join(root, path), { recursive: true });
  }
  await writeFile(join(root, file), edit(await readFile(join(root, file), 'utf8')));
  return root;
}

describe('ci/validate-delivery.sh fails on a broken file', () => {
  it.each([
    ['dockerfiles', 'api/Dockerfile', (text: string) => text.replace('EXPOSE 3000', 'EXPOSE http')],
    ['compose', 'compose/compose.yaml', (text: string) => `name: coffer\n${text}`],
    ['shell', 'ci/push-images.sh', (text: string) => `${text}\necho $tag\n`],
    ['shell', 'Jenkinsfile', (text: string) => text.replace("sh 'ci/install.sh'", "sh 'cd $NOWHERE; ci/install.sh'")],
    ['jenkinsfile', 'Jenkinsfile', (text: string) => text.replace(/\}\s*$/, '')],
  ])(
    '%s catches a mistake in %s',
    async (check, file, edit) => {
      const root = await brokenCopy(file, edit);
      const result = await run('bash', [join(root, SCRIPT), check], { timeoutMs: 120_000 });
      expect(result.code, describeRun(result)).not.toBe(0);
      expect(result.stderr).toContain(`FAILED ${check}`);
    },
    130_000,
  );
});
