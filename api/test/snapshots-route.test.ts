import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestEntry, SnapshotFacts } from '@coffer/shared';
import {
  allPages,
  collect,
  expectError,
  issueToken,
  pruneSnapshot,
  recordSnapshot as recordSnapshotAs,
  startApi,
  type ApiHarness,
  type Requester,
} from './helpers.js';

/** A snapshot as the API shows it: its backup's facts but the token, and what happened since. */
type SnapshotBody = Omit<SnapshotFacts, 'actor'> & {
  verifiedAt: string | null;
  verify: 'ok' | 'damaged' | null;
  deletedAt: string | null;
};

let api: ApiHarness;
let asOps: Requester;
let asViewer: Requester;

beforeAll(async () => {
  api = await startApi();
  const ops = await issueToken(api, 'ops', 'operator');
  const viewer = await issueToken(api, 'watcher', 'viewer');
  asOps = (options) => api.request(ops, options);
  asViewer = (options) => api.request(viewer, options);
});

afterAll(async () => {
  await api.close();
});

function recordSnapshot(destination: string, actor: string | null, name?: string): Promise<SnapshotFacts> {
  const id = randomUUID();
  const path = join(api.env.backups, destination, name ?? `20261129T010203.456Z-${id}`);
  return recordSnapshotAs(api.app, api.env.backups, { id, destination, source: `/srv/${destination}`, actor, path });
}

const uniqueDestination = (what: string) => `${what}-${randomUUID().slice(0, 8)}`;

describe('GET /snapshots', () => {
  it('lists the snapshots of a destination newest first, page by page', async () => {
    const destination = uniqueDestination('paged');
    const made: string[] = [];
    for (let i = 0; i < 5; i += 1) made.push((await recordSnapshot(destination, 'admin')).id);

    const pages = await allPages<SnapshotBody>(api.app, `/snapshots?destination=${destination}&limit=2`);

    expect(pages.map((page) => page.items.length)).toEqual([2, 2, 1]);
    expect(pages.flatMap((page) => page.items.map((item) => item.id))).toEqual(made.reverse());
  });

  it('shows each snapshot whole, dates as ISO-8601', async () => {
    const snapshot = await recordSnapshot(uniqueDestination('whole'), 'admin');

    const res = await api.app.inject({ method: 'GET', url: `/snapshots?destination=${snapshot.destination}` });

    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      // toEqual ignores a property that is undefined: the owning token is not shown.
      items: [{ ...snapshot, actor: undefined, verifiedAt: null, verify: null, deletedAt: null }],
      nextCursor: null,
    });
  });

  it('lists only the given destination', async () => {
    const [one, two] = [uniqueDestination('one'), uniqueDestination('two')];
    await recordSnapshot(one, 'admin');
    await recordSnapshot(two, 'admin');

    const items = await collect<SnapshotBody>(api.app, `/snapshots?destination=${one}`);

    expect(items.map((item) => item.destination)).toEqual([one]);
  });

  it('lists snapshots a prune removed only when asked for them', async () => {
    const destination = uniqueDestination('pruned');
    const kept = await recordSnapshot(destination, 'admin');
    const gone = await recordSnapshot(destination, 'admin');
    await pruneSnapshot(api.app, gone.id);

    const listed = await collect<SnapshotBody>(api.app, `/snapshots?destination=${destination}`);
    const all = await collect<SnapshotBody>(api.app, `/snapshots?destination=${destination}&deleted=true`);

    expect(listed.map((item) => item.id)).toEqual([kept.id]);
    expect(all.map((item) => item.id)).toEqual([gone.id, kept.id]);
    expect(all[0]?.deletedAt).toEqual(expect.any(String));
  });

  it("shows an operator only its own backups' snapshots, a viewer everyone's", async () => {
    const destination = uniqueDestination('shared');
    const own = await recordSnapshot(destination, 'ops');
    const theirs = await recordSnapshot(destination, 'admin');

    const seenByOps = await collect<SnapshotBody>(asOps, `/snapshots?destination=${destination}`);
    const seenByViewer = await collect<SnapshotBody>(asViewer, `/snapshots?destination=${destination}`);

    expect(seenByOps.map((item) => item.id)).toEqual([own.id]);
    expect(seenByViewer.map((item) => item.id)).toEqual([theirs.id, own.id]);
  });

  it.each([['limit=0'], ['limit=101'], ['limit=x'], ['cursor=0'], ['deleted=maybe'], ['other=1']])(
    'refuses %s',
    async (query) => {
      expectError(await api.app.inject({ method: 'GET', url: `/snapshots?${query}` }), 400, 'VALIDATION_FAILED');
    },
  );

  it('refuses a destination no backup could have', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/snapshots?destination=../etc' });
    expectError(res, 400, 'INVALID_DESTINATION');
  });
});

describe('GET /snapshots/:id', () => {
  it('answers one snapshot', async () => {
    const snapshot = await recordSnapshot(uniqueDestination('one'), 'ops');

    const res = await asViewer({ method: 'GET', url: `/snapshots/${snapshot.id}` });

    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<SnapshotBody>()).toMatchObject({ id: snapshot.id, path: snapshot.path, verify: null });
  });

  it("is 404 SNAPSHOT_NOT_FOUND for an unknown id, and for another token's snapshot to an operator", async () => {
    const theirs = await recordSnapshot(uniqueDestination('theirs'), 'admin');

    expectError(await api.app.inject({ method: 'GET', url: `/snapshots/${randomUUID()}` }), 404, 'SNAPSHOT_NOT_FOUND');
    expectError(await asOps({ method: 'GET', url: `/snapshots/${theirs.id}` }), 404, 'SNAPSHOT_NOT_FOUND');
    expectError(await asOps({ method: 'GET', url: `/snapshots/${theirs.id}/manifest` }), 404, 'SNAPSHOT_NOT_FOUND');
  });

  it('refuses an id that is no job id', async () => {
    expectError(await api.app.inject({ method: 'GET', url: '/snapshots/a.b' }), 400, 'VALIDATION_FAILED');
  });
});

/** A snapshot folder with its files, and the manifest the worker would have written beside it. */
async function snapshotOnDisk(files: { name: Buffer; data: string }[]): Promise<SnapshotFacts> {
  const snapshot = await recordSnapshot(uniqueDestination('disk'), 'ops', '20261129T010203.456Z-disk');
  const entries: ManifestEntry[] = [{ path: 'dir', type: 'dir', size: 0, mode: 0o755, mtime: 1764000000000.5 }];
  await mkdir(join(snapshot.path, 'dir'), { recursive: true });
  for (const { name, data } of files) {
    await writeFile(Buffer.concat([Buffer.from(`${snapshot.path}/`), name]), data);
    const text = name.toString();
    entries.push({
      path: text,
      ...(Buffer.from(text).equals(name) ? {} : { pathBase64: name.toString('base64') }),
      type: 'file',
      size: data.length,
      mode: 0o644,
      mtime: 1764000000000.123,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
  }
  // Neither a link nor a file recorded by its size alone has a checksum to check.
  entries.push({ path: 'link', type: 'link', size: 5, mode: 0o777, mtime: 1, target: 'a.txt' });
  entries.push({ path: 'huge', type: 'file', size: 2 ** 40, mode: 0o644, mtime: 1, noData: true });
  const metadata = join(snapshot.path, '..', '.coffer');
  await mkdir(metadata, { recursive: true });
  await writeFile(
    join(metadata, '20261129T010203.456Z-disk.manifest.ndjson'),
    entries.map((entry) => `${JSON.stringify(entry)}\n`).join(''),
  );
  return snapshot;
}

describe('GET /snapshots/:id/manifest', () => {
  const files = [
    { name: Buffer.from('a.txt'), data: 'abc' },
    { name: Buffer.from('dir/with space.txt'), data: 'spaced' },
    { name: Buffer.from('back\\slash'), data: 'bs' },
    { name: Buffer.from('new\nline'), data: 'nl' },
    { name: Buffer.from('*star'), data: 'star' },
    { name: Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9]), data: 'not utf-8' },
    ...Array.from({ length: 1000 }, (_, i) => ({ name: Buffer.from(`dir/many-${i}`), data: `file ${i}` })),
  ];
  let snapshot: SnapshotFacts;

  beforeAll(async () => {
    snapshot = await snapshotOnDisk(files);
  });

  it('streams the manifest as NDJSON', async () => {
    const res = await asOps({ method: 'GET', url: `/snapshots/${snapshot.id}/manifest` });

    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = res.body.trimEnd().split('\n');
    expect(lines).toHaveLength(files.length + 3);
    expect(JSON.parse(lines[1] ?? '')).toMatchObject({ path: 'a.txt', type: 'file', size: 3 });
  });

  it('answers sha256sum check lines that `sha256sum -c` passes in the snapshot folder', async () => {
    const res = await asViewer({ method: 'GET', url: `/snapshots/${snapshot.id}/manifest?format=sha256sum` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);

    const check = spawnSync('sha256sum', ['--check', '--strict', '-'], { cwd: snapshot.path, input: res.rawPayload });

    expect(check.stderr.toString()).toBe('');
    expect(check.status).toBe(0);
    expect(check.stdout.toString().match(/: OK$/gm)).toHaveLength(files.length);
  });

  it('answers lines that `sha256sum -c` fails when a file changed', async () => {
    const damaged = await snapshotOnDisk([{ name: Buffer.from('with space'), data: 'before' }]);
    await writeFile(join(damaged.path, 'with space'), 'after');

    const res = await api.app.inject({ method: 'GET', url: `/snapshots/${damaged.id}/manifest?format=sha256sum` });
    const check = spawnSync('sha256sum', ['--check', '-'], { cwd: damaged.path, input: res.rawPayload });

    expect(check.stdout.toString()).toBe('with space: FAILED\n');
    expect(check.status).toBe(1);
  });

  it('is 404 SNAPSHOT_NOT_FOUND when the snapshot has no manifest, or was pruned', async () => {
    const bare = await recordSnapshot(uniqueDestination('bare'), 'admin');
    const pruned = await snapshotOnDisk([]);
    await pruneSnapshot(api.app, pruned.id);

    for (const id of [bare.id, pruned.id]) {
      expectError(await api.app.inject({ method: 'GET', url: `/snapshots/${id}/manifest` }), 404, 'SNAPSHOT_NOT_FOUND');
    }
  });

  it('refuses an unknown format', async () => {
    const res = await api.app.inject({ method: 'GET', url: `/snapshots/${snapshot.id}/manifest?format=md5` });
    expectError(res, 400, 'VALIDATION_FAILED');
  });
});
