/**
 * Duplicate removal for training exports, in bounded memory (no example text is kept).
 *
 * - Exact: a 64-bit hash (sha1 prefix) of the normalized text (NFKC, lower case, whitespace runs
 *   collapsed, trimmed) in an open-addressing table of typed arrays: 8 bytes per distinct example at
 *   ≤ 0.7 load, so 11-23 bytes per example (the table doubles).
 * - Near: a 64-bit SimHash over word unigrams and bigrams; two examples are near-duplicates when their
 *   SimHashes differ in at most NEAR_DUP_MAX_HAMMING bits. Candidates come from LSH: the 64 bits are cut
 *   into NEAR_DUP_MAX_HAMMING + 1 bands, so (pigeonhole) any pair within the threshold agrees exactly on
 *   at least one band. Per kept example: 8 bytes of SimHash + 4 bytes per band of chain link = 24 bytes
 *   (up to 36 with the 1.5× array growth slack), plus a fixed 1 MiB of band heads. A bucket's chain is
 *   searched newest-first for at most NEAR_DUP_MAX_CANDIDATES entries, which bounds the time per
 *   example; a near-duplicate further back in a huge bucket may be missed (never a false removal).
 *
 * So ≈ 35-60 bytes per exported example in total (measured: 40 MB for 982k examples).
 * The first occurrence (lowest log id) is kept; later ones are dropped.
 *
 * What counts as a near-duplicate is decided by the caller's `near` parts (for chat examples: the
 * user's question and the target, not the retrieved context). SimHash reliably catches the same
 * question and answer up to case, punctuation and whitespace under different retrieved context, and
 * usually a word or two edited in a paragraph; paraphrases are not near-duplicates.
 */
import crypto from 'node:crypto';

/** Most differing SimHash bits for two texts to count as near-duplicates (of 64). */
export const NEAR_DUP_MAX_HAMMING = 3;
/** LSH bands = NEAR_DUP_MAX_HAMMING + 1, each 16 bits wide. */
export const NEAR_DUP_BANDS = NEAR_DUP_MAX_HAMMING + 1;
const BAND_BITS = 64 / NEAR_DUP_BANDS;
const BAND_BUCKETS = 2 ** BAND_BITS;
/** Most candidates compared per band per lookup. */
export const NEAR_DUP_MAX_CANDIDATES = 64;
/** Largest load of the exact-hash table before it doubles. */
const EXACT_MAX_LOAD = 0.7;

const NON_ASCII_RE = /[^\x00-\x7f]/;

/** NFKC (skipped for pure ASCII, where it is the identity), lower case, collapsed whitespace, trimmed. */
export function normalizeText(s: string): string {
  const n = NON_ASCII_RE.test(s) ? s.normalize('NFKC') : s;
  return n.toLowerCase().replace(/\s+/g, ' ').trim();
}

function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The characters JavaScript's `\s` matches. */
function isSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  return c >= 0xa0 && (c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff);
}

/** ASCII-only strings skip NFKC + Unicode lower-casing (the SimHash pass lower-cases ASCII itself). */
function prepare(s: string): string {
  return NON_ASCII_RE.test(s) ? s.normalize('NFKC').toLowerCase() : s;
}

// Whitespace other than a lone space, and runs of whitespace: what normalizeText rewrites to " ".
const WS_TO_COLLAPSE_RE = /[\t\n\v\f\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]\s*| \s+/g;

/** normalizeText without rewriting single spaces (most of them): same result, fewer replacements. */
function normalizeFast(s: string): string {
  const n = NON_ASCII_RE.test(s) ? s.normalize('NFKC') : s;
  return n.toLowerCase().replace(WS_TO_COLLAPSE_RE, ' ').trim();
}

/**
 * 64-bit hash (two uint32 halves) of the normalized `parts` (each as `normalizeText` would give it),
 * separated so that ["ab", "c"] and ["a", "bc"] differ: the first 8 bytes of a sha1, native and
 * streamed part by part without joining. A collision needs ~2^32 distinct examples (birthday bound).
 */
export function normalizedHash64(parts: readonly string[]): [number, number] {
  const h = crypto.createHash('sha1');
  for (const p of parts) h.update(normalizeFast(p)).update('\u0000');
  const d = h.digest();
  return [d.readUInt32BE(0), d.readUInt32BE(4)];
}

export function popcount32(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

export function hamming64(aHi: number, aLo: number, bHi: number, bLo: number): number {
  return popcount32((aHi ^ bHi) >>> 0) + popcount32((aLo ^ bLo) >>> 0);
}

/** Word characters: ASCII letters and digits, and (for speed) any non-space non-ASCII character. */
function isWordChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 0x80 && !isSpace(c) && !(c >= 0x2010 && c <= 0x206f));
}

/**
 * 64-bit SimHash of normalized `parts` over word unigrams and bigrams. Each part carries the same total
 * weight whatever its length, so a long answer cannot drown a different question (and vice versa).
 */
export function simhash64(parts: readonly string[]): [number, number] {
  const acc = new Float64Array(64);
  const counts = new Int32Array(64);
  for (let p = 0; p < parts.length; p++) {
    const t = prepare(parts[p] ?? '');
    counts.fill(0);
    let features = 0;
    let prevHi = 0;
    let prevLo = 0;
    let words = 0;
    // The part index is in the seed so the same words in the question and the answer differ.
    let hi = 0x9747b28c + p;
    let lo = 0x811c9dc5 + p;
    let inWord = false;
    for (let i = 0; i <= t.length; i++) {
      let c = i < t.length ? t.charCodeAt(i) : 32;
      if (isWordChar(c)) {
        if (c >= 65 && c <= 90) c += 32;
        hi = Math.imul(hi ^ c, 0x5bd1e995);
        lo = Math.imul(lo ^ c, 0x01000193);
        inWord = true;
        continue;
      }
      if (!inWord) continue;
      inWord = false;
      const wh = fmix32(hi >>> 0);
      const wl = fmix32(lo >>> 0);
      addFeature(counts, wh, wl);
      features++;
      if (words > 0) {
        addFeature(counts, fmix32((prevHi ^ Math.imul(wh, 0x9e3779b1)) >>> 0), fmix32((prevLo ^ Math.imul(wl, 0x85ebca77)) >>> 0));
        features++;
      }
      words++;
      prevHi = wh;
      prevLo = wl;
      hi = 0x9747b28c + p;
      lo = 0x811c9dc5 + p;
    }
    if (features === 0) continue;
    // (ones - zeros) / features: each part's vote lies in [-1, 1] whatever its length.
    for (let b = 0; b < 64; b++) acc[b] = (acc[b] as number) + (2 * (counts[b] as number) - features) / features;
  }
  let hi = 0;
  let lo = 0;
  for (let b = 0; b < 32; b++) {
    if ((acc[b] as number) > 0) lo |= 1 << b;
    if ((acc[32 + b] as number) > 0) hi |= 1 << b;
  }
  return [hi >>> 0, lo >>> 0];
}

/** Counts the one bits of a feature hash per position (the sign is taken against features / 2). */
function addFeature(ones: Int32Array, hi: number, lo: number): void {
  for (let b = 0; b < 32; b++) {
    ones[b] = (ones[b] as number) + ((lo >>> b) & 1);
    ones[32 + b] = (ones[32 + b] as number) + ((hi >>> b) & 1);
  }
}

/** A set of 64-bit values (two uint32 halves) in open addressing over one Uint32Array. */
export class Hash64Set {
  private slots: Uint32Array;
  private mask: number;
  private count = 0;

  constructor(initialCapacity = 1 << 14) {
    const cap = 2 ** Math.ceil(Math.log2(Math.max(16, initialCapacity)));
    this.slots = new Uint32Array(cap * 2);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.slots.byteLength;
  }

  /** Adds the value; returns false when it was already present. */
  add(hi: number, lo: number): boolean {
    // (0, 0) marks an empty slot, so that one value is stored as (0, 1): a 2^-64 collision.
    const h = hi >>> 0;
    const l = h === 0 && lo >>> 0 === 0 ? 1 : lo >>> 0;
    let i = (l ^ Math.imul(h, 0x9e3779b1)) & this.mask;
    for (;;) {
      const sh = this.slots[i * 2] as number;
      const sl = this.slots[i * 2 + 1] as number;
      if (sh === 0 && sl === 0) break;
      if (sh === h && sl === l) return false;
      i = (i + 1) & this.mask;
    }
    this.slots[i * 2] = h;
    this.slots[i * 2 + 1] = l;
    this.count++;
    if (this.count > (this.mask + 1) * EXACT_MAX_LOAD) this.grow();
    return true;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    this.mask = old.length - 1;
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) {
      const h = old[i] as number;
      const l = old[i + 1] as number;
      if (h !== 0 || l !== 0) this.add(h, l);
    }
  }
}

/** SimHash LSH index (see the module comment for its memory and search bounds). */
export class NearDuplicateIndex {
  private readonly heads = new Int32Array(NEAR_DUP_BANDS * BAND_BUCKETS).fill(-1);
  private his = new Uint32Array(1024);
  private los = new Uint32Array(1024);
  private next = new Int32Array(1024 * NEAR_DUP_BANDS);
  private count = 0;

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.heads.byteLength + this.his.byteLength + this.los.byteLength + this.next.byteLength;
  }

  private static band(hi: number, lo: number, b: number): number {
    // 4 bands of 16 bits: lo low, lo high, hi low, hi high.
    const word = b < 2 ? lo : hi;
    return (b % 2 === 0 ? word : word >>> 16) & 0xffff;
  }

  /** True when a stored SimHash is within NEAR_DUP_MAX_HAMMING bits of (hi, lo). */
  has(hi: number, lo: number): boolean {
    for (let b = 0; b < NEAR_DUP_BANDS; b++) {
      let idx = this.heads[b * BAND_BUCKETS + NearDuplicateIndex.band(hi, lo, b)] as number;
      for (let seen = 0; idx >= 0 && seen < NEAR_DUP_MAX_CANDIDATES; seen++) {
        if (hamming64(hi, lo, this.his[idx] as number, this.los[idx] as number) <= NEAR_DUP_MAX_HAMMING) return true;
        idx = this.next[idx * NEAR_DUP_BANDS + b] as number;
      }
    }
    return false;
  }

  add(hi: number, lo: number): void {
    if (this.count === this.his.length) this.grow();
    const id = this.count++;
    this.his[id] = hi >>> 0;
    this.los[id] = lo >>> 0;
    for (let b = 0; b < NEAR_DUP_BANDS; b++) {
      const head = b * BAND_BUCKETS + NearDuplicateIndex.band(hi, lo, b);
      this.next[id * NEAR_DUP_BANDS + b] = this.heads[head] as number;
      this.heads[head] = id;
    }
  }

  private grow(): void {
    const cap = Math.ceil(this.his.length * 1.5);
    const his = new Uint32Array(cap);
    his.set(this.his);
    const los = new Uint32Array(cap);
    los.set(this.los);
    const next = new Int32Array(cap * NEAR_DUP_BANDS);
    next.set(this.next);
    this.his = his;
    this.los = los;
    this.next = next;
  }
}

export type DedupeVerdict = 'unique' | 'exact' | 'near';

export interface DedupeTexts {
  /** Everything that makes the example what it is; equal after normalization = exact duplicate. */
  exact: readonly string[];
  /** The parts that make two examples near-duplicates, each weighted equally (e.g. question, answer). */
  near: readonly string[];
}

/** Exact then near-duplicate check; the first occurrence is kept (and remembered). */
export class Deduper {
  private readonly exact = new Hash64Set();
  private readonly near = new NearDuplicateIndex();

  check(texts: DedupeTexts): DedupeVerdict {
    const [eh, el] = normalizedHash64(texts.exact);
    if (!this.exact.add(eh, el)) return 'exact';
    const [sh, sl] = simhash64(texts.near);
    if (this.near.has(sh, sl)) return 'near';
    this.near.add(sh, sl);
    return 'unique';
  }

  /** Bytes held by the two indexes (typed arrays only). */
  get bytes(): number {
    return this.exact.bytes + this.near.bytes;
  }
}
