import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IngestSummary as Summary } from '../../ingest/pipeline.ts';
import { cliEnv, FIXTURE_DOCS, runCli, runCliAsync, tempDir, TINY_BERT } from '../helpers/cli.ts';


function copyCorpus(): string {
  const dir = tempDir('mneme-corpus-');
  fs.cpSync(FIXTURE_DOCS, dir, { recursive: true });
  return dir;
}

function ftsHits(dataDir: string, term: string): number {
  const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH ?').get(`"${term}"`) as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('mneme ingest (real CLI, tiny model)', () => {
  let corpus: string;
  let dataDir: string;
  let first: Summary;

  beforeAll(() => {
    corpus = copyCorpus();
    dataDir = tempDir();
    const r = runCli(['ingest', corpus, '--data-dir', dataDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    first = r.json as Summary;
  });

  it('adds every fixture document, embeds every chunk, and doctor agrees', () => {
    expect(first.documents_seen).toBe(5);
    expect(first.documents_added).toBe(5);
    expect(first.documents_failed).toBe(0);
    expect(first.chunks_added).toBeGreaterThan(5);
    expect(first.chunks_embedded).toBe(first.chunks_added);
    const doctor = runCli(['doctor', '--data-dir', dataDir, '--json']);
    expect(doctor.code, doctor.stdout).toBe(0);
    const report = doctor.json as { ok: boolean; counts: Record<string, number> };
    expect(report.ok).toBe(true);
    expect(report.counts.chunks).toBe(first.chunks_added);
    expect(report.counts.index_vectors).toBe(first.chunks_added);
  });

  it('the JSON summary is the last stdout line and has every contract field', () => {
    for (const k of ['documents_seen', 'documents_added', 'documents_updated', 'documents_unchanged', 'documents_deleted',
      'documents_failed', 'chunks_added', 'chunks_deleted', 'chunks_embedded', 'seconds']) {
      expect(first, k).toHaveProperty(k);
    }
  });

  it('re-ingesting unchanged files embeds nothing and changes nothing', () => {
    const r = runCli(['ingest', corpus, '--data-dir', dataDir, '--json']);
    expect(r.code).toBe(0);
    const s = r.json as Summary;
    expect(s.documents_unchanged).toBe(5);
    expect(s.chunks_added + s.chunks_deleted + s.chunks_embedded).toBe(0);
  });

  it('replaces the chunks of a changed file, reusing vectors of unchanged chunks, with no ghosts', () => {
    const file = path.join(corpus, 'tidewater-ferry-timetable.txt');
    const before = fs.readFileSync(file, 'utf8');
    expect(ftsHits(dataDir, 'Marrowby')).toBeGreaterThan(0);
    fs.writeFileSync(file, `${before.replace(/marrowby/gi, 'Quenwick')}\n\nA new paragraph about the zephyrine night crossing.\n`);
    const r = runCli(['ingest', corpus, '--data-dir', dataDir, '--json']);
    const s = r.json as Summary;
    expect(s.documents_updated).toBe(1);
    expect(s.documents_unchanged).toBe(4);
    expect(s.chunks_deleted).toBeGreaterThan(0);
    expect(s.chunks_embedded).toBeLessThanOrEqual(s.chunks_added);
    expect(ftsHits(dataDir, 'Marrowby')).toBe(0);
    expect(ftsHits(dataDir, 'zephyrine')).toBe(1);
    expect(runCli(['doctor', '--data-dir', dataDir]).code).toBe(0);
  });

  it('keeps a deleted file without --prune and removes it with --prune', () => {
    fs.rmSync(path.join(corpus, 'kestrelctl-reference.md'));
    const keep = runCli(['ingest', corpus, '--data-dir', dataDir, '--json']).json as Summary;
    expect(keep.documents_deleted).toBe(0);
    expect(ftsHits(dataDir, 'kestrelctl')).toBeGreaterThan(0);
    const pruned = runCli(['ingest', corpus, '--prune', '--data-dir', dataDir, '--json']).json as Summary;
    expect(pruned.documents_deleted).toBe(1);
    expect(pruned.chunks_deleted).toBeGreaterThan(0);
    expect(ftsHits(dataDir, 'kestrelctl')).toBe(0);
    const doctor = runCli(['doctor', '--data-dir', dataDir, '--json']);
    expect(doctor.code, doctor.stdout).toBe(0);
    expect((doctor.json as { counts: Record<string, number> }).counts.documents).toBe(4);
  });

  it('prune is scoped to the collection and the paths given', () => {
    const other = tempDir('mneme-other-');
    fs.writeFileSync(path.join(other, 'note.md'), '# Note\n\nThe quokka census happens every spring.\n');
    const a = runCli(['ingest', other, '--collection', 'notes', '--data-dir', dataDir, '--json']).json as Summary;
    expect(a.documents_added).toBe(1);
    // Pruning the main corpus must not touch the other root nor the other collection.
    const p = runCli(['ingest', corpus, '--prune', '--data-dir', dataDir, '--json']).json as Summary;
    expect(p.documents_deleted).toBe(0);
    expect(ftsHits(dataDir, 'quokka')).toBe(1);
  });
});

describe('bad input never stops the run', () => {
  it('lists binary, empty, undecodable, too-large, dangling and unsupported files with reasons and ingests the rest', () => {
    const dir = tempDir('mneme-bad-');
    fs.writeFileSync(path.join(dir, 'good.md'), '# Good\n\nThe pangolin migration report is here.\n');
    fs.writeFileSync(path.join(dir, 'binary.txt'), Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x14, 0x00]));
    fs.writeFileSync(path.join(dir, 'empty.md'), '');
    fs.writeFileSync(path.join(dir, 'blank.txt'), '   \n\n\t\n');
    fs.writeFileSync(path.join(dir, 'latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff, 0xfe]));
    fs.writeFileSync(path.join(dir, 'big.txt'), 'x'.repeat(5000));
    fs.writeFileSync(path.join(dir, 'broken.pdf'), 'this is not a pdf at all');
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"text": "unterminated');
    fs.symlinkSync(path.join(dir, 'does-not-exist.md'), path.join(dir, 'dangling.md'));
    fs.writeFileSync(path.join(dir, 'image.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    const dataDir = tempDir();
    const r = runCli(
      ['ingest', dir, path.join(dir, 'image.png'), '--data-dir', dataDir, '--json'],
      cliEnv({ MNEME_MAX_FILE_BYTES: '4096' }),
    );
    expect(r.code, r.stderr).toBe(0);
    const s = r.json as Summary;
    const reasons = Object.fromEntries(s.failed.map((f) => [path.basename(f.path), f.reason]));
    expect(reasons).toEqual({
      'binary.txt': 'binary',
      'empty.md': 'empty',
      'blank.txt': 'empty',
      'latin1.txt': 'undecodable',
      'big.txt': 'too_large',
      'broken.pdf': 'parse_error',
      'bad.json': 'parse_error',
      'dangling.md': 'unreadable',
      'image.png': 'unsupported',
    });
    for (const f of s.failed) expect(f.message.length).toBeGreaterThan(3);
    expect(s.documents_added).toBe(1);
    expect(s.documents_failed).toBe(9);
    expect(r.stderr).toContain('failed:');
    expect(runCli(['doctor', '--data-dir', dataDir]).code).toBe(0);
    // A root path that does not exist is a usage error (exit 2), not a failed document.
    const missing = runCli(['ingest', dir, path.join(dir, 'nope', 'missing.md'), '--data-dir', dataDir, '--json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing.md');
  });

  it('handles symlink loops, links outside the roots, and a data dir inside the corpus without hanging', () => {
    const root = tempDir('mneme-links-');
    const outside = tempDir('mneme-outside-');
    fs.writeFileSync(path.join(outside, 'secret.md'), '# Secret\n\nOutside the roots: the okapi files.\n');
    fs.mkdirSync(path.join(root, 'sub'));
    fs.writeFileSync(path.join(root, 'sub', 'inside.md'), '# Inside\n\nThe axolotl handbook.\n');
    fs.symlinkSync(root, path.join(root, 'sub', 'loop'));
    fs.symlinkSync(path.join(outside, 'secret.md'), path.join(root, 'escape.md'));
    fs.symlinkSync(outside, path.join(root, 'escape-dir'));
    const dataDir = path.join(root, 'data');
    // First run creates the data dir inside the corpus; the second must not ingest it.
    const r1 = runCli(['ingest', root, '--data-dir', dataDir, '--json']);
    expect(r1.code, r1.stderr).toBe(0);
    const r2 = runCli(['ingest', root, '--data-dir', dataDir, '--json']);
    const s = r2.json as Summary;
    expect(s.documents_unchanged).toBe(1);
    expect(s.documents_failed).toBe(0);
    const reasons = s.skipped.map((k) => k.reason).sort();
    expect(reasons).toContain('outside_roots');
    expect(reasons).toContain('symlink_loop');
    expect(reasons).toContain('data_dir');
    expect(ftsHits(dataDir, 'okapi')).toBe(0);
    expect(ftsHits(dataDir, 'axolotl')).toBe(1);
  });
});

describe('embedding model availability', () => {
  it('without a model ingests BM25-only with a warning; a later run with the model embeds what is missing', () => {
    const dataDir = tempDir();
    const none = runCli(['ingest', FIXTURE_DOCS, '--data-dir', dataDir, '--json'], cliEnv({ MNEME_EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2' }));
    expect(none.code, none.stderr).toBe(0);
    expect(none.stderr).toMatch(/warning: no embedding model.*BM25 only/s);
    const s1 = none.json as Summary;
    expect(s1.chunks_added).toBeGreaterThan(0);
    expect(s1.chunks_embedded).toBe(0);
    const d1 = runCli(['doctor', '--data-dir', dataDir]);
    expect(d1.code).toBe(0);
    expect(d1.stdout).toContain('BM25 only');
    const later = runCli(['ingest', FIXTURE_DOCS, '--data-dir', dataDir, '--json']);
    const s2 = later.json as Summary;
    expect(s2.documents_unchanged).toBe(5);
    expect(s2.chunks_embedded).toBe(s1.chunks_added);
    const d2 = runCli(['doctor', '--data-dir', dataDir, '--json']);
    expect(d2.code, d2.stdout).toBe(0);
    expect((d2.json as { counts: Record<string, number> }).counts.index_vectors).toBe(s1.chunks_added);
  });

  it('refuses to mix a different model into an index, and reindex --model switches beside the old one', () => {
    const dataDir = tempDir();
    expect(runCli(['ingest', FIXTURE_DOCS, '--data-dir', dataDir]).code).toBe(0);
    const otherModel = path.join(tempDir('mneme-model-'), 'other-bert');
    fs.cpSync(TINY_BERT, otherModel, { recursive: true });
    const mixed = runCli(['ingest', FIXTURE_DOCS, '--data-dir', dataDir], cliEnv({ MNEME_EMBED_MODEL: otherModel }));
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toContain('reindex --model');
    const re = runCli(['reindex', '--model', otherModel, '--data-dir', dataDir, '--json']);
    expect(re.code, re.stderr).toBe(0);
    expect((re.json as { generation: number }).generation).toBe(2);
    const after = runCli(['ingest', FIXTURE_DOCS, '--data-dir', dataDir, '--json'], cliEnv({ MNEME_EMBED_MODEL: otherModel }));
    expect(after.code, after.stderr).toBe(0);
    expect((after.json as Summary).chunks_embedded).toBe(0);
    const doctor = runCli(['doctor', '--data-dir', dataDir, '--json'], cliEnv({ MNEME_EMBED_MODEL: otherModel }));
    expect(doctor.code, doctor.stdout).toBe(0);
    expect((doctor.json as { counts: Record<string, number> }).counts.generation).toBe(2);
  });

  it('reindex rebuilds a deleted or corrupt index file from SQLite without re-embedding', () => {
    const dataDir = tempDir();
    expect(runCli(['ingest', FIXTURE_DOCS, '--data-dir', dataDir]).code).toBe(0);
    // The sharded layout: a manifest naming one file per shard; corrupt the first shard.
    const manifest = JSON.parse(fs.readFileSync(path.join(dataDir, 'index', 'hnsw-g1.bin.shards.json'), 'utf8')) as { shards: Array<{ file: string }> };
    fs.writeFileSync(path.join(dataDir, 'index', manifest.shards[0]!.file), Buffer.alloc(10, 7));
    const bad = runCli(['doctor', '--data-dir', dataDir]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('PROBLEM');
    const re = runCli(['reindex', '--data-dir', dataDir, '--json']);
    expect(re.code, re.stderr).toBe(0);
    expect((re.json as { embedded: number }).embedded).toBe(0);
    expect(runCli(['doctor', '--data-dir', dataDir]).code).toBe(0);
  });
});

describe('concurrency', () => {
  it('a second ingest on the same data dir exits with a clear message; --wait waits its turn', async () => {
    const corpus = tempDir('mneme-many-');
    for (let i = 0; i < 150; i++) {
      fs.writeFileSync(path.join(corpus, `doc-${i}.md`), `# Doc ${i}\n\n${`Paragraph ${i} about topic ${i % 7}. `.repeat(80)}\n`);
    }
    const dataDir = tempDir();
    const a = runCliAsync(['ingest', corpus, '--data-dir', dataDir, '--json']);
    // Wait until the first process holds the lock.
    const lock = path.join(dataDir, 'ingest.lock');
    for (let i = 0; i < 200 && !fs.existsSync(lock); i++) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(lock)).toBe(true);
    const b = await runCliAsync(['ingest', corpus, '--data-dir', dataDir, '--json']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/another mneme ingest \(pid \d+/);
    const c = runCliAsync(['ingest', corpus, '--wait', '--data-dir', dataDir, '--json']);
    const [ra, rc] = await Promise.all([a, c]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rc.code, rc.stderr).toBe(0);
    expect((ra.json as Summary).documents_added).toBe(150);
    expect((rc.json as Summary).documents_unchanged).toBe(150);
  });
});
