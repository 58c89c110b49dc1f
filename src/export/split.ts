/**
 * Deterministic train/validation split by conversation: a conversation's examples all land in the
 * same file, so no conversation (and none of its earlier turns) is in both. The split depends only on
 * the conversation id, the seed and the fraction: re-exporting a grown log keeps every old
 * conversation where it was, and a higher fraction only moves conversations from train to val.
 */
import crypto from 'node:crypto';
import path from 'node:path';

/** Mixed into the conversation hash; change it to draw a different (still deterministic) split. */
export const SPLIT_SEED = 'mneme-split-v1';

export type Split = 'train' | 'val';

/**
 * Position of a conversation in [0, 1): the first 48 bits of sha256(seed NUL conversationId).
 * It is in the validation set when this is below `valFraction`.
 */
export function splitPoint(conversationId: string, seed = SPLIT_SEED): number {
  const d = crypto.createHash('sha256').update(seed).update('\u0000').update(conversationId).digest();
  return d.readUIntBE(0, 6) / 2 ** 48;
}

/** 'val' for about `valFraction` of conversations (0 ≤ valFraction ≤ 1), 'train' for the rest. */
export function splitOf(conversationId: string, valFraction: number, seed = SPLIT_SEED): Split {
  if (valFraction <= 0) return 'train';
  return splitPoint(conversationId, seed) < valFraction ? 'val' : 'train';
}

/**
 * Where the validation file goes: `.val` inserted before the last extension of `out`
 * (`sft.jsonl` → `sft.val.jsonl`, `data/out` → `data/out.val`, `.hidden` → `.hidden.val`).
 */
export function valPathFor(out: string): string {
  const dir = path.dirname(out);
  const base = path.basename(out);
  const ext = path.extname(base);
  const stem = ext ? base.slice(0, -ext.length) : base;
  return path.join(dir, `${stem}.val${ext}`);
}

/** The manifest sits beside the train file: `FILE.manifest.json`. */
export function manifestPathFor(out: string): string {
  return `${out}.manifest.json`;
}
