import { defineConfig } from 'vitest/config';

// Tests import the workspace packages' TypeScript sources through the
// "@coffer/source" export condition, so they run without a build.
const conditions = ['@coffer/source', 'node', 'import', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    include: ['{shared,db,api,worker}/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Integration tests share one Redis and one MariaDB; files run one at a time
    // so timing-sensitive worker tests do not fight for the two cores.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
