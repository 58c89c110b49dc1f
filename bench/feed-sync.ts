/**
 * What a running server pays to follow the corpus: the change feed (IndexSyncer) vs the full
 * reconcile it replaced, at several corpus sizes. For each size N: N chunks with 384-d vectors are
 * written through the engine's schema (triggers fill FTS5 and the feed), then a batch of `--changes`
 * new chunks (+ vectors) and deletions lands, and we time
 *   - store side of the feed: reading the new feed rows + fetching the new vectors (µs/change),
 *   - the whole syncer apply into an HNSW index holding the corpus (when --hnsw-up-to ≥ N),
 *   - a full reconcile's scan (every embedded chunk id + the diff), the old per-sync cost.
 *
 *   node --import tsx bench/feed-sync.ts [--sizes 100000,1000000] [--changes 10000] [--hnsw-up-to 100000]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { nowIso } from '../src/core/clock.ts';
import { IndexSyncer } from '../src/core/index-sync.ts';
import { vectorToBlob } from '../src/core/store/sqlite/codec.ts';
import { openSqliteStore } from '../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../src/core/store/sqlite/index.ts';
import { HnswVectorIndex } from '../src/core/vector-index.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100000,1000000' },
    changes: { type: 'string', default: '10000' },
    'hnsw-up-to': { type: 'string', default: '100000' },
  },
});
const SIZES = values.sizes!.split(',').map(Number);
const CHANGES = Number(values.changes);
const HNSW_UP_TO = Number(values['hnsw-up-to']);
const DIM = 384;
const MODEL = 'bench-model';
const CHUNKS_PER_DOC = 10;
const log = (m: string) => process.stderr.write(`[feed-sync] ${m}\n`);

let seed = 7;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
function randomUnit(): Float32Array {
  const v = new Float32Array(DIM);
  for (let i = 0; i < DIM; i++) v[i] = rand() - 0.5;
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** Writes `count` chunks (with vectors) in transactions of 5,000; returns their ids. */
function seedChunks(store: SqliteStore, count: number, tag: string): number[] {
  const db = store.connection.db;
  const doc = db.prepare("INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES ('bench', ?, ?, 'bench', 'text/plain', 0, ?, ?)");
  const chunk = db.prepare('INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (?, ?, ?, ?, 5, ?)');
  const vec = db.prepare('INSERT INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)');
  const ids: number[] = [];
  for (let start = 0; start < count; start += 5000) {
    db.transaction(() => {
      let docId = 0;
      for (let i = start; i < Math.min(count, start + 5000); i++) {
        if (i % CHUNKS_PER_DOC === 0) docId = Number(doc.run(`/${tag}/${i}`, `${tag}${i}`, nowIso(), nowIso()).lastInsertRowid);
        const id = Number(chunk.run(docId, i % CHUNKS_PER_DOC, `word${i % 5000} term${i % 313} ${tag}`, '', `${tag}${i}`).lastInsertRowid);
        vec.run(id, MODEL, vectorToBlob(randomUnit()));
        ids.push(id);
      }
    }).immediate();
  }
  return ids;
}

async function measure(n: number): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-feed-'));
  const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
  try {
    let t0 = performance.now();
    const ids = seedChunks(store, n, 'base');
    log(`${n}: seeded in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    const meta = await store.corpus.createGeneration({ modelId: MODEL, dimension: DIM, pooling: 'mean', normalized: true, maxTokens: 256, hnswM: 16, hnswEfConstruction: 200, hnswEfSearch: 64 }, 'active');
    let hnsw: HnswVectorIndex | null = null;
    if (n <= HNSW_UP_TO) {
      t0 = performance.now();
      hnsw = HnswVectorIndex.create({ dimension: DIM, initialCapacity: n + CHANGES * 2 });
      for (let p = 0; p < ids.length; p += 4096) for (const [id, v] of await store.corpus.embeddingsPage(MODEL, p === 0 ? 0 : ids[p - 1]!, 4096)) hnsw.upsert(id, v);
      log(`${n}: hnsw built in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
    const { head } = await store.corpus.feedBounds();

    // The changes: CHANGES new chunks with vectors, and the deletion of CHANGES/10 old documents.
    seedChunks(store, CHANGES, 'new');
    const db = store.connection.db;
    db.prepare('DELETE FROM chunks WHERE document_id IN (SELECT id FROM documents ORDER BY id LIMIT ?)').run(CHANGES / CHUNKS_PER_DOC / 10);
    const after = await store.corpus.feedBounds();
    const changes = after.head - head;

    // Store side of the feed: read rows + fetch vectors of the vector+ rows.
    t0 = performance.now();
    let pos = head;
    for (;;) {
      const rows = await store.corpus.changesSince(pos, 512);
      if (rows.length === 0) break;
      await store.corpus.vectorsOf(MODEL, rows.filter((r) => r.op === 'vector+').map((r) => r.chunkId));
      pos = rows.at(-1)!.seq;
    }
    const storeUs = ((performance.now() - t0) * 1000) / changes;

    let applyUs: number | null = null;
    if (hnsw) {
      const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: head });
      t0 = performance.now();
      await syncer.catchUp();
      applyUs = ((performance.now() - t0) * 1000) / changes;
    }

    // The old per-sync cost: every embedded chunk id, and the diff against the index's labels.
    t0 = performance.now();
    const expected = await store.corpus.embeddedChunkIds(MODEL);
    let missing = 0;
    for (const id of expected) if (hnsw ? !hnsw.has(id) : false) missing++;
    const reconcileScanMs = performance.now() - t0;
    return {
      chunks: n,
      changes,
      feed_store_us_per_change: Math.round(storeUs * 10) / 10,
      feed_apply_us_per_change: applyUs === null ? null : Math.round(applyUs * 10) / 10,
      full_reconcile_scan_ms: Math.round(reconcileScanMs),
      missing_after_apply: hnsw ? missing : null,
    };
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
for (const n of SIZES) rows.push(await measure(n));
console.log(JSON.stringify({ bench: 'feed-sync', dim: DIM, rows, cores: os.availableParallelism(), loadavg_1m: Math.round(os.loadavg()[0]! * 100) / 100 }));
