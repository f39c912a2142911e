import { cp, lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

interface Rule {
  exclude: boolean;
  pattern: RegExp;
}

function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] ?? '';
    if (char === '*' && glob[i + 1] === '*') {
      // `**/` matches any number of folders, none included; a trailing `**` anything.
      if (glob[i + 2] === '/') {
        source += '(?:.*/)?';
        i += 2;
      } else {
        source += '.*';
        i += 1;
      }
    } else if (char === '*') source += '[^/]*';
    else if (char === '?') source += '[^/]';
    else if (char === '[') {
      const end = glob.indexOf(']', i);
      source += end > i ? glob.slice(i, end + 1) : '\\[';
      i = end > i ? end : i;
    } else source += char.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/**
 * The `.dockerignore` rules as Docker applies them: patterns relative to the context root,
 * `**` across folders, a matched folder excludes what it holds, `!` re-includes, last
 * match wins.
 */
export class DockerIgnore {
  private readonly rules: Rule[];

  constructor(text: string) {
    this.rules = text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => {
        const exclude = !line.startsWith('!');
        const pattern = (exclude ? line : line.slice(1)).trim().replace(/^\/+/, '').replace(/\/+$/, '');
        return { exclude, pattern: globToRegExp(pattern) };
      });
  }

  static async read(contextDir: string): Promise<DockerIgnore> {
    const text = await readFile(join(contextDir, '.dockerignore'), 'utf8').catch(() => '');
    return new DockerIgnore(text);
  }

  /** Whether a path (relative, `/`-separated) is left out of the build context. */
  excludes(relativePath: string): boolean {
    const parts = relativePath.split('/');
    let excluded = false;
    for (const rule of this.rules) {
      // The path itself or one of its parent folders.
      for (let depth = 1; depth <= parts.length; depth++) {
        if (rule.pattern.test(parts.slice(0, depth).join('/'))) {
          excluded = rule.exclude;
          break;
        }
      }
    }
    return excluded;
  }

  get hasExceptions(): boolean {
    return this.rules.some((rule) => !rule.exclude);
  }
}

/** Every file (and symbolic link) of the build context, relative to its root, sorted. */
export async function listContext(contextDir: string, ignore: DockerIgnore): Promise<string[]> {
  const files: string[] = [];
  async function visit(relative: string): Promise<void> {
    for (const entry of await readdir(join(contextDir, relative), { withFileTypes: true })) {
      const path = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        // Only an exception can bring back something inside an excluded folder.
        if (ignore.excludes(path) && !ignore.hasExceptions) continue;
        await visit(path);
      } else if (!ignore.excludes(path)) {
        files.push(path);
      }
    }
  }
  await visit('');
  return files.sort();
}

/** Copies the build context (what `docker build` would send) into `target`. */
export async function copyContext(contextDir: string, target: string): Promise<string[]> {
  const files = await listContext(contextDir, await DockerIgnore.read(contextDir));
  for (const file of files) {
    const destination = join(target, file);
    await mkdir(dirname(destination), { recursive: true });
    const stat = await lstat(join(contextDir, file));
    await cp(join(contextDir, file), destination, { verbatimSymlinks: true, preserveTimestamps: stat.isFile() });
  }
  return files;
}

/** The context files a COPY source (a path or a glob) stands for. */
export function matchSource(source: string, files: readonly string[]): string[] {
  const normalized = source === '.' ? '' : source.replace(/^\.\//, '').replace(/\/+$/, '');
  if (normalized === '') return [...files];
  const pattern = globToRegExp(normalized);
  return files.filter((file) => pattern.test(file) || file.startsWith(`${normalized}/`));
}
