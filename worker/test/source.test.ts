import { mkdir, mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveSource } from '../src/source.js';

let tmp: string;

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'coffer-source-')));
  await mkdir(join(tmp, 'data', 'projects'), { recursive: true });
  await mkdir(join(tmp, 'store', 'dest'), { recursive: true });
});

afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('resolveSource and the backup store', () => {
  it('accepts a source beside the store', async () => {
    expect(await resolveSource(join(tmp, 'data'), [tmp], join(tmp, 'store'))).toBe(join(tmp, 'data'));
  });

  it('refuses a link that leads into the store, though its path is outside it', async () => {
    await symlink(join(tmp, 'store', 'dest'), join(tmp, 'data', 'innocent'));

    await expect(resolveSource(join(tmp, 'data', 'innocent'), [tmp], join(tmp, 'store'))).rejects.toMatchObject({
      code: 'SOURCE_OVERLAPS_BACKUP_ROOT',
      permanent: true,
    });
  });

  it('refuses a source that contains the store', async () => {
    await expect(resolveSource(tmp, [tmp], join(tmp, 'store'))).rejects.toMatchObject({
      code: 'SOURCE_OVERLAPS_BACKUP_ROOT',
    });
  });

  it('refuses a source that would contain the store once it is created, through a linked parent', async () => {
    await symlink(join(tmp, 'data'), join(tmp, 'alias'));

    const failure = resolveSource(join(tmp, 'data'), [tmp], join(tmp, 'alias', 'backups', 'not-yet'));

    await expect(failure).rejects.toMatchObject({ code: 'SOURCE_OVERLAPS_BACKUP_ROOT' });
    await expect(failure).rejects.toThrow(join(tmp, 'data', 'backups', 'not-yet'));
  });
});
