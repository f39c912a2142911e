import { describe, expect, it } from 'vitest';
import { checkDestination, checkSourcePath, defaultDestination, isInsideRoots } from '@coffer/shared';

describe('source roots (lexical check)', () => {
  const roots = ['/srv/data', '/home/alice'];

  it.each([
    ['/srv/data', true],
    ['/srv/data/projects/x', true],
    ['/home/alice/.ssh', true],
    ['/srv/database', false],
    ['/srv', false],
    ['/etc/passwd', false],
    ['/home/alicex', false],
  ])('%s inside the roots: %s', (path, inside) => {
    expect(isInsideRoots(path, roots)).toBe(inside);
  });
});

describe('requested source paths', () => {
  it.each([
    ['relative/path', /absolute/],
    ['', /absolute/],
    ['/srv/data/../../etc', /"\.\."/],
    ['/srv/data/a\0b', /NUL/],
    [`/${'a'.repeat(5000)}`, /longer than 4096/],
    [`/srv/${'é'.repeat(1000)}/${'é'.repeat(1100)}`, /longer than 4096 bytes/],
    [`/srv/data/${'a'.repeat(256)}`, /segment longer than 255 bytes/],
    [`/srv/data/${'é'.repeat(128)}/x`, /segment longer than 255 bytes/],
  ])('refuses %j', (source, message) => {
    expect(checkSourcePath(source)?.message).toMatch(message);
  });

  it('counts a segment in UTF-8 bytes: 255 bytes pass, whatever the characters', () => {
    expect(checkSourcePath(`/srv/${'a'.repeat(255)}`)).toBeNull();
    expect(checkSourcePath(`/srv/${'é'.repeat(127)}a`)).toBeNull();
    expect(checkSourcePath(`/srv/${'🙂'.repeat(63)}abc`)).toBeNull();
    expect(checkSourcePath(`/srv/${'🙂'.repeat(64)}`)).not.toBeNull();
  });

  it('accepts absolute paths with dots in names', () => {
    expect(checkSourcePath('/srv/data/.config/..hidden/file.tar.gz')).toBeNull();
  });
});

describe('destination names', () => {
  it.each([
    'nightly',
    'db/2026',
    'a.b_c-d/e',
    'x'.repeat(200),
    'x'.repeat(255),
    '20261127T191045Z-x',
    'partial-1',
    '.partial',
    'a/.cofferx',
    'coffer',
  ])('accepts %s', (name) => {
    expect(checkDestination(name)).toBeNull();
  });

  it.each([
    ['/abs', /relative/],
    ['../up', /"\.\."/],
    ['a/../b', /"\.\."/],
    ['./a', /"\."/],
    ['a//b', /empty segments/],
    ['a/', /empty segments/],
    ['with space', /only letters/],
    ['semi;colon', /only letters/],
    ['ünïcode', /only letters/],
    ['', /empty/],
    ['x'.repeat(256), /longer than 255 bytes/],
    [`a/${'x'.repeat(256)}/b`, /longer than 255 bytes/],
    // Names Coffer creates inside a destination: a destination there would lie inside a snapshot.
    ['20261127T191045.123Z-6f1c', /inside a snapshot/],
    ['demo/20261127T191045.123Z-6f1c', /inside a snapshot/],
    ['demo/20261127T191045.123Z-6f1c/nested', /inside a snapshot/],
    ['demo/.partial-6f1c', /inside a snapshot/],
    ['demo/.partial-', /inside a snapshot/],
    ['demo/.coffer', /inside a snapshot/],
    ['.coffer/x', /inside a snapshot/],
    // The store marker beside the destinations, and its drafts.
    ['.coffer-store', /store marker/],
    ['.coffer-store/x', /store marker/],
    ['.coffer-store.1f2e.tmp', /store marker/],
  ])('refuses %j', (name, message) => {
    expect(checkDestination(name)?.message).toMatch(message);
  });
});

describe('default destination', () => {
  it.each([
    ['/srv/data/projects', 'projects'],
    ['/srv/data/report.pdf', 'report.pdf'],
    ['/srv/data/Résumé 2026', 'R_sum__2026'],
    ['/', 'root'],
  ])('%s → %s', (source, expected) => {
    expect(defaultDestination(source)).toBe(expected);
    expect(checkDestination(defaultDestination(source))).toBeNull();
  });
});
