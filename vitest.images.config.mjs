import { defineConfig } from 'vitest/config';

const conditions = ['@coffer/source', 'node', 'import', 'default'];
const ssrConditions = conditions.filter((condition) => condition !== 'import');

// The images suite: a private Docker engine builds the api and worker images and runs them
// against this machine's Redis and MariaDB. Run with `pnpm test:images`; its file name does
// not end in .test.ts, so the main `pnpm test` leaves it alone.
export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions: ssrConditions, externalConditions: ssrConditions } },
  test: {
    include: ['test/images/**/*.docker-test.ts'],
    fileParallelism: false,
    // A cold run installs the engine, makes the stand-in base image and builds both images.
    testTimeout: 900_000,
    hookTimeout: 300_000,
  },
});
