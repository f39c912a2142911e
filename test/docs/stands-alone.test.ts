import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));
// This file names what it looks for.
const THIS_FILE = relative(REPOSITORY, fileURLToPath(import.meta.url));
const LOCKFILE = 'pnpm-lock.yaml';

// The team's own contract, which users of the repository do not have.
const CONTRACT = /contract\.md/gi;
// A relative path to a folder named `shared`: the repository's own package when it leads there
// (`../shared` from api/), the team's folder beside the checkout when it leads out of it.
const SHARED = /((?:\.\.\/)+)shared\b/g;

function trackedFiles(): string[] {
  return execFileSync('git', ['ls-files', '-z'], { cwd: REPOSITORY, encoding: 'utf8' }).split('\0').filter(Boolean);
}

function readIfThere(file: string): string | null {
  try {
    return readFileSync(join(REPOSITORY, file), 'utf8');
  } catch (err) {
    // Tracked but deleted in this working tree.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function leavesRepository(from: string, path: string): boolean {
  const rel = relative(REPOSITORY, resolve(REPOSITORY, from, path));
  return rel === '..' || rel.startsWith('../') || isAbsolute(rel);
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}

/** `link:` paths in pnpm's lockfile lead from the package that depends on them, not from the lockfile. */
function lockfileLinksOutside(text: string): string[] {
  const lock = parse(text) as { importers?: Record<string, Record<string, Record<string, { version?: unknown }>>> };
  const found: string[] = [];
  for (const [importer, sections] of Object.entries(lock.importers ?? {})) {
    for (const dependencies of Object.values(sections)) {
      for (const [name, { version }] of Object.entries(dependencies)) {
        if (typeof version !== 'string' || !version.startsWith('link:')) continue;
        if (leavesRepository(importer, version.slice('link:'.length))) {
          found.push(`${LOCKFILE}: ${importer} links ${name} to ${version}, outside the repository`);
        }
      }
    }
  }
  return found;
}

/** Where `file` points to the team's files: `path:line: what`. */
function pointersOutside(file: string, text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(CONTRACT)) found.push(`${file}:${lineOf(text, match.index)}: ${match[0]}`);
  for (const match of text.matchAll(SHARED)) {
    const linked = file === LOCKFILE && text.slice(Math.max(0, match.index - 5), match.index) === 'link:';
    if (linked) continue; // checked by lockfileLinksOutside
    if (leavesRepository(dirname(file), `${match[1]}shared`)) {
      found.push(`${file}:${lineOf(text, match.index)}: ${match[0]}`);
    }
  }
  if (file === LOCKFILE) found.push(...lockfileLinksOutside(text));
  return found;
}

describe('the repository', () => {
  it('stands alone: no tracked file points to the team contract or the team folder beside the checkout', () => {
    const found = trackedFiles()
      .filter((file) => file !== THIS_FILE)
      .flatMap((file) => {
        const text = readIfThere(file);
        return text === null ? [] : pointersOutside(file, text);
      });
    expect(found, 'users have only the repository: point them to docs/ instead').toEqual([]);
  });

  it('tells a mention of its own shared/ package from one of the folder outside it', () => {
    expect(pointersOutside('api/test/x.ts', "import '../../shared/src/index.js';")).toEqual([]);
    expect(pointersOutside('docs/x.md', 'see [job.ts](../shared/src/job.ts)')).toEqual([]);
    expect(pointersOutside('README.md', 'see ../shared/CONTRACT.md')).toEqual([
      'README.md:1: CONTRACT.md',
      'README.md:1: ../shared',
    ]);
    const lock = "importers:\n  api:\n    dependencies:\n      '@coffer/shared':\n        version: link:../shared\n";
    expect(pointersOutside(LOCKFILE, lock)).toEqual([]);
    expect(pointersOutside(LOCKFILE, lock.replace('api:', '.:'))).toEqual([
      `${LOCKFILE}: . links @coffer/shared to link:../shared, outside the repository`,
    ]);
  });
});
