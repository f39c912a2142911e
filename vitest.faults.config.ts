import { defineConfig } from 'vitest/config';

const conditions = ['@coffer/source', 'node', 'import', 'default'];

// The fault-injection suite: real processes, private Redis and MariaDB that the
// tests stop, kill and restart. Run with `pnpm test:faults` (after a build).
export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    include: ['faults/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 60_000,
  },
});
