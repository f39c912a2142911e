import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface TreeEntry {
  type: 'file' | 'dir' | 'link' | 'other';
  mode: number;
  mtimeMs: number;
  content?: string;
  target?: string;
}

/**
 * Describes a tree (contents, modes, mtimes, link targets) so two trees can be
 * compared with one `expect(...).toEqual(...)`. Contents are hashed to base64
 * to keep failure output readable.
 */
export async function describeTree(root: string): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  async function visit(dir: string, prefix: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const rel = prefix ? `${prefix}/${name}` : name;
      const stat = await lstat(path);
      const base = { mode: stat.mode & 0o7777, mtimeMs: Math.floor(stat.mtimeMs) };
      if (stat.isSymbolicLink()) out[rel] = { type: 'link', ...base, mode: 0, target: await readlink(path) };
      else if (stat.isDirectory()) {
        out[rel] = { type: 'dir', ...base };
        await visit(path, rel);
      } else if (stat.isFile())
        out[rel] = { type: 'file', ...base, content: (await readFile(path)).toString('base64') };
      else out[rel] = { type: 'other', ...base };
    }
  }
  await visit(root, '');
  return out;
}
