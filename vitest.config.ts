import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests spawn real processes and load real (tiny) models: generous but bounded.
    testTimeout: 180_000,
    // afterAll hooks drop dozens of scratch PostgreSQL databases; on a loaded 2-core machine that takes minutes.
    hookTimeout: 300_000,
    pool: 'forks',
    // 2 cores: more workers only thrash.
    maxWorkers: 2,
  },
});
