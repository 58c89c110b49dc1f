import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SPLIT_SEED, manifestPathFor, splitOf, splitPoint, valPathFor } from '../../../src/export/split.ts';

const ids = Array.from({ length: 4000 }, (_, i) => `conv_${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`);

describe('splitOf', () => {
  it('is deterministic and depends only on the id, fraction and seed', () => {
    const a = ids.map((id) => splitOf(id, 0.2));
    const b = [...ids].reverse().map((id) => splitOf(id, 0.2)).reverse();
    expect(b).toEqual(a);
    expect(ids.map((id) => splitOf(id, 0.2, SPLIT_SEED))).toEqual(a);
    expect(ids.map((id) => splitOf(id, 0.2, 'other-seed'))).not.toEqual(a);
  });

  it('sends about the requested fraction to val', () => {
    for (const f of [0.05, 0.2, 0.5]) {
      const val = ids.filter((id) => splitOf(id, f) === 'val').length / ids.length;
      expect(Math.abs(val - f)).toBeLessThan(0.03);
    }
  });

  it('is monotone in the fraction: raising it only moves conversations from train to val', () => {
    for (const id of ids) if (splitOf(id, 0.1) === 'val') expect(splitOf(id, 0.3)).toBe('val');
  });

  it('puts everything in train at fraction 0', () => {
    expect(ids.every((id) => splitOf(id, 0) === 'train')).toBe(true);
    expect(splitPoint(ids[0] as string)).toBeGreaterThanOrEqual(0);
    expect(splitPoint(ids[0] as string)).toBeLessThan(1);
  });
});

describe('file naming', () => {
  it('inserts .val before the last extension', () => {
    expect(valPathFor('/x/sft.jsonl')).toBe('/x/sft.val.jsonl');
    expect(valPathFor('/x/data.tar.gz')).toBe('/x/data.tar.val.gz');
    expect(valPathFor('/x/out')).toBe('/x/out.val');
    expect(valPathFor('sft.jsonl')).toBe('sft.val.jsonl');
    expect(valPathFor(path.join('/x', '.hidden'))).toBe('/x/.hidden.val');
    expect(manifestPathFor('/x/sft.jsonl')).toBe('/x/sft.jsonl.manifest.json');
  });
});
