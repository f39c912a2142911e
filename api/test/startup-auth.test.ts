import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

// The built programs (run `pnpm build` first, as `pnpm test` does): the API refuses to start
// without an admin token, and the token command line makes one it accepts.
const ROOT = new URL('../..', import.meta.url).pathname;
const SERVER = join(ROOT, 'api/dist/server.js');
const CLI = join(ROOT, 'api/dist/cli/token.js');

let env: TestEnvironment;
const children: ChildProcess[] = [];

beforeAll(async () => {
  env = await createTestEnvironment();
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await env?.cleanup();
});

function variables(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', ...env.variables, ...extra };
}

function token(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { env: variables(), encoding: 'utf8', timeout: 20_000 });
}

describe('start-up without API_ADMIN_TOKEN', () => {
  it('refuses to start while no admin token exists, saying how to make one', () => {
    const run = spawnSync(process.execPath, [SERVER], {
      env: variables({ PORT: '0' }),
      encoding: 'utf8',
      timeout: 20_000,
    });

    expect(run.status).toBe(1);
    expect(run.stderr).toContain('no admin token exists and API_ADMIN_TOKEN is not set');
    expect(run.stderr).toContain('pnpm --dir api token create');
  });

  it('starts once the command line has made an admin token, which then works until revoked', async () => {
    const created = token('create', '--name', 'root', '--role', 'admin');
    expect(created.status, created.stderr).toBe(0);
    const secret = created.stdout.trim();
    expect(secret).toMatch(/^cfr_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain('shown only now');

    const listed = token('list');
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(/root\s+admin/);
    expect(listed.stdout).not.toContain(secret);

    const port = await freePort();
    const server = spawn(process.execPath, [SERVER], { env: variables({ PORT: String(port) }), stdio: 'ignore' });
    children.push(server);
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => ((await fetch(`${url}/ready`).catch(() => null))?.ok ? true : undefined), 15_000);
    const jobs = () => fetch(`${url}/jobs`, { headers: { authorization: `Bearer ${secret}` } });
    expect((await jobs()).status).toBe(200);
    expect((await fetch(`${url}/jobs`)).status).toBe(401);

    expect(token('revoke', 'root').status).toBe(0);
    expect((await jobs()).status).toBe(401);

    server.kill('SIGTERM');
    await once(server, 'exit');
  });

  it('refuses to start with an API_ADMIN_TOKEN that has been revoked', () => {
    const created = token('create', '--name', 'old-admin', '--role', 'admin');
    const secret = created.stdout.trim();
    expect(token('revoke', 'old-admin').status).toBe(0);

    const run = spawnSync(process.execPath, [SERVER], {
      env: variables({ PORT: '0', API_ADMIN_TOKEN: secret }),
      encoding: 'utf8',
      timeout: 20_000,
    });

    expect(run.status).toBe(1);
    expect(run.stderr).toContain('API_ADMIN_TOKEN was revoked');
    expect(run.stderr + run.stdout).not.toContain(secret);
  });
});
