import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The repository root (this file is test/delivery/helpers/repo.ts). */
export const REPO_ROOT = resolve(new URL('../../..', import.meta.url).pathname);
/**
 * The official Compose schema (compose-spec/compose-spec, `schema/compose-spec.json`, Apache-2.0),
 * kept as a fixture so the repository tests itself anywhere; COMPOSE_SPEC points at another copy.
 */
export const COMPOSE_SCHEMA =
  process.env.COMPOSE_SPEC ?? resolve(REPO_ROOT, 'test', 'delivery', 'fixtures', 'compose-spec.json');
/** Where ci/validate-delivery.sh installs its npm tools. */
export const DELIVERY_TOOLS_DIR =
  process.env.DELIVERY_TOOLS_DIR ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'coffer-delivery-tools');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end and collects its output; never rejects on a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? REPO_ROOT,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer =
      options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', reject);
    // A command may end without reading its input (most never read it): its exit tells how it
    // went, not the write it left unread (EPIPE, when it ends first, as it may on a loaded machine).
    child.stdin.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') reject(error);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Output of a finished command, for assertion messages. */
export function describeRun(result: RunResult): string {
  return `exit ${result.code ?? result.signal}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}
