import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { corpusVersion, migrate, openDb } from '../../../src/core/db.ts';
import { tempDir } from '../../helpers/cli.ts';

describe('openDb', () => {
  it('creates the schema in WAL mode, once', () => {
    const file = path.join(tempDir(), 'x', 'mneme.sqlite');
    const db = openDb(file);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(migrate(db)).toEqual([]);
    db.close();
    const again = openDb(file);
    expect(again.prepare('SELECT count(*) AS n FROM schema_migrations').get()).toMatchObject({ n: expect.any(Number) });
    again.close();
  });

  it('bumps the corpus version on chunk changes and keeps FTS in step', () => {
    const db = openDb(path.join(tempDir(), 'mneme.sqlite'));
    const v0 = corpusVersion(db);
    db.prepare("INSERT INTO documents (id, collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES (1, 'c', '/a', 'h', 'Title words', 'text/plain', 1, 't', 't')").run();
    db.prepare("INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (1, 0, 'the wombat burrow', '', 3, 'x')").run();
    expect(corpusVersion(db)).toBeGreaterThan(v0);
    const hit = (q: string) => (db.prepare('SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH ?').get(q) as { n: number }).n;
    expect(hit('wombat')).toBe(1);
    expect(hit('title')).toBe(1);
    db.prepare('DELETE FROM documents WHERE id = 1').run();
    expect(hit('wombat')).toBe(0);
    expect(db.prepare('SELECT count(*) AS n FROM chunks').get()).toEqual({ n: 0 });
    db.close();
  });
});
