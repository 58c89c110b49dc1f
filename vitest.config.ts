import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests spawn real processes and load real (tiny) models: generous but bounded.
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // 2 cores: more workers only thrash.
    maxWorkers: 2,
  },
});
