import { JobFailure } from '@coffer/shared';
import { describe, expect, it } from 'vitest';
import { UnsupportedSourceError } from '../src/copy/copy-tree.js';
import { PathTooLongError } from '../src/copy/path-too-long.js';
import { toSnapshotFailure, type SnapshotPaths } from '../src/copy/snapshot-failure.js';

const paths: SnapshotPaths = {
  source: '/data/projects/alpha',
  backupRoot: '/backups',
  folder: '/backups/alpha',
};

function systemError(code: string, syscall: string, file: string, dest?: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: ${syscall} '${file}'`);
  error.code = code;
  error.syscall = syscall;
  error.path = file;
  if (dest !== undefined) Object.assign(error, { dest });
  return error;
}

describe('toSnapshotFailure', () => {
  it('maps a full or over-quota destination to DESTINATION_FULL, retryable', () => {
    for (const code of ['ENOSPC', 'EDQUOT']) {
      const error = systemError(code, 'copyfile', '/data/projects/alpha/big', '/backups/alpha/.partial-1/big');
      const failure = toSnapshotFailure(error, paths);
      expect(failure).toBeInstanceOf(JobFailure);
      expect(failure).toMatchObject({ code: 'DESTINATION_FULL', permanent: false, cause: error });
      expect((failure as JobFailure).message).toContain('/backups/alpha/.partial-1/big');
      expect((failure as JobFailure).message).toContain(code);
    }
  });

  it('maps a missing source root to SOURCE_NOT_FOUND, permanent', () => {
    const failure = toSnapshotFailure(systemError('ENOENT', 'lstat', paths.source), paths);
    expect(failure).toMatchObject({ code: 'SOURCE_NOT_FOUND', permanent: true });
  });

  it('leaves a file vanishing inside the source as a transient error', () => {
    const error = systemError('ENOENT', 'lstat', '/data/projects/alpha/tmp.lock');
    expect(toSnapshotFailure(error, paths)).toBe(error);
  });

  it('tells unreadable sources from unwritable destinations', () => {
    expect(toSnapshotFailure(systemError('EACCES', 'opendir', '/data/projects/alpha/private'), paths)).toMatchObject({
      code: 'SOURCE_UNREADABLE',
      permanent: true,
    });
    expect(toSnapshotFailure(systemError('EPERM', 'mkdir', '/backups/alpha/.partial-1/x'), paths)).toMatchObject({
      code: 'DESTINATION_NOT_WRITABLE',
      permanent: false,
    });
    expect(toSnapshotFailure(systemError('EROFS', 'mkdir', '/backups/alpha'), paths)).toMatchObject({
      code: 'DESTINATION_NOT_WRITABLE',
      permanent: false,
    });
  });

  it('blames the destination for anything while preparing its folder', () => {
    expect(toSnapshotFailure(systemError('ENOTDIR', 'mkdir', '/backups'), paths, 'destination')).toMatchObject({
      code: 'DESTINATION_NOT_WRITABLE',
    });
    expect(toSnapshotFailure(systemError('EACCES', 'mkdir', '/elsewhere'), paths, 'destination')).toMatchObject({
      code: 'DESTINATION_NOT_WRITABLE',
    });
  });

  it('maps a source that is neither file nor folder to SOURCE_UNREADABLE, permanent', () => {
    expect(toSnapshotFailure(new UnsupportedSourceError('/data/fifo'), paths)).toMatchObject({
      code: 'SOURCE_UNREADABLE',
      permanent: true,
    });
  });

  it('maps a path too long for the system to PATH_TOO_LONG, permanent, naming it', () => {
    const deep = `/data/projects/alpha/${'x/'.repeat(2100)}leaf`;
    const failure = toSnapshotFailure(new PathTooLongError(deep), paths);
    expect(failure).toBeInstanceOf(JobFailure);
    expect(failure).toMatchObject({ code: 'PATH_TOO_LONG', permanent: true });
    expect((failure as JobFailure).message).toContain('/data/projects/alpha/x/x/');
    expect((failure as JobFailure).message).toContain('4095 bytes');
    // The system's own answer, from a call outside the copy engine (the snapshot's final rename).
    const refused = systemError('ENAMETOOLONG', 'rename', '/backups/alpha/.partial-1', '/backups/alpha/2026');
    expect(toSnapshotFailure(refused, paths)).toMatchObject({ code: 'PATH_TOO_LONG', permanent: true });
  });

  it('returns other errors unchanged, so the job is retried', () => {
    const io = systemError('EIO', 'read', '/data/projects/alpha/disk');
    const plain = new Error('boom');
    expect(toSnapshotFailure(io, paths)).toBe(io);
    expect(toSnapshotFailure(plain, paths)).toBe(plain);
    expect(toSnapshotFailure('a string', paths)).toBe('a string');
  });
});
