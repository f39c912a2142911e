import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ISO_DATE,
  containing,
  expectError,
  issueToken,
  lastLogId,
  logRows,
  startApi,
  type ApiHarness,
  type StoredLogRow,
} from './helpers.js';

// Operators "alice" and "bob", an admin token besides the configured one; every request backs up
// the same folder, into the destination the test names.
let api: ApiHarness;
let folder: string;
const tokens: Record<'alice' | 'bob' | 'admin', string> = { alice: '', bob: '', admin: '' };
type Who = keyof typeof tokens;

beforeAll(async () => {
  api = await startApi();
  folder = join(api.env.sources, 'data');
  await mkdir(folder);
  tokens.alice = await issueToken(api, 'alice', 'operator');
  tokens.bob = await issueToken(api, 'bob', 'operator');
  tokens.admin = await issueToken(api, 'root-admin', 'admin');
});

afterAll(async () => {
  await api?.close();
});

function backup(who: Who, destination: string, source = folder) {
  return api.request(tokens[who], { method: 'POST', url: '/backup', payload: { source, destination } });
}

async function statuses(...requests: [Who, string][]): Promise<number[]> {
  const answers = [];
  for (const [who, destination] of requests) answers.push((await backup(who, destination)).statusCode);
  return answers;
}

async function ownerOf(destination: string): Promise<{ owner: string; created_at: Date } | undefined> {
  const [rows] = await api.db.query<RowDataPacket[]>('SELECT owner, created_at FROM destination WHERE name = ?', [
    destination,
  ]);
  return rows[0] as { owner: string; created_at: Date } | undefined;
}

describe('destinations are owned by the first token to write them', () => {
  it('records the first writer and refuses another operator with 403 DESTINATION_NOT_OWNED, queuing nothing', async () => {
    expect((await backup('alice', 'alice-nightly')).statusCode).toBe(202);
    const countsBefore = await api.app.backupQueue.getJobCounts();
    const lastIdBefore = await lastLogId(api.db);

    const refused = await backup('bob', 'alice-nightly');

    const error = expectError(refused, 403, 'DESTINATION_NOT_OWNED');
    expect(error.message).toContain('"alice-nightly"');
    expect(error.message).toContain('another token');
    expect(error.message).not.toContain('alice"');
    expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    expect(await logRows(api.db, 'id > ?', [lastIdBefore])).toEqual([
      containing<StoredLogRow>({ status: 'rejected', job_id: null, code: 'DESTINATION_NOT_OWNED' }),
    ]);
    expect(await ownerOf('alice-nightly')).toEqual({ owner: 'alice', created_at: expect.any(Date) as Date });
    expect((await ownerOf('alice-nightly'))?.created_at.toISOString()).toMatch(ISO_DATE);
  });

  it('lets the owner write again, and again', async () => {
    expect(await statuses(['alice', 'alice-again'], ['alice', 'alice-again'], ['alice', 'alice-again'])).toEqual([
      202, 202, 202,
    ]);
  });

  it("lets an admin write into an operator's destination without taking it over", async () => {
    expect(
      await statuses(['alice', 'shared-by-admin'], ['admin', 'shared-by-admin'], ['alice', 'shared-by-admin']),
    ).toEqual([202, 202, 202]);
    expect((await ownerOf('shared-by-admin'))?.owner).toBe('alice');
  });

  it('claims a new destination for the admin who writes it first: operators are then refused', async () => {
    expect(await statuses(['admin', 'admin-only'], ['alice', 'admin-only'])).toEqual([202, 403]);
    expect((await ownerOf('admin-only'))?.owner).toBe('root-admin');
  });

  it('claims the default destination (the source base name) like a named one', async () => {
    const source = join(api.env.sources, 'bobs-folder');
    await mkdir(source);
    const post = (who: Who) =>
      api.request(tokens[who], { method: 'POST', url: '/backup', payload: { source } }).then((res) => res.statusCode);

    expect([await post('bob'), await post('alice'), await post('bob')]).toEqual([202, 403, 202]);
  });

  it('gives a new destination to exactly one of several tokens asking at once', async () => {
    const requests = Array.from({ length: 12 }, (_, i) => backup(i % 2 === 0 ? 'alice' : 'bob', 'contended'));

    const answers = await Promise.all(requests);

    const owner = (await ownerOf('contended'))?.owner;
    const byAlice = answers.filter((_, i) => i % 2 === 0).map((res) => res.statusCode);
    const byBob = answers.filter((_, i) => i % 2 === 1).map((res) => res.statusCode);
    expect(owner === 'alice' || owner === 'bob').toBe(true);
    expect(owner === 'alice' ? byAlice : byBob).toEqual(Array(6).fill(202));
    expect(owner === 'alice' ? byBob : byAlice).toEqual(Array(6).fill(403));
  });
});

describe("destinations nested in another token's destination", () => {
  it("refuses a destination inside another token's, naming the outer one", async () => {
    expect((await backup('alice', 'projects')).statusCode).toBe(202);

    const inside = await backup('bob', 'projects/bobs');
    const deeper = await backup('bob', 'projects/x/y');

    expect(expectError(inside, 403, 'DESTINATION_NOT_OWNED').message).toMatch(
      /"projects\/bobs" lies inside destination "projects"/,
    );
    expectError(deeper, 403, 'DESTINATION_NOT_OWNED');
  });

  it("refuses a destination around another token's, without naming what it holds", async () => {
    expect((await backup('bob', 'archive/bobs-secret-plan')).statusCode).toBe(202);

    const around = await backup('alice', 'archive');

    const error = expectError(around, 403, 'DESTINATION_NOT_OWNED');
    expect(error.message).toMatch(/"archive" would contain a destination that belongs to another token/);
    expect(error.message).not.toContain('secret');
    expect(await ownerOf('archive')).toBeUndefined();
  });

  it("lets a token nest destinations inside its own, and use names that only share a prefix with another's", async () => {
    expect((await backup('alice', 'home')).statusCode).toBe(202);

    expect(
      await statuses(
        ['alice', 'home/photos'],
        ['alice', 'home/photos/2026'],
        ['bob', 'home2'],
        ['bob', 'home-bob'],
        ['bob', 'home.bob'],
      ),
    ).toEqual([202, 202, 202, 202, 202]);
  });

  it('keeps an owned destination writable after an admin nested another inside it', async () => {
    expect(
      await statuses(['alice', 'team'], ['admin', 'team/admin-made'], ['alice', 'team'], ['alice', 'team/admin-made']),
    ).toEqual([202, 202, 202, 403]);
  });

  it('never gives two tokens nested destinations, however their first requests interleave', async () => {
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? backup('alice', 'race') : backup('bob', 'race/inner'))),
    );

    const owners = [(await ownerOf('race'))?.owner, (await ownerOf('race/inner'))?.owner].filter(Boolean);
    expect(owners).toHaveLength(1);
    expect(answers.filter((res) => res.statusCode === 202).length).toBe(3);
  });
});

describe('no destination lies inside a snapshot (400 INVALID_DESTINATION)', () => {
  it.each([
    ['a snapshot folder', 'demo/20261127T191045.123Z-6f1c0000'],
    ['a folder inside a snapshot', 'demo/20261127T191045.123Z-6f1c0000/docs'],
    ['a snapshot at the top', '20261127T191045.123Z-6f1c0000'],
    ['a partial copy', 'demo/.partial-6f1c0000'],
    ['the metadata folder', 'demo/.coffer'],
    ['inside the metadata folder', 'demo/.coffer/x'],
  ])('refuses %s (%s), claiming nothing', async (_case, destination) => {
    const error = expectError(await backup('alice', destination), 400, 'INVALID_DESTINATION');

    expect(error.message).toContain('inside a snapshot');
    expect(await ownerOf(destination)).toBeUndefined();
  });

  it('refuses a default destination that would be a snapshot name: the client must name one', async () => {
    const source = join(api.env.sources, '20261127T191045.123Z-copied-snapshot');
    await mkdir(source);

    const defaulted = await api.request(tokens.alice, { method: 'POST', url: '/backup', payload: { source } });
    const named = await backup('alice', 'copied-snapshot', source);

    expectError(defaulted, 400, 'INVALID_DESTINATION');
    expect(named.statusCode, named.body).toBe(202);
  });
});
