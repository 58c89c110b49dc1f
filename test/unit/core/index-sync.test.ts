import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FEED_BUSY_REST_MS, IndexSyncer } from '../../../src/core/index-sync.ts';
import type { NewChunk } from '../../../src/core/store/corpus.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { HnswVectorIndex } from '../../../src/core/vector-index.ts';
import { tempDir } from '../../helpers/cli.ts';

const DIM = 8;
const vec = (salt: number) => {
  const v = Float32Array.from({ length: DIM }, (_, i) => Math.sin(salt * 1.7 + i));
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const chunks = (n: number, salt: number): NewChunk[] =>
  Array.from({ length: n }, (_, ord) => ({ ord, text: `chunk ${salt} ${ord}`, headingPath: '', tokenCount: 3, contentSha256: `h${salt}-${ord}`, vector: vec(salt * 1000 + ord) }));

async function setup(): Promise<{ store: SqliteStore; hnsw: HnswVectorIndex; meta: Awaited<ReturnType<SqliteStore['corpus']['createGeneration']>> }> {
  const store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
  const meta = await store.corpus.createGeneration({ modelId: 'm', dimension: DIM, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 100, hnswEfSearch: 64 }, 'active');
  return { store, hnsw: HnswVectorIndex.create({ dimension: DIM }), meta };
}

const addDoc = (store: SqliteStore, name: string, n: number, salt: number, collection = 'c') =>
  store.corpus.replaceDocument({ collection, sourceUri: `/${name}`, contentSha256: name, title: name, kind: 'text/plain', bytes: 1 }, chunks(n, salt), null, 'm');

describe('IndexSyncer', () => {
  it('applies only the changes after its position, reports lag, and patches collection listeners', async () => {
    const { store, hnsw, meta } = await setup();
    const a = await addDoc(store, 'a', 5, 1);
    const events: string[] = [];
    const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: 0, onChunkChange: (op, id, c) => events.push(`${op}:${id}:${c}`) });
    await syncer.catchUp();
    expect(hnsw.size()).toBe(5);
    const pos = syncer.appliedSeq;
    const b = await addDoc(store, 'b', 3, 2, 'other');
    await syncer.poke(); // a running server: poke reads the head and applies
    expect(hnsw.size()).toBe(8);
    for (const [id] of b.vectorsAdded) expect(hnsw.has(id)).toBe(true);
    expect(events.filter((e) => e.startsWith('added') && e.endsWith(':other'))).toHaveLength(3);
    await store.corpus.deleteDocument(a.documentId);
    // Not applied yet: lag is known only after a look at the feed, which catchUp does.
    await syncer.catchUp();
    expect(syncer.lag()).toBe(0);
    expect(hnsw.size()).toBe(3);
    expect(syncer.appliedSeq).toBeGreaterThan(pos);
    for (const [id] of a.vectorsAdded) expect(events).toContain(`removed:${id}:c`);
    await store.close();
  });

  it('yields to the event loop between slices while applying a large backlog', async () => {
    const { store, hnsw, meta } = await setup();
    for (let d = 0; d < 20; d++) await addDoc(store, `d${d}`, 50, d);
    const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: 0, sliceMs: 1 });
    let turns = 0;
    let stop = false;
    const spin = () => {
      if (stop) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    await syncer.poke();
    stop = true;
    expect(hnsw.size()).toBe(1000);
    // A blocking apply would let the spinner run once or twice at most.
    expect(turns).toBeGreaterThan(5);
    await store.close();
  });

  it('rests FEED_BUSY_REST_MS after each slice while requests are in flight (busy), and not when idle', async () => {
    const { store, hnsw, meta } = await setup();
    for (let d = 0; d < 10; d++) await addDoc(store, `d${d}`, 50, d);
    let busyCalls = 0;
    const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: 0, sliceMs: 1, busy: () => (busyCalls++, true) });
    const t0 = performance.now();
    await syncer.poke();
    const elapsed = performance.now() - t0;
    expect(hnsw.size()).toBe(500);
    expect(busyCalls).toBeGreaterThan(3);
    // Every slice was followed by a rest: the work took at most about half of the wall time.
    expect(elapsed).toBeGreaterThanOrEqual(busyCalls * FEED_BUSY_REST_MS * 0.8);
    await store.close();
  });

  it('falls back to one full reconcile when the feed was truncated past its position, logged once', async () => {
    const { store, hnsw, meta } = await setup();
    const a = await addDoc(store, 'a', 4, 1);
    const warnings: string[] = [];
    const logger = { info: () => {}, warn: (m: string) => warnings.push(m) };
    let resets = 0;
    const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: 0, logger, onReset: () => resets++ });
    await addDoc(store, 'b', 2, 2);
    await store.corpus.deleteDocument(a.documentId);
    hnsw.upsert(999_999, vec(9)); // a stale label only a full reconcile can find
    await store.corpus.truncateFeed((await store.corpus.feedBounds()).head - 1);
    await syncer.poke();
    expect(syncer.fullReconcileCount).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(resets).toBe(1);
    expect(hnsw.has(999_999)).toBe(false);
    expect(hnsw.size()).toBe(2);
    // Later changes apply incrementally again: no second full reconcile, no second warning.
    await addDoc(store, 'c', 3, 3);
    await syncer.poke();
    await syncer.poke();
    expect(hnsw.size()).toBe(5);
    expect(syncer.fullReconcileCount).toBe(1);
    expect(warnings).toHaveLength(1);
    await store.close();
  });

  it('lets go of its index when another generation becomes active', async () => {
    const { store, hnsw, meta } = await setup();
    await addDoc(store, 'a', 2, 1);
    let changed = 0;
    const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: 0, onGenerationChange: () => changed++ });
    await syncer.catchUp();
    const next = await store.corpus.createGeneration({ ...{ modelId: 'n', dimension: DIM, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 100, hnswEfSearch: 64 } }, 'building');
    await store.corpus.activateGeneration(next.generation);
    await syncer.catchUp();
    expect(changed).toBe(1);
    // The old model's vectors were deleted, but this (detached) index was not emptied by it.
    expect(hnsw.size()).toBe(2);
    await store.close();
  });
});
