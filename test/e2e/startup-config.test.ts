import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NO_SETTINGS_FILE } from '../helpers/environment.js';

const ROOT = new URL('../..', import.meta.url).pathname;

describe('a process with invalid configuration', () => {
  it.each([
    ['api/dist/server.js', { PORT: 'eighty', LOG_LEVEL: 'loud' }, ['PORT', 'LOG_LEVEL']],
    ['worker/dist/main.js', { WORKER_CONCURRENCY: '0' }, ['WORKER_CONCURRENCY']],
    ['worker/dist/main.js', { MYSQL_PASSWORD: 'x', MYSQL_PASSWORD_FILE: '/run/secrets/pw' }, ['MYSQL_PASSWORD_FILE']],
    ['api/dist/server.js', { SOURCE_ROOTS: 'relative/dir' }, ['SOURCE_ROOTS']],
  ])('%s with %j stops at once, naming the variables', (script, variables, named) => {
    const run = spawnSync(process.execPath, [join(ROOT, script)], {
      env: { PATH: process.env.PATH ?? '', ...NO_SETTINGS_FILE, ...variables },
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('invalid configuration');
    for (const name of named) expect(run.stderr).toContain(name);
  });
});
