/**
 * KeyUseRecorder (src/chat/http/auth.ts): a key's last use is written at most once per interval,
 * uses of several keys noted in one tick go in one write, the request never waits for the write, and
 * a failing store is logged, never thrown.
 */
import { describe, expect, it } from 'vitest';
import { KeyUseRecorder } from '../../../src/chat/http/auth.ts';

type Use = { keyId: number; at: string };

function fakeStore(fail = false) {
  const writes: Use[][] = [];
  return {
    writes,
    users: {
      recordKeyUse: async (uses: ReadonlyArray<Use>) => {
        if (fail) throw new Error('database is gone');
        writes.push([...uses]);
      },
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('KeyUseRecorder', () => {
  it('writes a key at most once per interval, batching the keys noted in one tick', async () => {
    let now = Date.parse('2025-06-01T12:00:00.000Z');
    const store = fakeStore();
    const rec = new KeyUseRecorder(store as never, { intervalMs: 60_000, now: () => now });
    rec.used(1);
    rec.used(2);
    rec.used(1);
    expect(store.writes).toEqual([]); // never written on the request's own path
    await tick();
    await rec.flush();
    expect(store.writes).toEqual([[{ keyId: 1, at: '2025-06-01T12:00:00.000Z' }, { keyId: 2, at: '2025-06-01T12:00:00.000Z' }]]);

    now += 59_999;
    rec.used(1);
    rec.used(2);
    await tick();
    await rec.flush();
    expect(store.writes).toHaveLength(1);

    now += 1;
    rec.used(1);
    await tick();
    await rec.flush();
    expect(store.writes[1]).toEqual([{ keyId: 1, at: '2025-06-01T12:01:00.000Z' }]);
  });

  it('a failing store is logged and dropped; the next interval writes again', async () => {
    let now = 0;
    const warnings: string[] = [];
    const store = fakeStore(true);
    const rec = new KeyUseRecorder(store as never, { intervalMs: 1000, now: () => now, logger: { info: () => {}, warn: (m) => warnings.push(m), error: () => {} } });
    rec.used(7);
    await tick();
    await rec.flush();
    expect(warnings).toEqual(['recording API key use failed']);
    now = 1000;
    rec.used(7);
    await tick();
    await rec.flush();
    expect(warnings).toHaveLength(2);
  });
});
