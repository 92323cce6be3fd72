import { defineConfig } from 'vitest/config';

// The cluster suite (make test-cluster): one file at a time against the one cluster scripts/test-cluster.sh
// started; its steps wait for pods, rollouts and helm, so the bounds are minutes, not seconds.
export default defineConfig({
  test: {
    include: ['e2e/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
