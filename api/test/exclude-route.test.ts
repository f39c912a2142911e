import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError, lastLogId, logRows, queuedBackup, startApi, type ApiHarness } from './helpers.js';

let api: ApiHarness;
let folder: string;

beforeAll(async () => {
  api = await startApi();
  folder = join(api.env.sources, 'project');
  await mkdir(folder);
});

afterAll(async () => {
  await api?.close();
});

async function post(exclude: unknown) {
  return api.app.inject({ method: 'POST', url: '/backup', payload: { source: folder, exclude } });
}

describe('POST /backup with exclude patterns', () => {
  it('queues the patterns with the job, as given', async () => {
    const exclude = ['node_modules/', '*.tmp', '/cache', '**/build', '!keep.tmp'];

    const res = await post(exclude);

    expect(res.statusCode, res.body).toBe(202);
    expect(await queuedBackup(api.app, res.json<{ id: string }>().id)).toEqual({
      source: folder,
      destination: 'project',
      incremental: true,
      exclude,
      actor: 'admin',
    });
  });

  it('accepts the most it allows: 100 patterns of 1024 characters each', async () => {
    const exclude = Array.from({ length: 100 }, (_, index) => `${String(index).padStart(3, '0')}${'x'.repeat(1021)}`);

    const res = await post(exclude);

    expect(res.statusCode, res.body).toBe(202);
    expect((await queuedBackup(api.app, res.json<{ id: string }>().id))?.exclude).toEqual(exclude);
  });

  it('queues no patterns for an empty list: the backup copies everything', async () => {
    const res = await post([]);

    expect(res.statusCode, res.body).toBe(202);
    expect(await queuedBackup(api.app, res.json<{ id: string }>().id)).not.toHaveProperty('exclude');
  });

  it.each([
    [
      '101 patterns',
      Array.from({ length: 101 }, (_, index) => `p${index}`),
      /exclude must NOT have more than 100 items/,
    ],
    ['a pattern of 1025 characters', ['x'.repeat(1025)], /exclude\/0 must NOT have more than 1024 characters/],
    ['an empty pattern', ['*.tmp', ''], /exclude\/1 must NOT have fewer than 1 characters/],
    ['a pattern that is not a string', ['*.tmp', 5], /exclude\/1 must be string/],
    ['patterns that are not a list', '*.tmp', /exclude must be array/],
  ])(
    'refuses %s with 400, a message naming the pattern and the rule, and queues nothing',
    async (_case, exclude, says) => {
      const countsBefore = await api.app.backupQueue.getJobCounts();
      const lastIdBefore = await lastLogId(api.db);

      const res = await post(exclude);

      const error = expectError(res, 400, 'VALIDATION_FAILED');
      expect(error.message).toMatch(says);
      expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
      expect((await logRows(api.db, 'id > ?', [lastIdBefore])).map((row) => row.status)).toEqual(['rejected']);
    },
  );

  it.each([['**/a/**/b'], ['a/**/b/**/c'], ['!**/x/**/y/']])(
    'refuses %s (two "**" segments before the last: matching it would backtrack steeply) with 400 INVALID_EXCLUDE',
    async (pattern) => {
      const countsBefore = await api.app.backupQueue.getJobCounts();

      const res = await post(['*.tmp', pattern]);

      const error = expectError(res, 400, 'INVALID_EXCLUDE');
      expect(error.message).toContain(`exclude pattern 1 "${pattern}" has 2 "**" segments before its last one`);
      expect(await api.app.backupQueue.getJobCounts()).toEqual(countsBefore);
    },
  );

  it.each([['a/**/b'], ['**/build'], ['a/**/b/**'], ['a**b**c']])(
    'accepts %s: one "**" segment stays linear',
    async (pattern) => {
      expect((await post([pattern])).statusCode).toBe(202);
    },
  );
});
