import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../../test/helpers/environment.js';
import { freePort } from '../../test/helpers/ports.js';

// The built `coffer` binary against the built API and one worker, as a user runs them.
const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'cli/dist/main.js');

let env: TestEnvironment;
let baseUrl: string;
let tokenFile: string;
let restores: string;
const adminToken = `cfr_${randomBytes(32).toString('base64url')}`;
const processes: ChildProcess[] = [];
let apiProcess: ChildProcess;

interface JobView {
  id: string;
  kind: string;
  status: string;
  snapshot?: string;
  result?: { path: string; files: number };
  error?: { code: string };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

function launch(script: string, extra: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [join(ROOT, script)], {
    env: { PATH: process.env.PATH ?? '', ...env.variables, ...extra },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  processes.push(child);
  return child;
}

/** Runs `coffer …` with stdout and stderr piped (so neither is a TTY). */
async function coffer(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', COFFER_URL: baseUrl, COFFER_TOKEN_FILE: tokenFile, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr, elapsedMs: Date.now() - started };
}

async function makeSource(name: string, bigBytes = 10_000): Promise<string> {
  const source = join(env.sources, name);
  await mkdir(join(source, 'docs'), { recursive: true });
  await writeFile(join(source, 'readme.txt'), `hello from ${name}\n`);
  await writeFile(join(source, 'docs', 'data.bin'), randomBytes(bigBytes));
  return source;
}

beforeAll(async () => {
  restores = join(process.env.TMPDIR ?? '/tmp', `coffer-cli-restores-${randomBytes(4).toString('hex')}`);
  await mkdir(restores, { recursive: true });
  env = await createTestEnvironment({ RESTORE_ROOTS: restores });
  tokenFile = join(env.dir, 'token');
  // A token file as `echo` writes it: the trailing newline is not part of the token.
  await writeFile(tokenFile, `${adminToken}\n`);
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  apiProcess = launch('api/dist/server.js', {
    PORT: String(port),
    INSTANCE_NAME: 'api-1',
    API_ADMIN_TOKEN: adminToken,
  });
  launch('worker/dist/main.js', { INSTANCE_NAME: 'worker-1' });
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
  for (const child of processes) if (child.exitCode === null) child.kill('SIGKILL');
  await env?.cleanup();
  await rm(restores, { recursive: true, force: true });
});

describe('the coffer CLI against a real API and worker', () => {
  let snapshotId: string;
  let source: string;

  it('backs up with --wait --json: exit 0, the completed view on stdout, the snapshot in the catalog', async () => {
    source = await makeSource('project');
    const run = await coffer(['backup', source, '--destination', 'project', '--wait', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const view = JSON.parse(run.stdout) as JobView;
    expect(view).toMatchObject({ kind: 'backup', status: 'completed' });
    expect(view.result?.files).toBe(2);
    snapshotId = view.id;

    const listed = await coffer(['snapshots', '--destination', 'project', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const page = JSON.parse(listed.stdout) as { items: { id: string }[] };
    expect(page.items.map((item) => item.id)).toEqual([snapshotId]);
    const table = await coffer(['snapshots']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+DESTINATION\s+CREATED\s+FILES\s+BYTES\s+VERIFY/);
    expect(table.stdout).toContain(snapshotId);
  });

  it('prints plain progress lines, at most one a second, when stdout is not a terminal', async () => {
    const big = await makeSource('big', 64 * 1024 * 1024);
    const run = await coffer(['backup', big, '--wait']);
    expect(run.code, run.stderr).toBe(0);
    // No carriage returns or escape sequences: a bar redraws, a log gets lines.
    expect(run.stdout).not.toContain('\r');
    expect(run.stdout).not.toContain('\u001b');
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^backup job \S+ queued$/);
    expect(lines.at(-1)).toMatch(/^backup job \S+ completed: 2\/2 files, /);
    const progress = lines.slice(1, -1);
    expect(progress.length).toBeGreaterThan(0);
    for (const line of progress) expect(line).toMatch(/^backup job \S+ (queued|active|retrying): \d+(\/\d+)? files, /);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(run.elapsedMs / 1000) + 1);
  });

  it('refuses a source outside the roots: exit 1, the API code on one stderr line', async () => {
    const run = await coffer(['backup', env.backups]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^coffer: SOURCE_OUTSIDE_ROOTS: .* \(HTTP 400\)\n$/);
  });

  it('shows a job, lists jobs as JSON, and shows its log rows', async () => {
    const job = await coffer(['job', snapshotId]);
    expect(job.code, job.stderr).toBe(0);
    expect(job.stdout).toMatch(new RegExp(`^id\\s+${snapshotId}$`, 'm'));
    expect(job.stdout).toMatch(/^status\s+completed$/m);
    expect(job.stdout).toMatch(/^destination\s+project$/m);

    const jobs = await coffer(['jobs', '--json', '--kind', 'backup', '--status', 'completed', '--limit', '10']);
    expect(jobs.code, jobs.stderr).toBe(0);
    const page = JSON.parse(jobs.stdout) as { items: JobView[] };
    expect(page.items.map((item) => item.id)).toContain(snapshotId);
    expect(page.items.every((item) => item.status === 'completed')).toBe(true);

    const logs = await coffer(['logs', '--job', snapshotId]);
    expect(logs.code, logs.stderr).toBe(0);
    const statuses = logs.stdout
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((line) => line.split(/\s+/)[2]);
    expect(statuses).toEqual(['completed', 'active', 'queued']);
  });

  it('verifies a snapshot with --wait', async () => {
    const run = await coffer(['verify', snapshotId, '--wait']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toMatch(/^verify job \S+ completed: /);
    const snapshots = await coffer(['snapshots', '--destination', 'project']);
    expect(snapshots.stdout).toMatch(new RegExp(`^${snapshotId}\\s.*\\sok$`, 'm'));
  });

  it('restores a snapshot with --wait into a new target', async () => {
    const target = join(restores, 'restored');
    const run = await coffer(['restore', snapshotId, target, '--wait', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ kind: 'restore', status: 'completed', snapshot: snapshotId });
    expect(await readFile(join(target, 'readme.txt'), 'utf8')).toBe('hello from project\n');
    expect(await readFile(join(target, 'docs', 'data.bin'))).toEqual(await readFile(join(source, 'docs', 'data.bin')));
  });

  it('exits 1 with the job failure when a waited-for job fails', async () => {
    const run = await coffer(['restore', snapshotId, join(restores, 'restored'), '--wait']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^coffer: restore job \S+ failed: TARGET_EXISTS: .*\n$/);
  });

  it('refuses to cancel a finished job: exit 1, JOB_FINISHED', async () => {
    const run = await coffer(['cancel', snapshotId]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^coffer: JOB_FINISHED: .* \(HTTP 409\)\n$/);
  });

  it('creates, lists, shows and deletes a schedule', async () => {
    const created = await coffer([
      'schedules',
      'create',
      'yearly',
      '--cron',
      '0 0 1 1 *',
      '--timezone',
      'Europe/Paris',
      '--source',
      source,
      '--exclude',
      '*.tmp',
      '--exclude',
      'node_modules/',
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^schedule yearly created, next run \d{4}-12-31T23:00:00\.000Z$/m);

    const list = await coffer(['schedules', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const page = JSON.parse(list.stdout) as { items: { name: string; backup: { exclude?: string[] } }[] };
    expect(page.items).toHaveLength(1);
    expect(page.items[0]).toMatchObject({ name: 'yearly', backup: { exclude: ['*.tmp', 'node_modules/'] } });
    const shown = await coffer(['schedules', 'show', 'yearly']);
    expect(shown.stdout).toMatch(/^timezone\s+Europe\/Paris$/m);

    const deleted = await coffer(['schedules', 'delete', 'yearly']);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toBe('schedule yearly deleted\n');
    const again = await coffer(['schedules', 'delete', 'yearly']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^coffer: SCHEDULE_NOT_FOUND: /);
    const empty = await coffer(['schedules', 'list']);
    expect(empty.stdout.trimEnd().split('\n')).toHaveLength(1);
  });

  it('exits 2 on usage errors', async () => {
    for (const args of [
      [],
      ['frobnicate'],
      ['jobs', '--bogus'],
      ['job'],
      ['jobs', '--limit', 'many'],
      ['schedules', 'create', 'x'],
    ]) {
      const run = await coffer(args);
      expect(run.code, `coffer ${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stdout).toBe('');
    }
    const both = await coffer(['jobs'], { COFFER_TOKEN: adminToken });
    expect(both.code).toBe(2);
    expect(both.stderr).toBe('coffer: set COFFER_TOKEN or COFFER_TOKEN_FILE, not both\n');
  });

  it('reports a refused token as the API error', async () => {
    const run = await coffer(['jobs'], { COFFER_TOKEN_FILE: '', COFFER_TOKEN: 'cfr_wrong' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^coffer: \S+: .* \(HTTP 401\)\n$/);
  });

  it('reports a stopped API on one line, exit 1, no stack trace', async () => {
    apiProcess.kill('SIGTERM');
    if (apiProcess.exitCode === null) await once(apiProcess, 'exit');
    const run = await coffer(['jobs']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `coffer: cannot reach the API at ${baseUrl}: connect ECONNREFUSED ${baseUrl.replace('http://', '')}\n`,
    );
  });
});
