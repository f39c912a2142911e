import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RULESET = fileURLToPath(new URL('../.spectral.yaml', import.meta.url));
const CLI = createRequire(import.meta.url).resolve('@stoplight/spectral-cli');
const SEVERITIES = ['error', 'warning', 'info', 'hint'] as const;

/** One finding of Spectral's, as its JSON output gives it. */
export interface SpectralFinding {
  code: string;
  message: string;
  /** Where in the document: keys from the root, e.g. `["paths", "/jobs", "get"]`. */
  path: string[];
  /** 0 error, 1 warning, 2 info, 3 hint. */
  severity: number;
}

/** Lints an OpenAPI document with the ruleset in api/.spectral.yaml; every finding, of any severity, is returned. */
export async function lintOpenapi(document: unknown): Promise<SpectralFinding[]> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-openapi-'));
  try {
    const file = join(dir, 'openapi.json');
    await writeFile(file, JSON.stringify(document, null, 2));
    const { code, stdout, stderr } = await run(process.execPath, [
      CLI,
      'lint',
      file,
      '--ruleset',
      RULESET,
      '--format',
      'json',
      // Without it, a line of prose follows the JSON.
      '--quiet',
      '--fail-severity',
      'hint',
    ]);
    // 0: nothing found, 1: findings; anything else (2: bad ruleset, crash) is Spectral's own failure.
    if (code !== 0 && code !== 1) throw new Error(`spectral exited with ${code}: ${stderr || stdout}`);
    return JSON.parse(stdout) as SpectralFinding[];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One line per finding: `warning operation-operationId paths./health.get: Operation must have "operationId".` */
export function formatFinding(finding: SpectralFinding): string {
  return `${SEVERITIES[finding.severity] ?? finding.severity} ${finding.code} ${finding.path.join('.')}: ${finding.message}`;
}

function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
