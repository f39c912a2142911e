import { join } from 'node:path';
import autocannon from 'autocannon';
import { cleanup, cofferEnvironment, createScope, freePort, isolate, launch, stop, waitForHttp } from './stack.js';
const scope = createScope('/tmp/bx');
const variants: Record<string, Record<string, string>> = {
  asis: {},
  quiet: { LOG_LEVEL: 'warn' },
  nolimit: { RATE_LIMIT_PER_MINUTE: '0' },
  quietnolimit: { LOG_LEVEL: 'warn', RATE_LIMIT_PER_MINUTE: '0' },
};
try {
  for (const [name, extra] of Object.entries(variants)) {
    const port = await freePort();
    const child = launch(scope, name, ['api/dist/server.js'], cofferEnvironment(isolate(scope, name), {
      PORT: String(port), SOURCE_ROOTS: '/var/tmp/coffer-bench/data', BACKUP_ROOT: '/tmp/bx/b', API_ADMIN_TOKEN: 'x'.repeat(32), RATE_LIMIT_PER_MINUTE: '1000000', ...extra,
    }));
    await waitForHttp(`http://127.0.0.1:${port}/ready`, child);
    const run = async (path: string, method: 'GET' | 'POST', seconds: number) => autocannon({ url: `http://127.0.0.1:${port}${path}`, method, connections: 50, duration: seconds, headers: { 'content-type': 'application/json', authorization: `Bearer ${'x'.repeat(32)}` }, body: method === 'POST' ? JSON.stringify({ source: '/var/tmp/coffer-bench/data/tiny-1x100B' }) : undefined });
    await run('/backup', 'POST', 1);
    const r = await run('/backup', 'POST', 4);
    const h = await run('/health', 'GET', 2);
    const j = await run('/jobs?limit=1', 'GET', 2);
    console.log(name, 'POST', Math.round(r['2xx'] / r.duration), 'non2xx', r.non2xx, '| /health', Math.round(h['2xx'] / h.duration), '| /jobs', Math.round(j['2xx'] / j.duration), j.non2xx);
    await stop(child);
  }
} finally { await cleanup(scope); }
