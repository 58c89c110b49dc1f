import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FTS_EXTENSION_FILE, loadFtsExtension, matchPhrases } from '../../../src/core/store/sqlite/fts-native.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { NewChunk } from '../../../src/core/store/corpus.ts';
import { tempDir } from '../../helpers/cli.ts';

// `npm ci` builds the extension (scripts/fts-native.mjs) wherever a C compiler exists; in CI it must have.
const built = fs.existsSync(FTS_EXTENSION_FILE);
if (process.env.CI === 'true' && !built) throw new Error(`CI: ${FTS_EXTENSION_FILE} was not built by npm ci's postinstall`);

describe('loadFtsExtension and matchPhrases', () => {
  it('says why a connection ranks with bm25()', () => {
    const db = new Database(':memory:');
    expect(loadFtsExtension(db, false)).toEqual({ loaded: false, reason: 'disabled' });
    expect(loadFtsExtension(db, true, '/nonexistent/mneme_fts.so')).toEqual({ loaded: false, reason: 'not built: /nonexistent/mneme_fts.so' });
    const junk = path.join(tempDir(), 'mneme_fts.so');
    fs.writeFileSync(junk, 'not a shared object');
    const bad = loadFtsExtension(db, true, junk);
    expect(bad.loaded).toBe(false);
    expect(bad.reason).toMatch(/mneme_fts\.so/);
    db.close();
  });

  it('lists the quoted phrases of a MATCH expression in FTS5’s order', () => {
    expect(matchPhrases('("b" AND ("c" OR "d e")) NOT ("a")')).toEqual(['b', 'c', 'd e', 'a']);
    expect(matchPhrases('"say ""hi"""')).toEqual(['say "hi"']);
    expect(matchPhrases('')).toEqual([]);
  });
});

describe.skipIf(!built)('mneme_bm25: bm25() with the frequencies given', () => {
  let db: Database.Database;
  const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];

  beforeAll(() => {
    db = new Database(':memory:');
    expect(loadFtsExtension(db, true)).toEqual({ loaded: true, reason: null });
    db.exec("CREATE VIRTUAL TABLE t USING fts5 (text, heading, title, tokenize = 'porter unicode61 remove_diacritics 2')");
    const insert = db.prepare('INSERT INTO t (text, heading, title) VALUES (?, ?, ?)');
    let s = 7;
    const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    // Skewed frequencies (alpha in most rows, theta in few) and rows of varied length.
    const word = () => words[Math.min(words.length - 1, Math.floor(-Math.log(1 - rand()) * 1.2))]!;
    const text = (n: number) => Array.from({ length: n }, word).join(' ');
    for (let i = 0; i < 3000; i++) insert.run(text(3 + Math.floor(rand() * 60)), i % 4 === 0 ? text(3) : '', i % 9 === 0 ? text(2) : 'page');
  });
  afterAll(() => db?.close());

  const count = (phrase: string) => (db.prepare('SELECT count(*) AS n FROM t WHERE t MATCH ?').get(`"${phrase}"`) as { n: number }).n;
  const bm25 = (match: string) => db.prepare('SELECT rowid AS id, bm25(t, 1.0, 0.5, 0.5) AS s FROM t WHERE t MATCH ? ORDER BY s, rowid').all(match);
  const native = (match: string, dfs: string | null) =>
    db.prepare('SELECT rowid AS id, mneme_bm25(t, 1.0, 0.5, 0.5, ?) AS s FROM t WHERE t MATCH ? ORDER BY s, rowid').all(dfs, match);

  it('gives bm25()’s scores to the bit for OR, AND, NOT, phrases and nesting, given the counts in phrase order', () => {
    const matches = [
      '"theta"',
      '"alpha" OR "theta"',
      '"beta" OR "gamma" OR "delta" OR "eta"',
      '"zeta" AND ("alpha" OR "beta")',
      '("gamma" AND ("delta" OR "theta")) NOT ("zeta")',
      '("eta" OR "theta") NOT ("epsilon" OR "zeta")',
      '"alpha beta" OR "gamma"',
      '"delta gamma" AND "alpha"',
    ];
    for (const m of matches) {
      const expected = bm25(m);
      expect(expected.length, m).toBeGreaterThan(0);
      expect(native(m, matchPhrases(m).map(count).join(',')), m).toEqual(expected);
      expect(native(m, null), `${m} (NULL: counted by the function)`).toEqual(expected);
    }
  });

  it('mneme_phrase_rows counts each phrase’s rows as bm25() does, in phrase order', () => {
    const rows = (match: string) => db.prepare('SELECT mneme_phrase_rows(t) AS n FROM t WHERE t MATCH ? LIMIT 1').pluck().get(match);
    for (const m of ['"theta" OR "alpha" OR "gamma delta"', '("zeta" AND "eta") NOT ("theta")']) {
      expect(rows(m), m).toBe(matchPhrases(m).map(count).join(','));
    }
    expect(rows('"nosuchword"')).toBeUndefined();
    expect(() => db.prepare('SELECT mneme_phrase_rows(t, 1) FROM t WHERE t MATCH ? LIMIT 1').get('"alpha"')).toThrow(/mneme_phrase_rows: takes only the table/);
  });

  it('scores with the frequencies it is given: a wrong order gives other scores', () => {
    const m = '"theta" OR "alpha"';
    const wrong = [count('alpha'), count('theta')].join(',');
    expect(native(m, wrong)).not.toEqual(bm25(m));
  });

  it('keeps row sizes under a name: same scores, and a size once read is kept (so rows must never be rewritten)', () => {
    const m = '"theta" OR "eta"';
    const dfs = matchPhrases(m).map(count).join(',');
    const cached = () => db.prepare("SELECT rowid AS id, mneme_bm25(t, 1.0, 0.5, 0.5, ?, 'sizes') AS s FROM t WHERE t MATCH ? ORDER BY s, rowid").all(dfs, m);
    expect(cached()).toEqual(bm25(m));
    expect(cached()).toEqual(bm25(m));
    // Rewrite one matching row with another length under the same rowid (mneme never does this).
    const [first] = bm25(m) as Array<{ id: number }>;
    db.prepare('DELETE FROM t WHERE rowid = ?').run(first!.id);
    db.prepare('INSERT INTO t (rowid, text, heading, title) VALUES (?, ?, ?, ?)').run(first!.id, `theta eta ${'alpha '.repeat(200)}`, '', '');
    const after = (native(m, dfs) as Array<{ id: number; s: number }>).find((r) => r.id === first!.id)!;
    const stale = (cached() as Array<{ id: number; s: number }>).find((r) => r.id === first!.id)!;
    expect(after.s).not.toBe(stale.s);
  });

  it('mneme_warm_sizes reads every row size at once: the cache then holds rows never scored', () => {
    db.exec("CREATE VIRTUAL TABLE w USING fts5 (a, b); INSERT INTO w (rowid, a, b) VALUES (1, 'x y z', 'x'), (2, 'x', ''), (5, 'y y', 'z z z')");
    expect(db.prepare("SELECT mneme_warm_sizes('w-sizes', 'w')").pluck().get()).toBe(3);
    const score = (named: boolean) =>
      db.prepare(`SELECT rowid AS id, mneme_bm25(w, 1.0, 1.0, NULL${named ? ", 'w-sizes'" : ''}) AS s FROM w WHERE w MATCH '"x" OR "z"' ORDER BY rowid`).all();
    const plain = db.prepare(`SELECT rowid AS id, bm25(w, 1.0, 1.0) AS s FROM w WHERE w MATCH '"x" OR "z"' ORDER BY rowid`).all();
    expect(score(true)).toEqual(plain);
    // Row 2 rewritten longer under the same rowid: the warmed size (1) is what the cache still says.
    db.exec("DELETE FROM w WHERE rowid = 2; INSERT INTO w (rowid, a, b) VALUES (2, 'x q q q q q q q', '')");
    const fresh = (score(false) as Array<{ id: number; s: number }>).find((r) => r.id === 2)!.s;
    const cached = (score(true) as Array<{ id: number; s: number }>).find((r) => r.id === 2)!.s;
    expect(cached).not.toBe(fresh);
    expect(() => db.prepare("SELECT mneme_warm_sizes('n', 'nosuchtable')").get()).toThrow(/no such table: nosuchtable_docsize/);
  });

  it('rejects frequencies that do not fit the MATCH, and a wrong argument count', () => {
    expect(() => native('"alpha" OR "beta"', '12')).toThrow(/mneme_bm25: the frequencies must be 2 non-negative integers/);
    expect(() => native('"alpha" OR "beta"', '12,x')).toThrow(/mneme_bm25: the frequencies must be 2/);
    expect(() => native('"alpha" OR "beta"', '12,-3')).toThrow(/mneme_bm25: the frequencies must be 2/);
    expect(() => native('"alpha" OR "beta"', '1,2,3')).toThrow(/mneme_bm25: the frequencies must be 2/);
    expect(() => db.prepare('SELECT mneme_bm25(t, 1.0, ?) FROM t WHERE t MATCH ?').all('1', '"alpha"')).toThrow(/mneme_bm25: expected 3 column weights/);
    expect(() => db.prepare("SELECT mneme_bm25(t, 1.0, 0.5, 0.5, NULL, 'a', 'b') FROM t WHERE t MATCH ?").all('"alpha"')).toThrow(/mneme_bm25: expected 3 column weights/);
  });
});

describe.skipIf(!built)('SQLite corpus store: the extension ranks exactly as bm25() does, before and after the corpus changes', () => {
  let fast: SqliteStore;
  let plain: SqliteStore;
  let s = 3;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const vocab = Array.from({ length: 600 }, (_, i) => `v${i.toString(36)}z`);
  const zipf = () => vocab[Math.min(vocab.length - 1, Math.floor(Math.exp(rand() * Math.log(vocab.length))) - 1)]!;
  const topics = Array.from({ length: 12 }, (_, c) => Array.from({ length: 6 }, (_, i) => `theme${c}w${i}`));
  const chunksOf = (topic: string[], n: number): NewChunk[] =>
    Array.from({ length: n }, (_, ord) => ({
      ord,
      text: Array.from({ length: 10 + Math.floor(rand() * 50) }, () => (rand() < 0.3 ? topic[Math.floor(rand() * topic.length)]! : zipf())).join(' '),
      headingPath: ord % 7 === 0 ? `${topic[0]} notes` : '',
      tokenCount: 10,
      contentSha256: `c${rand()}`,
    }));
  const add = async (store: SqliteStore, d: number, n: number) =>
    store.corpus.replaceDocument(
      { collection: d % 3 === 0 ? 'b' : 'a', sourceUri: `/doc${d}`, contentSha256: `d${d}-${n}`, title: `document ${d}`, kind: 'text/plain', bytes: 1 },
      chunksOf(topics[d % topics.length]!, n),
      null,
      null,
    );
  const queries = Array.from({ length: 40 }, (_, i) => {
    const topic = topics[i % topics.length]!;
    const pick = () => topic[Math.floor(rand() * topic.length)]!;
    return i % 6 === 0 ? `"${pick()} ${pick()}" ${vocab[i]} ${pick()}` : `${pick()} ${pick()} ${vocab[Math.floor(rand() * 40)]}`;
  });
  const scopes = [{}, { collection: 'a' }, { excludeCollections: ['b'] }];

  let file: string;

  beforeAll(async () => {
    file = path.join(tempDir(), 'mneme.sqlite');
    fast = openSqliteStore(file);
    plain = openSqliteStore(file, { ftsNative: false });
    expect(fast.connection.fts.loaded).toBe(true);
    expect(plain.connection.fts).toEqual({ loaded: false, reason: 'disabled' });
    for (let d = 0; d < 60; d++) await add(fast, d, 40);
    // Every search path on both: the pair cover from any size, splits from any size.
    for (const st of [fast, plain]) {
      st.corpus.bm25CoverMinRows = 0;
      st.corpus.bm25SplitMinRows = 0;
    }
  }, 120_000);
  afterAll(async () => {
    await fast?.close();
    await plain?.close();
  });

  async function expectSame(what: string) {
    for (const q of queries) {
      for (const scope of scopes) {
        const opts = { ...scope, limit: 10, documentLimit: 8 };
        expect(await fast.corpus.searchText(q, opts), `${what}: ${q} ${JSON.stringify(scope)}`).toEqual(await plain.corpus.searchText(q, opts));
        expect(await fast.corpus.lexicalCandidates(q, opts), `${what}: ${q}`).toEqual(await plain.corpus.lexicalCandidates(q, opts));
      }
    }
    expect(fast.corpus.bm25Paths.cover + fast.corpus.bm25Paths.coverPlain, 'the pair cover ran').toBeGreaterThan(0);
  }

  it('same chunks and scores for every query and scope', async () => {
    await expectSame('first');
  });

  it('the same after reading every row size at once (what a reader thread does at its start)', async () => {
    expect(fast.corpus.warmFullText()).toBe(60 * 40);
    expect(plain.corpus.warmFullText()).toBe(0);
    await expectSame('warmed');
  });

  it('counts the frequencies again after a write: new documents, then a deleted one', async () => {
    // The counts cached by the searches above are stale once these land; the scores must follow.
    for (let d = 60; d < 72; d++) await add(fast, d, 60);
    await expectSame('after adding documents');
    const doc = await fast.corpus.findDocument('a', '/doc1');
    await fast.corpus.deleteDocument(doc!.id);
    await expectSame('after deleting one');
  }, 60_000);

  it('the same on a connection opened after the delete, whose one-token counts come from its fresh fts5vocab reads', async () => {
    // Its frequency cache is empty: each term's count is read now, deleted rows and all, and reused
    // as mneme_bm25's phrase count instead of a second walk (searchTerms).
    // Against a fresh bm25() connection too: plans follow the frequencies read, and another plan
    // sums the same terms in another order (scores equal to the last bit or two, not to the bit).
    const opened = openSqliteStore(file);
    const openedPlain = openSqliteStore(file, { ftsNative: false });
    try {
      for (const st of [opened, openedPlain]) {
        st.corpus.bm25CoverMinRows = 0;
        st.corpus.bm25SplitMinRows = 0;
      }
      for (const q of queries) {
        for (const scope of scopes) {
          const opts = { ...scope, limit: 10, documentLimit: 8 };
          expect(await opened.corpus.lexicalCandidates(q, opts), `${q} ${JSON.stringify(scope)}`).toEqual(await openedPlain.corpus.lexicalCandidates(q, opts));
        }
      }
      const seeded = (opened.corpus as unknown as { exactDf: Map<string, number> }).exactDf;
      expect([...seeded.keys()].some((p) => !p.includes(' ')), 'one-token counts were kept').toBe(true);
    } finally {
      await opened.close();
      await openedPlain.close();
    }
  }, 60_000);
});
