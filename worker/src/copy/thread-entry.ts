/** The modules that a worker thread of the copy engine starts from. */
export type ThreadModule = 'copy-thread' | 'verify-thread' | 'restore-thread';

/**
 * Where a thread starts: the compiled entry beside this module, or its TypeScript source
 * through tsx when running from the sources (as the test suite does): Node cannot load .ts
 * files itself, and a thread does not inherit the loader the sources were loaded with.
 */
export function threadEntry(module: ThreadModule): URL {
  const extension = new URL(import.meta.url).pathname.endsWith('.ts') ? '.ts' : '.js';
  const entry = new URL(`./${module}${extension}`, import.meta.url);
  if (extension === '.js') return entry;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(boot)}`);
}
