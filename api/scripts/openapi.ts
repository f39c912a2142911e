// The API's OpenAPI description, built as the API builds it but with no Redis or MySQL behind it.
//   node --conditions=@coffer/source --import tsx api/scripts/openapi.ts          prints it (JSON)
//   node --conditions=@coffer/source --import tsx api/scripts/openapi.ts --lint   lints it (`pnpm lint`):
//     Spectral's spectral:oas rules (api/.spectral.yaml); any finding, a warning too, fails.
import { parseArgs } from 'node:util';
import { describeApi } from './api-reference.js';
import { formatFinding, lintOpenapi } from './spectral.js';

const { values } = parseArgs({ options: { lint: { type: 'boolean', default: false } } });
const document = await describeApi();
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
