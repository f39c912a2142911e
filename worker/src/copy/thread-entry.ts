/**
 * Where a thread starts: the compiled module `module` beside `besides` (a module's
 * `import.meta.url`; default this folder's), or its TypeScript source
 * through tsx when running from the sources (as the test suite does): Node cannot load .ts
 * files itself, and a thread does not inherit the loader the sources were loaded with.
 */
export function threadEntry(module: string, besides: string = import.meta.url): URL {
  const extension = new URL(besides).pathname.endsWith('.ts') ? '.ts' : '.js';
  const entry = new URL(`./${module}${extension}`, besides);
  if (extension === '.js') return entry;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(boot)}`);
}
