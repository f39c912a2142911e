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
  ])('refuses %j', (source, message) => {
    expect(checkSourcePath(source)?.message).toMatch(message);
  });

  it('accepts absolute paths with dots in names', () => {
    expect(checkSourcePath('/srv/data/.config/..hidden/file.tar.gz')).toBeNull();
  });
});

describe('destination names', () => {
  it.each(['nightly', 'db/2026', 'a.b_c-d/e', 'x'.repeat(200)])('accepts %s', (name) => {
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
