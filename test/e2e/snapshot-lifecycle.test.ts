import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '@coffer/api';
import { startWorker, type RunningWorker } from '@coffer/worker';
import { authorise } from '../../api/test/helpers.js';
import { ensureAdminToken } from '../../api/src/auth/token-admin.js';
import { generateToken } from '../../api/src/auth/token-secret.js';
import { createTestEnvironment, waitFor, type TestEnvironment } from '../helpers/environment.js';
import { describeTree } from '../helpers/trees.js';

// A snapshot's whole life through the API and a real worker: backed up with its manifest,
// listed, checked with plain sha256sum, verified, damaged and caught, restored.
const run = promisify(execFile);

let env: TestEnvironment;
let app: FastifyInstance;
let worker: RunningWorker;
let restores: string;

interface JobView {
  id: string;
  kind: string;
  status: string;
  snapshot?: string;
  target?: string;
  result?: Record<string, unknown>;
  error?: { code: string; message: string; problems?: { path: string; problem: string }[] };
}
interface SnapshotView {
  id: string;
  path: string;
  files: number;
  manifestSha256: string;
  verify: string | null;
  verifiedAt: string | null;
}

beforeAll(async () => {
  const adminToken = generateToken();
  const dir = join(process.env.TMPDIR ?? '/tmp', `coffer-restores-${randomBytes(4).toString('hex')}`);
  env = await createTestEnvironment({ API_ADMIN_TOKEN: adminToken, RESTORE_ROOTS: dir, COPY_CONCURRENCY: '2' });
  restores = dir;
  await mkdir(restores, { recursive: true });
  app = authorise(await buildApp({ config: env.config }), adminToken);
  await app.ready();
  await ensureAdminToken(app.tokenStore, env.config, app.revocations);
  worker = startWorker(env.config, pino({ level: process.env.E2E_LOG ?? 'silent' }));
  await worker.worker.waitUntilReady();
});

afterAll(async () => {
  await worker?.close(5000);
  await app?.close();
  await env?.cleanup();
  await run('rm', ['-rf', restores]);
});

async function submit(url: string, payload: Record<string, unknown>): Promise<string> {
  const res = await app.inject({ method: 'POST', url, payload });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<{ id: string }>().id;
}

async function finished(id: string): Promise<JobView> {
  return waitFor(
    async () => {
      const view = (await app.inject(`/jobs/${id}`)).json<JobView>();
      return ['completed', 'failed', 'cancelled'].includes(view.status) ? view : undefined;
    },
    30_000,
    `job ${id} to finish`,
  );
}

async function snapshotOf(id: string): Promise<SnapshotView> {
  const res = await app.inject(`/snapshots/${id}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<SnapshotView>();
}

describe('a snapshot from backup to restore', () => {
  let source: string;
  let snapshotId: string;
  let snapshot: SnapshotView;

  it('records every completed backup in the catalog with its manifest', async () => {
    source = join(env.sources, 'project');
    await mkdir(join(source, 'docs/empty'), { recursive: true });
    await writeFile(join(source, 'readme.txt'), 'hello');
    await writeFile(join(source, 'docs', 'a name with spaces.txt'), randomBytes(70_000));
    await writeFile(join(source, 'big.bin'), randomBytes(3 * 1024 * 1024));
    await symlink('readme.txt', join(source, 'link'));

    snapshotId = await submit('/backup', { source, destination: 'project' });
    const view = await finished(snapshotId);
    expect(view.status, JSON.stringify(view.error)).toBe('completed');
    snapshot = await snapshotOf(snapshotId);
    expect(snapshot).toMatchObject({ id: snapshotId, path: view.result?.path, files: 3, verify: null });
    expect(snapshot.manifestSha256).toBe(view.result?.manifestSha256);
    const listed = (await app.inject('/snapshots?destination=project')).json<{ items: SnapshotView[] }>();
    expect(listed.items.map((item) => item.id)).toEqual([snapshotId]);
  });

  it('serves a manifest that sha256sum checks with no Coffer at all', async () => {
    const res = await app.inject(`/snapshots/${snapshotId}/manifest?format=sha256sum`);
    expect(res.statusCode).toBe(200);
    const list = join(env.dir, 'SHA256SUMS');
    await writeFile(list, res.rawPayload);
    const { stdout } = await run('sha256sum', ['-c', list], { cwd: snapshot.path });
    expect(stdout.trim().split('\n').sort()).toEqual(
      ['big.bin: OK', 'docs/a name with spaces.txt: OK', 'readme.txt: OK'].sort(),
    );
    const ndjson = await app.inject(`/snapshots/${snapshotId}/manifest`);
    expect(ndjson.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const paths = ndjson.body
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { path: string }).path);
    expect(paths.sort()).toEqual([
      'big.bin',
      'docs',
      'docs/a name with spaces.txt',
      'docs/empty',
      'link',
      'readme.txt',
    ]);
  });

  it('verifies a clean snapshot: completed, and the catalog says ok', async () => {
    const id = await submit('/verify', { snapshot: snapshotId });
    const view = await finished(id);
    expect(view).toMatchObject({ kind: 'verify', status: 'completed', snapshot: snapshotId });
    expect(view.result).toMatchObject({ files: 3, damaged: 0 });
    const verified = await snapshotOf(snapshotId);
    expect(verified.verify).toBe('ok');
    expect(verified.verifiedAt).not.toBeNull();
  });

  it('restores it into a new folder, exactly', async () => {
    const target = join(restores, 'whole');
    const id = await submit('/restore', { snapshot: snapshotId, target });
    const view = await finished(id);
    expect(view.status, JSON.stringify(view.error)).toBe('completed');
    expect(view).toMatchObject({ kind: 'restore', target, snapshot: snapshotId });
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('restores only the entries asked for', async () => {
    const target = join(restores, 'some');
    const id = await submit('/restore', { snapshot: snapshotId, target, paths: ['docs'] });
    expect((await finished(id)).status).toBe('completed');
    expect(Object.keys(await describeTree(target)).sort()).toEqual([
      'docs',
      'docs/a name with spaces.txt',
      'docs/empty',
    ]);
  });

  it('refuses to restore over an existing folder unless asked, then overwrites only what the snapshot holds', async () => {
    const target = join(restores, 'existing');
    await mkdir(target);
    await writeFile(join(target, 'readme.txt'), 'local edit');
    await writeFile(join(target, 'mine.txt'), 'not in the snapshot');
    const refused = await finished(await submit('/restore', { snapshot: snapshotId, target }));
    expect(refused.error?.code).toBe('TARGET_EXISTS');
    expect(await readFile(join(target, 'readme.txt'), 'utf8')).toBe('local edit');

    const id = await submit('/restore', { snapshot: snapshotId, target, overwrite: true });
    expect((await finished(id)).status).toBe('completed');
    expect(await readFile(join(target, 'readme.txt'), 'utf8')).toBe('hello');
    expect(await readFile(join(target, 'mine.txt'), 'utf8')).toBe('not in the snapshot');
  });

  it('catches a file changed in place (same size, same mtime), and restores nothing from it', async () => {
    const damaged = join(snapshot.path, 'readme.txt');
    const before = await stat(damaged);
    await writeFile(damaged, 'HELLO');
    await utimes(damaged, before.atime, before.mtime);

    const verify = await finished(await submit('/verify', { snapshot: snapshotId }));
    expect(verify.status).toBe('failed');
    expect(verify.error?.code).toBe('SNAPSHOT_DAMAGED');
    expect(verify.error?.problems).toEqual([{ path: 'readme.txt', problem: 'changed' }]);
    expect((await snapshotOf(snapshotId)).verify).toBe('damaged');

    const target = join(restores, 'from-damaged');
    const restore = await finished(await submit('/restore', { snapshot: snapshotId, target }));
    expect(restore.error?.code).toBe('SNAPSHOT_DAMAGED');
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('logs each kind under its own action', async () => {
    const res = await app.inject('/jobs?kind=restore&limit=100');
    const kinds = new Set(res.json<{ items: JobView[] }>().items.map((job) => job.kind));
    expect([...kinds]).toEqual(['restore']);
    const rows = (await app.inject(`/logs?jobId=${snapshotId}`)).json<{ items: { action: string }[] }>();
    expect(new Set(rows.items.map((row) => row.action))).toEqual(new Set(['backup']));
  });
});

describe('cancelling a restore or a verify', () => {
  it('stops inside one big file and leaves no target behind', async () => {
    const source = join(env.sources, 'big');
    await mkdir(source);
    // Big enough that neither job can finish before the cancel lands.
    await run('sh', ['-c', `head -c 1500000000 /dev/zero > '${join(source, 'huge.bin')}'`]);
    const backup = await finished(await submit('/backup', { source, destination: 'big' }));
    expect(backup.status).toBe('completed');

    for (const request of [
      { url: '/restore', payload: { snapshot: backup.id, target: join(restores, 'cancelled') } },
      { url: '/verify', payload: { snapshot: backup.id } },
    ]) {
      const id = await submit(request.url, request.payload);
      await waitFor(
        async () => {
          const view = (await app.inject(`/jobs/${id}`)).json<JobView & { progress: { bytes: number } }>();
          return view.status === 'active' && view.progress.bytes > 0 ? true : undefined;
        },
        30_000,
        `${request.url} to be copying`,
      );
      const cancel = await app.inject({ method: 'DELETE', url: `/jobs/${id}` });
      expect(cancel.statusCode, cancel.body).toBe(202);
      expect((await finished(id)).status).toBe('cancelled');
    }
    await expect(stat(join(restores, 'cancelled'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(restores)).filter((name) => name.includes('coffer-restore'))).toEqual([]);
  });
});
