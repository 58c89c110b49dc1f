import { describe, expect, it } from 'vitest';
import {
  Deduper,
  Hash64Set,
  NEAR_DUP_MAX_HAMMING,
  NearDuplicateIndex,
  hamming64,
  normalizeText,
  normalizedHash64,
  popcount32,
  simhash64,
} from '../../../src/export/dedupe.ts';

const QUESTION = 'How do I reset the Halcyon X3 controller after a firmware update fails?';
const ANSWER =
  'To reset the Halcyon X3 controller, hold the recessed reset button for ten seconds while the unit is powered, wait for the status lamp to blink amber three times, then release it and reconnect the console cable. If the firmware update failed midway, the controller boots into recovery mode and you can flash the previous image with kestrelctl flash --recovery.';

/** Deterministic pseudo-random text (xorshift), so the tests do not depend on Math.random. */
function randomWords(seed: number, n: number): string {
  let x = seed * 2654435761 + 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.push(`w${(x >>> 0) % 5000}`);
  }
  return out.join(' ');
}

describe('normalizeText / normalizedHash64', () => {
  it('normalizes case, whitespace and Unicode compatibility forms', () => {
    expect(normalizeText('  Hello\t\tWORLD \n')).toBe('hello world');
    expect(normalizeText('ｆｕｌｌ\u00a0width')).toBe('full width');
  });

  it('hashes exactly the normalized text, without building it', () => {
    const samples = ['  Hello\t\tWORLD \n', 'ｆｕｌｌ\u00a0width', ANSWER, 'Ünïcödé  Straße\u2003x', '', '   '];
    for (const s of samples) expect(normalizedHash64([s])).toEqual(normalizedHash64([normalizeText(s)]));
    expect(normalizedHash64(['Hello   World'])).toEqual(normalizedHash64(['hello world']));
    expect(normalizedHash64(['hello world'])).not.toEqual(normalizedHash64(['hello  worlds']));
    // Parts are separated: moving text across the boundary changes the hash.
    expect(normalizedHash64(['ab', 'c'])).not.toEqual(normalizedHash64(['a', 'bc']));
  });

  it('spreads 50k distinct strings without collisions', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50_000; i++) seen.add(normalizedHash64([`example ${i}`, QUESTION]).join(':'));
    expect(seen.size).toBe(50_000);
  });
});

describe('Hash64Set', () => {
  it('adds, detects repeats, grows, and handles the (0, 0) value', () => {
    const set = new Hash64Set(16);
    for (let i = 0; i < 10_000; i++) expect(set.add(i * 7919, i)).toBe(true);
    for (let i = 0; i < 10_000; i++) expect(set.add(i * 7919, i)).toBe(false);
    expect(set.size).toBe(10_000);
    // i = 0 stored (0, 0), kept as (0, 1) since (0, 0) marks an empty slot: adding it again is a repeat.
    expect(set.add(0, 0)).toBe(false);
    expect(set.add(1, 0)).toBe(true);
    // ≤ 0.7 load: at most ~23 bytes per entry right after doubling.
    expect(set.bytes / set.size).toBeLessThan(24);
  });
});

describe('simhash64 / NearDuplicateIndex', () => {
  it('puts light edits within the threshold and different texts far apart', () => {
    const [h, l] = simhash64([QUESTION, ANSWER]);
    const near = [
      simhash64([QUESTION.toUpperCase(), ANSWER]),
      simhash64([`${QUESTION}!!`, ANSWER.replace(/,/g, ' ,')]),
      simhash64([QUESTION, ANSWER.replace('ten seconds', 'twelve seconds')]),
    ];
    for (const [nh, nl] of near) expect(hamming64(h, l, nh, nl)).toBeLessThanOrEqual(NEAR_DUP_MAX_HAMMING);
    const far = [
      simhash64(['What does error E-417 mean on the OrbiSync dashboard?', ANSWER]),
      simhash64([QUESTION, 'The controller cannot be reset by the user; contact support with the serial number.']),
      simhash64([randomWords(1, 15), randomWords(2, 60)]),
    ];
    for (const [fh, fl] of far) expect(hamming64(h, l, fh, fl)).toBeGreaterThan(NEAR_DUP_MAX_HAMMING + 4);
  });

  it('weights parts equally: the same answer to a different question is not a near-duplicate', () => {
    const [a, b] = simhash64(['short question one', ANSWER]);
    const [c, d] = simhash64(['entirely other topic', ANSWER]);
    expect(hamming64(a, b, c, d)).toBeGreaterThan(NEAR_DUP_MAX_HAMMING);
  });

  it('finds every stored hash within the threshold (LSH pigeonhole) and none far away', () => {
    const index = new NearDuplicateIndex();
    const stored: Array<[number, number]> = [];
    for (let i = 0; i < 2000; i++) {
      const v = simhash64([randomWords(i, 30)]);
      stored.push(v);
      index.add(v[0], v[1]);
    }
    // Flip up to NEAR_DUP_MAX_HAMMING bits spread over different bands: always found.
    for (const [i, flips] of [
      [3, [0]],
      [100, [5, 40]],
      [777, [1, 17, 33]],
      [1999, [15, 31, 63]],
    ] as Array<[number, number[]]>) {
      let [hi, lo] = stored[i] as [number, number];
      for (const b of flips) {
        if (b < 32) lo = (lo ^ (1 << b)) >>> 0;
        else hi = (hi ^ (1 << (b - 32))) >>> 0;
      }
      expect(index.has(hi, lo)).toBe(true);
    }
    // Fresh random texts are not near anything stored.
    let falsePositives = 0;
    for (let i = 5000; i < 6000; i++) {
      const [hi, lo] = simhash64([randomWords(i, 30)]);
      if (index.has(hi, lo)) falsePositives++;
    }
    expect(falsePositives).toBe(0);
  });

  it('popcount32 counts bits', () => {
    expect(popcount32(0)).toBe(0);
    expect(popcount32(0xffffffff)).toBe(32);
    expect(popcount32(0b1011)).toBe(3);
  });
});

describe('Deduper', () => {
  it('keeps the first occurrence, then reports exact and near duplicates', () => {
    const d = new Deduper();
    const ctxA = `Sources: [1] manual\n${QUESTION}`;
    expect(d.check({ exact: [ctxA, ANSWER], near: [QUESTION, ANSWER] })).toBe('unique');
    // Same text modulo case and whitespace.
    expect(d.check({ exact: [`${ctxA.toUpperCase()}\n`, ` ${ANSWER}  `], near: [QUESTION, ANSWER] })).toBe('exact');
    // Different retrieved context, same question and answer: near.
    expect(d.check({ exact: [`Sources: [1] other chunk\n${QUESTION}`, ANSWER], near: [QUESTION.toLowerCase(), ANSWER] })).toBe('near');
    expect(d.check({ exact: ['another'], near: ['What does E-417 mean?', 'Coolant pressure dropped.'] })).toBe('unique');
  });

  it('uses tens of bytes per example (bounded memory)', () => {
    const d = new Deduper();
    const n = 100_000;
    for (let i = 0; i < n; i++) d.check({ exact: [`e${i}`], near: [`question ${i}`, `answer number ${i} ${i * 31}`] });
    // Fixed 1 MiB of band heads plus ≤ ~60 bytes per example.
    expect(d.bytes).toBeLessThan(1024 * 1024 + 60 * n);
  });
});
