/**
 * Which collection each chunk belongs to, in a compact array for the dense (HNSW) filter of a
 * scoped search (issue 14 item 4: access control; a requested `collection`).
 *
 * hnswlib calls the filter once per visited label (≈ 3 000 calls per query with a 10 % filter at
 * 100k vectors), so the per-label check must be O(1): `ordinals[chunkId]` is the chunk's collection
 * ordinal (1-based; 0 = no live chunk known under this id), and a request's scope becomes one
 * boolean per ordinal (`DenseScope.allowed`). Memory: 2 bytes per chunk id up to the largest id
 * (4 bytes once more than 65 535 collection names were seen), grown by doubling — about 2 MB at 1M
 * chunks, against a Set entry per chunk per collection before.
 *
 * Filled once from the store (every collection's live chunk ids) and then patched from the change
 * feed ('chunk+' / 'chunk-' carry the collection), like the HNSW index itself. Pure data structure:
 * the retriever does the I/O (src/chat/retrieve.ts).
 */

/** Initial length of the ordinal array (chunk ids); doubles as ids grow. */
export const ORDINALS_INITIAL_LENGTH = 1024;
/** Largest ordinal a Uint16Array holds; past it the array is widened to 32 bits. */
const UINT16_MAX = 0xffff;

/** A request's scope over the ordinals: which ordinals are admitted and how many live chunks that is. */
export interface DenseScope {
  /** allowed[ordinal] === 1 when the collection is admitted; allowed[0] (unknown chunk) is always 0. */
  allowed: Uint8Array;
  /** Live chunks in admitted collections (as the feed last said). */
  admitted: number;
}

export class CollectionOrdinals {
  private ords: Uint16Array | Uint32Array = new Uint16Array(ORDINALS_INITIAL_LENGTH);
  /** ordinal → name; [0] is the "unknown" slot. */
  private readonly names: string[] = [''];
  private readonly byName = new Map<string, number>();
  /** ordinal → live chunks. */
  private readonly counts: number[] = [0];
  /** True once every collection was loaded from the store (see `markLoaded`). */
  loaded = false;

  /** Bytes held by the ordinal array (for memory reports). */
  get bytes(): number {
    return this.ords.byteLength;
  }

  /** Forgets everything (feed gap, new index generation): the next scoped search loads again. */
  reset(): void {
    this.ords = new Uint16Array(ORDINALS_INITIAL_LENGTH);
    this.names.length = 1;
    this.counts.length = 1;
    this.byName.clear();
    this.loaded = false;
  }

  /** Marks the store load complete. */
  markLoaded(): void {
    this.loaded = true;
  }

  /** Records that live chunk `chunkId` belongs to `collection` (idempotent). */
  add(chunkId: number, collection: string): void {
    if (!Number.isInteger(chunkId) || chunkId < 0) return;
    const ord = this.ordinalFor(collection);
    this.grow(chunkId);
    const prev = this.ords[chunkId]!;
    if (prev === ord) return;
    if (prev !== 0) this.counts[prev]!--;
    this.ords[chunkId] = ord;
    this.counts[ord]!++;
  }

  /** Records that chunk `chunkId` left `collection` (deleted); a no-op when it is not recorded there. */
  remove(chunkId: number, collection: string): void {
    const ord = this.byName.get(collection);
    if (ord === undefined || chunkId < 0 || chunkId >= this.ords.length || this.ords[chunkId] !== ord) return;
    this.ords[chunkId] = 0;
    this.counts[ord]!--;
  }

  /** The collection of `chunkId` as recorded, null when unknown. */
  collectionOf(chunkId: number): string | null {
    const ord = chunkId >= 0 && chunkId < this.ords.length ? this.ords[chunkId]! : 0;
    return ord === 0 ? null : this.names[ord]!;
  }

  /**
   * The scope admitting `only` (when given) minus `hidden` (pure over the current state). Unknown
   * names admit nothing / hide nothing.
   */
  scope(only: string | null, hidden: readonly string[]): DenseScope {
    const allowed = new Uint8Array(this.names.length);
    if (only === null) allowed.fill(1);
    else {
      const o = this.byName.get(only);
      if (o !== undefined) allowed[o] = 1;
    }
    allowed[0] = 0;
    for (const h of hidden) {
      const o = this.byName.get(h);
      if (o !== undefined) allowed[o] = 0;
    }
    let admitted = 0;
    for (let o = 1; o < allowed.length; o++) if (allowed[o] === 1) admitted += this.counts[o]!;
    return { allowed, admitted };
  }

  /** The O(1) HNSW label filter of `scope`: a label is admitted iff its chunk's collection is. */
  filter(scope: DenseScope): (label: number) => boolean {
    const { allowed } = scope;
    const ords = this.ords;
    const n = ords.length;
    // Captures the current array: a widening or growth during the search (none: searches are
    // synchronous) could not be seen anyway.
    return (label) => label < n && allowed[ords[label]!] === 1;
  }

  /** Every chunk id admitted by `scope`, ascending (one pass over the array: O(largest chunk id)). */
  labels(scope: DenseScope): number[] {
    const { allowed } = scope;
    const ords = this.ords;
    const out: number[] = [];
    for (let i = 0; i < ords.length; i++) if (allowed[ords[i]!] === 1) out.push(i);
    return out;
  }

  private ordinalFor(collection: string): number {
    let ord = this.byName.get(collection);
    if (ord !== undefined) return ord;
    ord = this.names.length;
    this.names.push(collection);
    this.counts.push(0);
    this.byName.set(collection, ord);
    if (ord > UINT16_MAX && this.ords instanceof Uint16Array) this.ords = Uint32Array.from(this.ords);
    return ord;
  }

  private grow(chunkId: number): void {
    if (chunkId < this.ords.length) return;
    let len = this.ords.length;
    while (len <= chunkId) len *= 2;
    const next = this.ords instanceof Uint16Array ? new Uint16Array(len) : new Uint32Array(len);
    next.set(this.ords);
    this.ords = next;
  }
}

/**
 * Exact top-`k` by cosine of `query` over `vectors` (pure), best first; score = cosine similarity
 * (as the HNSW index reports), ties by label. Used instead of a filtered graph search when the
 * admitted set is small.
 */
export function exactTopK(query: Float32Array, vectors: ReadonlyMap<number, Float32Array>, k: number): Array<{ label: number; score: number }> {
  let qn = 0;
  for (let i = 0; i < query.length; i++) qn += query[i]! * query[i]!;
  qn = Math.sqrt(qn) || 1;
  const all: Array<{ label: number; score: number }> = [];
  for (const [label, v] of vectors) {
    if (v.length !== query.length) continue;
    let dot = 0;
    let vn = 0;
    for (let i = 0; i < v.length; i++) {
      dot += query[i]! * v[i]!;
      vn += v[i]! * v[i]!;
    }
    all.push({ label, score: dot / (qn * (Math.sqrt(vn) || 1)) });
  }
  all.sort((a, b) => b.score - a.score || a.label - b.label);
  return all.length > k ? all.slice(0, k) : all;
}
