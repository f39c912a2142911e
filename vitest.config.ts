import { defineConfig } from 'vitest/config';

// Tests import the workspace packages' TypeScript sources through the
// "@coffer/source" export condition, so they run without a build.
const conditions = ['@coffer/source', 'node', 'import', 'default'];
// Vitest hands the SSR conditions to Node as --conditions. A forced "import" there makes
// CommonJS packages require() the ESM build of dual packages (@fastify/helmet then gets
// helmet's module namespace instead of its function); Vite and Node add "import" themselves.
const ssrConditions = conditions.filter((condition) => condition !== 'import');

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions: ssrConditions, externalConditions: ssrConditions } },
  test: {
    include: ['{shared,db,api,worker,cli}/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Integration tests share one Redis and one MariaDB; files run one at a time
    // so timing-sensitive worker tests do not fight for the two cores.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
