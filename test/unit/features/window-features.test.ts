import { describe, expect, it } from 'vitest';
import { DAY_MS, PRECOMPUTED_FEATURES, emptyState } from '../../../src/features/definitions.ts';

const compute = (name: string) => PRECOMPUTED_FEATURES.find((d) => d.name === name)!.compute;

describe('messages_7d and active_days_30d (binary searches over the recent times)', () => {
  it('equal a plain filter over the times on random histories, boundaries included', () => {
    let seed = 3;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let trial = 0; trial < 300; trial++) {
      const end = Date.UTC(2026, 10, 1) + Math.floor(rand() * DAY_MS);
      const n = Math.floor(rand() * 60);
      // Times within the 30 days before `end`, some exactly on a window edge or a day boundary.
      const times = Array.from({ length: n }, () => {
        const r = rand();
        if (r < 0.1) return end - 7 * DAY_MS + (rand() < 0.5 ? 0 : 1);
        if (r < 0.2) return Math.floor((end - rand() * 29 * DAY_MS) / DAY_MS) * DAY_MS - (rand() < 0.5 ? 0 : 1);
        return end - Math.floor(rand() * 30 * DAY_MS);
      }).sort((a, b) => a - b);
      const state = { ...emptyState(), responsesEventTime: new Date(end).toISOString(), recentMs: times };
      const within = (days: number) => times.filter((t) => t > end - days * DAY_MS);
      expect(compute('messages_7d')(state)).toBe(within(7).length);
      expect(compute('active_days_30d')(state)).toBe(new Set(within(30).map((t) => Math.floor(t / DAY_MS))).size);
    }
  });
});
