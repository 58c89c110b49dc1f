import { describe, expect, it } from 'vitest';
import { RateLimitError } from '../../../src/core/errors.ts';
import { TokenBucketLimiter } from '../../../src/chat/rate-limit.ts';

describe('TokenBucketLimiter', () => {
  it('allows a burst of perMinute, then refuses with the seconds until the next token', () => {
    let now = 0;
    const l = new TokenBucketLimiter({ perMinute: 6, now: () => now });
    for (let i = 0; i < 6; i++) expect(l.take('k').ok).toBe(true);
    const refused = l.take('k');
    // 6/min = one token every 10 s.
    expect(refused).toEqual({ ok: false, retryAfterSeconds: 10 });
    now = 4_000;
    expect(l.take('k')).toEqual({ ok: false, retryAfterSeconds: 6 });
    now = 10_000;
    expect(l.take('k').ok).toBe(true);
    expect(l.take('k').ok).toBe(false);
  });

  it('keeps keys independent and never refills above the burst', () => {
    let now = 0;
    const l = new TokenBucketLimiter({ perMinute: 2, now: () => now });
    expect(l.take('a').ok).toBe(true);
    expect(l.take('a').ok).toBe(true);
    expect(l.take('a').ok).toBe(false);
    expect(l.take('b').ok).toBe(true);
    now = 3_600_000;
    expect(l.take('a').ok).toBe(true);
    expect(l.take('a').ok).toBe(true);
    expect(l.take('a').ok).toBe(false);
  });

  it('perMinute 0 is off; consume throws RateLimitError carrying Retry-After', () => {
    const off = new TokenBucketLimiter({ perMinute: 0 });
    for (let i = 0; i < 1000; i++) off.consume('k');
    expect(off.size()).toBe(0);
    const l = new TokenBucketLimiter({ perMinute: 1, now: () => 0 });
    l.consume('k');
    try {
      l.consume('k');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RateLimitError);
      expect((err as RateLimitError).retryAfterSeconds).toBe(60);
      expect((err as RateLimitError).status).toBe(429);
    }
    expect(() => new TokenBucketLimiter({ perMinute: -1 })).toThrow(RangeError);
  });
});
