import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type RunningWorker } from '@coffer/worker';
import { waitFor } from '../../test/helpers/environment.js';
import { issueToken, queuedBackup, startApi, type ApiHarness } from './helpers.js';

// The API checks a source as text; links are for the worker, which resolves the real path
// and checks it against SOURCE_ROOTS, narrowed to the submitting token's own roots. Here
// the only root is itself a symbolic link, as with a mount point reached through a link.
let api: ApiHarness;
let worker: RunningWorker;
let dir: string;
let root: string;
let operator: string;
let teamA: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-links-'));
  const real = join(dir, 'real');
  root = join(dir, 'root-link');
  await mkdir(join(real, 'data'), { recursive: true });
  await writeFile(join(real, 'data', 'a.txt'), 'inside');
  await mkdir(join(real, 'team-a'));
  await writeFile(join(real, 'team-a', 'a.txt'), 'team a');
  await mkdir(join(real, 'team-b'));
  await writeFile(join(real, 'team-b', 'secret.txt'), 'team b only');
  await mkdir(join(dir, 'outside'));
  await writeFile(join(dir, 'outside', 'secret.txt'), 'outside the roots');
  await symlink(real, root);
  // A chain of links that ends outside the roots, one that stays inside, and one that
  // leaves a token's own folder for another folder of the same root.
  await symlink(join(real, 'chain-2'), join(real, 'chain-1'));
  await symlink(join(dir, 'outside'), join(real, 'chain-2'));
  await symlink('data', join(real, 'inside-link'));
  await symlink('../team-b', join(real, 'team-a', 'escape'));

  api = await startApi({ SOURCE_ROOTS: root });
  operator = await issueToken(api, 'op', 'operator');
  teamA = await issueToken(api, 'team-a', 'operator', [join(root, 'team-a')]);
  worker = startWorker(api.env.config, pino({ level: 'silent' }));
  await worker.worker.waitUntilReady();
});

afterAll(async () => {
  await worker?.close(5000);
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Row {
  status: string;
  actor: string | null;
  code: string | null;
}

async function submit(token: string, source: string): Promise<string> {
  const res = await api.request(token, { method: 'POST', url: '/backup', payload: { source } });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<{ id: string }>().id;
}

async function finished(id: string): Promise<Row[]> {
  return waitFor(
    async () => {
      const rows = (await api.app.logStore.history(id)).map(({ status, actor, code }) => ({ status, actor, code }));
      return ['completed', 'failed', 'cancelled'].includes(rows.at(-1)?.status ?? '') ? rows : undefined;
    },
    20_000,
    `job ${id} to finish`,
  );
}

async function everyFile(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
  return Promise.all(files.map((file) => readFile(file, 'utf8')));
}

describe('symbolic links, resolved by the worker', () => {
  it('backs up a folder under a root that is itself a link, every row naming the submitting token', async () => {
    const id = await submit(operator, join(root, 'data'));

    const rows = await finished(id);

    expect(rows.map((row) => row.status)).toEqual(['queued', 'active', 'completed']);
    expect(rows.every((row) => row.actor === 'op')).toBe(true);
  });

  it('follows a link that stays inside the roots', async () => {
    const rows = await finished(await submit(operator, join(root, 'inside-link')));

    expect(rows.at(-1)?.status).toBe('completed');
  });

  it('fails a chain of links that leaves the roots: SOURCE_OUTSIDE_ROOTS, nothing copied', async () => {
    const id = await submit(operator, join(root, 'chain-1'));

    const rows = await finished(id);

    expect(rows.at(-1)).toEqual({ status: 'failed', actor: 'op', code: 'SOURCE_OUTSIDE_ROOTS' });
    expect(await everyFile(api.env.backups)).not.toContain('outside the roots');
  });

  it("fails a link from a token's own folder into another folder of the same root", async () => {
    const id = await submit(teamA, join(root, 'team-a', 'escape'));

    const rows = await finished(id);

    expect(rows.at(-1)).toEqual({ status: 'failed', actor: 'team-a', code: 'SOURCE_OUTSIDE_ROOTS' });
    expect((await queuedBackup(api.app, id))?.sourceRoots).toEqual([join(root, 'team-a')]);
    expect(await everyFile(api.env.backups)).not.toContain('team b only');
  });

  it("backs up the token's own folder, keeping the escaping link as a link", async () => {
    const rows = await finished(await submit(teamA, join(root, 'team-a')));

    expect(rows.at(-1)).toMatchObject({ status: 'completed', actor: 'team-a' });
    expect(await everyFile(api.env.backups)).not.toContain('team b only');
  });
});
