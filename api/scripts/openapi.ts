// The API's OpenAPI description, built as the API builds it but with no Redis or MySQL behind it.
//   node --conditions=@coffer/source --import tsx api/scripts/openapi.ts          prints it (JSON)
//   node --conditions=@coffer/source --import tsx api/scripts/openapi.ts --lint   lints it (`pnpm lint`):
//     Spectral's spectral:oas rules (api/.spectral.yaml); any finding, a warning too, fails.
import { parseArgs } from 'node:util';
import { loadConfig } from '@coffer/shared';
import { buildApp } from '../src/app.js';
import { formatFinding, lintOpenapi } from './spectral.js';

// Nothing listens on port 1: the app starts without its services (after the queue's 5 s wait for
// Redis) and what it documents does not depend on them. Defaults everywhere else: /metrics needs a
// token, as in the document a default deployment serves.
const THROWAWAY = {
  REDIS_URL: 'redis://127.0.0.1:1',
  MYSQL_HOST: '127.0.0.1',
  MYSQL_PORT: '1',
  SOURCE_ROOTS: '/nonexistent/sources',
  BACKUP_ROOT: '/nonexistent/backups',
  LOG_LEVEL: 'silent',
};

async function openapiDocument(): Promise<unknown> {
  const app = await buildApp({ config: loadConfig(THROWAWAY) });
  try {
    await app.ready();
    return app.swagger();
  } finally {
    await app.close();
  }
}

const { values } = parseArgs({ options: { lint: { type: 'boolean', default: false } } });
const document = await openapiDocument();
if (values.lint) {
  const findings = await lintOpenapi(document);
  for (const finding of findings) process.stdout.write(`${formatFinding(finding)}\n`);
  process.stdout.write(`OpenAPI description: ${findings.length} Spectral finding(s)\n`);
  process.exitCode = findings.length === 0 ? 0 : 1;
} else {
  process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
}
// An app whose Redis never answered leaves ioredis reconnect timers behind after close.
process.exit();
