import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ftsTerms, MAX_FTS_TERMS, toFtsQuery } from '../../../src/core/store/sqlite/fts-query.ts';
import { nowIso } from '../../../src/core/clock.ts';
import { SqliteConnection } from '../../../src/core/store/sqlite/connection.ts';

const NASTY = [
  '',
  '   ',
  '"',
  '""',
  '"unbalanced quote',
  'a "quoted phrase" here',
  '(kestrelctl OR replay',
  ')))(((',
  'NEAR(kestrelctl replay, 3)',
  'NEAR',
  'AND OR NOT',
  'kestrel*',
  '*',
  '-E-417',
  '- -- ---',
  'text: replay',
  'title:kestrelctl',
  '{text heading_path}: replay',
  '^replay',
  'col:umn "x" + y - z',
  "O'Brien's café — naïve résumé",
  '東京タワー 日本',
  '🙂🙃 emoji only',
  '\u0000\u0001 control',
  'e.g. halcyon.conf /etc/kestrel/gateway.toml',
  'x'.repeat(10_000),
  Array.from({ length: 500 }, (_, i) => `w${i}`).join(' '),
];

describe('toFtsQuery', () => {
  it('quotes terms and joins them with OR', () => {
    expect(toFtsQuery('kestrelctl replay')).toBe('"kestrelctl" OR "replay"');
  });

  it('keeps joined compounds as one quoted phrase', () => {
    expect(toFtsQuery('What does E-417 mean?')).toBe('"e-417" OR "mean"');
    expect(toFtsQuery('halcyon.conf OSR-KESTREL-04')).toBe('"halcyon.conf" OR "osr-kestrel-04"');
  });

  it('drops stopwords, possessives and duplicates', () => {
    expect(toFtsQuery("What is the Halcyon's flow limit? the flow LIMIT")).toBe('"halcyon" OR "flow" OR "limit"');
  });

  it('falls back to the stopwords when the text is nothing else', () => {
    expect(toFtsQuery('to be or not to be')).toBe('"to" OR "be" OR "or" OR "not"');
  });

  it('neutralizes FTS5 syntax', () => {
    expect(toFtsQuery('NEAR(kestrelctl replay, 3)')).toBe('"near" OR "kestrelctl" OR "replay" OR "3"');
    expect(toFtsQuery('kestrel* -E-417 ^x title:y')).toBe('"kestrel" OR "e-417" OR "x" OR "title:y"');
    expect(toFtsQuery('AND OR NOT')).toBe('"and" OR "or" OR "not"');
  });

  it('returns null when nothing is searchable', () => {
    for (const t of ['', '   ', '"', '*', ')))(((', '- -- ---', '🙂🙃', '?!']) expect(toFtsQuery(t)).toBeNull();
  });

  it('keeps unicode letters', () => {
    expect(toFtsQuery('naïve résumé')).toBe('"naïve" OR "résumé"');
    expect(toFtsQuery('東京タワー')).toBe('"東京タワー"');
  });

  it('bounds the number of terms', () => {
    expect(ftsTerms(Array.from({ length: 100 }, (_, i) => `w${i}`).join(' '))).toHaveLength(MAX_FTS_TERMS);
  });

  it('never throws, whatever the input type at runtime', () => {
    for (const t of NASTY) expect(() => toFtsQuery(t)).not.toThrow();
    expect(toFtsQuery(undefined as unknown as string)).toBeNull();
  });
});

describe('toFtsQuery against the real FTS5 table', () => {
  let dir: string;
  let conn: SqliteConnection;
  let db: SqliteConnection['db'];

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
    conn = new SqliteConnection(path.join(dir, 'mneme.sqlite'));
    db = conn.db;
    const doc = db
      .prepare("INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES ('c', '/x', 'h', 'kestrelctl reference', 'text/plain', 1, ?, ?)")
      .run(nowIso(), nowIso()).lastInsertRowid;
    const add = db.prepare("INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (?, ?, ?, '', 1, 'h')");
    add.run(doc, 0, 'Error E-417 means low flow. Replay the spool with kestrelctl replay.');
    add.run(doc, 1, "O'Brien's café serves a naïve résumé near the harbour.");
  });

  afterAll(() => {
    conn.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every produced expression is valid FTS5 syntax', () => {
    const stmt = db.prepare('SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank');
    for (const t of NASTY) {
      const q = toFtsQuery(t);
      if (q !== null) expect(() => stmt.all(q), `input ${JSON.stringify(t.slice(0, 40))}`).not.toThrow();
    }
  });

  it('matches compounds as phrases and accents loosely', () => {
    const stmt = db.prepare('SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank').pluck();
    expect(stmt.all(toFtsQuery('E-417?'))).toEqual([1]);
    expect(stmt.all(toFtsQuery('417-E'))).toEqual([]);
    expect(stmt.all(toFtsQuery('cafe resume'))).toEqual([2]);
    // Both chunks carry the title "kestrelctl reference"; the one that also says it in its text ranks first.
    expect(stmt.all(toFtsQuery('kestrelctl'))).toEqual([1, 2]);
  });
});
