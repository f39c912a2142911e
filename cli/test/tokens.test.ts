import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

// `coffer token create|list|revoke`: the built binary against the built API (no worker needed).
const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'cli/dist/main.js');

let env: TestEnvironment;
let baseUrl: string;
let tokenFile: string;
const adminToken = `cfr_${randomBytes(32).toString('base64url')}`;
let apiProcess: ChildProcess | undefined;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface TokenView {
  id: number;
  name: string;
  role: string;
  sourceRoots: string[] | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** Runs `coffer …` with stdout and stderr piped; the admin token comes from a file unless the env overrides it. */
async function coffer(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', COFFER_URL: baseUrl, COFFER_TOKEN_FILE: tokenFile, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** `coffer …` as the holder of `secret`. */
function cofferAs(secret: string, args: string[]): Promise<Run> {
  return coffer(args, { COFFER_TOKEN_FILE: '', COFFER_TOKEN: secret });
}

async function listTokens(): Promise<TokenView[]> {
  const run = await coffer(['--json', 'token', 'list']);
  expect(run.code, run.stderr).toBe(0);
  return (JSON.parse(run.stdout) as { items: TokenView[] }).items;
}

beforeAll(async () => {
  env = await createTestEnvironment();
  tokenFile = join(env.dir, 'token');
  await writeFile(tokenFile, `${adminToken}\n`);
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  apiProcess = spawn(process.execPath, [join(ROOT, 'api/dist/server.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      ...env.variables,
      PORT: String(port),
      INSTANCE_NAME: 'api-tokens',
      API_ADMIN_TOKEN: adminToken,
    },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await waitFor(
    async () => {
      const ready = await fetch(`${baseUrl}/ready`).catch(() => null);
      return ready?.status === 200 ? true : undefined;
    },
    20_000,
    'the API to be ready',
  );
}, 30_000);

afterAll(async () => {
  if (apiProcess && apiProcess.exitCode === null) {
    apiProcess.kill('SIGKILL');
    await once(apiProcess, 'exit');
  }
  await env?.cleanup();
});

describe('coffer token over the HTTP API', () => {
  let secret: string;
  let id: number;

  it('creates a token: the secret alone on stdout, a shown-once warning on stderr, and the secret works', async () => {
    const run = await coffer(['token', 'create', 'ci-viewer', '--role', 'viewer']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^cfr_\S+\n$/);
    expect(run.stderr).toMatch(/^created viewer token "ci-viewer" \(id \d+\); its secret is shown only now/);
    secret = run.stdout.trimEnd();

    const jobs = await cofferAs(secret, ['jobs']);
    expect(jobs.code, jobs.stderr).toBe(0);
    expect(jobs.stdout).toMatch(/^ID\s+KIND\s+STATUS/);
    // A viewer may read, not manage tokens.
    const denied = await cofferAs(secret, ['token', 'list']);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^coffer: \S+: .* \(HTTP 403\)\n$/);
  });

  it('creates with --json and --source-root: the full answer, roots made absolute', async () => {
    const folder = join(env.sources, 'team-a');
    await mkdir(folder, { recursive: true });
    const run = await coffer(['--json', 'token', 'create', 'team-a', '--role', 'operator', '--source-root', folder]);
    expect(run.code, run.stderr).toBe(0);
    const created = JSON.parse(run.stdout) as TokenView & { token: string };
    expect(created).toMatchObject({ name: 'team-a', role: 'operator', sourceRoots: [folder], revokedAt: null });
    expect(created.token).toMatch(/^cfr_/);
    expect(run.stderr).toContain('shown only now');
    const asOperator = await fetch(`${baseUrl}/jobs`, { headers: { authorization: `Bearer ${created.token}` } });
    expect(asOperator.status).toBe(200);
  });

  it('lists the tokens as a table and as JSON, without secrets', async () => {
    const tokens = await listTokens();
    const viewer = tokens.find((token) => token.name === 'ci-viewer');
    expect(viewer).toMatchObject({ role: 'viewer', sourceRoots: null, revokedAt: null });
    expect(viewer?.lastUsedAt).not.toBeNull();
    id = viewer?.id ?? -1;
    expect(JSON.stringify(tokens)).not.toContain(secret);

    const run = await coffer(['token', 'list']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+ROLE\s+ROOTS\s+CREATED\s+LAST USED\s+REVOKED$/);
    expect(run.stdout).toMatch(new RegExp(`^${id}\\s+ci-viewer\\s+viewer\\s+all\\s+\\S+\\s+\\S+\\s+-$`, 'm'));
    expect(run.stdout).toMatch(/^\d+\s+team-a\s+operator\s+\/\S+team-a\s/m);
    expect(run.stdout).not.toContain(secret);
  });

  it('revokes by id: the secret is refused at once (401), and the list shows when', async () => {
    const run = await coffer(['token', 'revoke', String(id)]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^token ci-viewer \\(id ${id}\\) revoked at \\d{4}-\\S+Z\n$`));

    const refused = await cofferAs(secret, ['jobs']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^coffer: \S+: .* \(HTTP 401\)\n$/);
    const listed = (await listTokens()).find((token) => token.id === id);
    expect(listed?.revokedAt).toMatch(/^\d{4}-/);
  });

  it('revokes by name, with --json', async () => {
    const run = await coffer(['--json', 'token', 'revoke', 'team-a']);
    expect(run.code, run.stderr).toBe(0);
    const revoked = JSON.parse(run.stdout) as TokenView;
    expect(revoked.name).toBe('team-a');
    expect(revoked.revokedAt).toMatch(/^\d{4}-/);
  });

  it('exits 1 with the API message for an unknown id, and with one line for an unknown name', async () => {
    const byId = await coffer(['token', 'revoke', '999999']);
    expect(byId.code).toBe(1);
    expect(byId.stdout).toBe('');
    expect(byId.stderr).toBe('coffer: TOKEN_NOT_FOUND: no token with id "999999" (HTTP 404)\n');

    const byName = await coffer(['token', 'revoke', 'nobody']);
    expect(byName.code).toBe(1);
    expect(byName.stderr).toBe('coffer: no token named "nobody"\n');
  });

  it('exits 1 with the API message when the API refuses the request', async () => {
    const taken = await coffer(['token', 'create', 'ci-viewer', '--role', 'viewer']);
    expect(taken.code).toBe(1);
    expect(taken.stdout).toBe('');
    expect(taken.stderr).toMatch(/^coffer: TOKEN_NAME_TAKEN: .* \(HTTP 409\)\n$/);
    const outside = await coffer(['token', 'create', 'outside', '--role', 'viewer', '--source-root', '/etc']);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/^coffer: \S+: .*SOURCE_ROOTS.* \(HTTP 400\)\n$/);
  });

  it('exits 2 with one line on usage errors, before calling the API', async () => {
    const badRole = await coffer(['token', 'create', 'x', '--role', 'root']);
    expect(badRole.code).toBe(2);
    expect(badRole.stdout).toBe('');
    expect(badRole.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(badRole.stderr).toMatch(/--role.*'root' is invalid.*admin, operator, viewer/);
    for (const args of [
      ['token', 'create', 'x'],
      ['token', 'create'],
      ['token', 'revoke'],
      ['token', 'frob'],
    ]) {
      const run = await coffer(args);
      expect(run.code, `coffer ${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stdout).toBe('');
    }
    // Nothing was created by the refused commands.
    expect((await listTokens()).map((token) => token.name)).not.toContain('x');
  });

  it('says in its help that `pnpm --dir api token` is the way without the API', async () => {
    const run = await coffer(['token', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('over the HTTP API');
    expect(run.stdout).toContain('pnpm --dir api token');
  });
});
