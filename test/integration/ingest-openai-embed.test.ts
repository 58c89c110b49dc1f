import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngestSummary } from '../../ingest/pipeline.ts';
import { cliEnv, FIXTURE_DOCS, runCliAsync, tempDir } from '../helpers/cli.ts';
import type { StubEmbedServer } from '../helpers/embed-server.ts';
import { startStubEmbedServer } from '../helpers/embed-server.ts';

/** The CLI runs in a child process: the stub server in this process must keep answering (async runs only). */
describe('mneme ingest with MNEME_EMBED_MODEL=openai: (real CLI, real HTTP embedding server)', () => {
  let server: StubEmbedServer;
  let dataDir: string;
  let corpus: string;
  let env: Record<string, string>;
  let first: IngestSummary;

  beforeAll(async () => {
    server = await startStubEmbedServer({ dim: 24 });
    corpus = tempDir('mneme-corpus-');
    fs.cpSync(FIXTURE_DOCS, corpus, { recursive: true });
    dataDir = tempDir();
    env = cliEnv({ MNEME_EMBED_MODEL: `openai:${server.url}`, MNEME_EMBED_MODEL_NAME: 'stub-embed', MNEME_EMBED_BATCH_ITEMS: '4', MNEME_EMBED_CONCURRENCY: '2' });
    const r = await runCliAsync(['ingest', corpus, '--data-dir', dataDir, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    first = r.json as IngestSummary;
  }, 120_000);

  afterAll(async () => {
    await server.close();
  });

  it('embeds every chunk through the server and stores the vectors', () => {
    expect(first.documents_added).toBe(5);
    expect(first.chunks_embedded).toBe(first.chunks_added);
    expect(first.embedding_model).toBe(`openai:${server.url}/v1#stub-embed`);
    expect(server.models.every((m) => m === 'stub-embed')).toBe(true);
    expect(Math.max(...server.batchSizes)).toBeLessThanOrEqual(4);
    expect(server.maxInFlight).toBeLessThanOrEqual(2);
    const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
    try {
      const rows = db.prepare('SELECT model_id AS model, length(vector) AS bytes, count(*) AS n FROM embeddings GROUP BY 1, 2').all();
      expect(rows).toEqual([{ model: `openai:${server.url}/v1#stub-embed`, bytes: 24 * 4, n: first.chunks_added }]);
    } finally {
      db.close();
    }
  });

  it('mneme doctor passes (it probes the server) and models shows it as remote', async () => {
    const doctor = await runCliAsync(['doctor', '--data-dir', dataDir, '--json'], env);
    expect(doctor.code, doctor.stdout).toBe(0);
    const report = doctor.json as { ok: boolean; counts: Record<string, number> };
    expect(report.counts.index_vectors).toBe(first.chunks_added);
    const models = await runCliAsync(['models', '--data-dir', dataDir, '--json'], env);
    expect(models.code, models.stdout).toBe(0);
    const embedding = (models.json as { models: { role: string; backend: string; present: boolean | null }[] }).models.find((m) => m.role === 'embedding');
    expect(embedding).toMatchObject({ backend: 'openai', present: null });
  });

  it('a server now answering another dimension is refused by the index generation check', async () => {
    server.dim = 32;
    fs.writeFileSync(path.join(corpus, 'new-note.md'), '# New note\n\nA fresh paragraph about the heron lighthouse keepers.\n');
    const r = await runCliAsync(['ingest', corpus, '--data-dir', dataDir, '--json'], env);
    server.dim = 24;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/24-d.*32-d/s);
    const doctor = await runCliAsync(['doctor', '--data-dir', dataDir, '--json'], env);
    expect(doctor.code, doctor.stdout).toBe(0);
  });

  it('doctor reports a problem when the server is gone', async () => {
    const down = cliEnv({ ...env, MNEME_EMBED_MODEL: 'openai:http://127.0.0.1:1', MNEME_EMBED_RETRIES: '0' });
    const doctor = await runCliAsync(['doctor', '--data-dir', dataDir], down);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(/PROBLEM: cannot reach embedding server http:\/\/127\.0\.0\.1:1\/v1\/embeddings/);
  });

  it('reindex --model openai:URL#NAME re-embeds through the server and switches the index', async () => {
    const model = `openai:${server.url}/v1#other-model`;
    server.dim = 8;
    const r = await runCliAsync(['reindex', '--model', model, '--data-dir', dataDir, '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ vectors: first.chunks_added, embedded: first.chunks_added }); // the refused ingest stored nothing
    const doctor = await runCliAsync(['doctor', '--data-dir', dataDir, '--json'], { ...env, MNEME_EMBED_MODEL: model, MNEME_EMBED_MODEL_NAME: '' });
    expect(doctor.code, doctor.stdout).toBe(0);
  });
});
