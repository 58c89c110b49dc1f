/**
 * `mneme doctor` reports an embedding model that cannot be loaded (exit 1, naming the directory to
 * copy it into), and the embedder's own message for a missing model is one clear sentence.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../../src/cli.ts';
import type { CommandIo } from '../../../src/commands/types.ts';
import { loadConfig } from '../../../src/core/config.ts';
import { loadEmbedder } from '../../../src/core/embedder.ts';
import { FIXTURE_DOCS, TINY_BERT } from '../../helpers/cli.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-doctor-'));
  dirs.push(d);
  return d;
}

function io(env: Record<string, string>): CommandIo & { out: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.resume();
  return { stdout, stderr, env, isTty: false, out: () => out };
}

/** A data dir with the fixture docs ingested BM25-only (a healthy database, no vector index). */
async function ingested(): Promise<string> {
  const dataDir = tempDir();
  expect(await main(['ingest', FIXTURE_DOCS, '--data-dir', dataDir], io({ MNEME_EMBED_MODEL: 'none' }))).toBe(0);
  return dataDir;
}

describe('mneme doctor: the embedding model', () => {
  it('exit 1 naming the directory when the configured hub model is not in an empty models dir (offline)', async () => {
    const dataDir = await ingested();
    const modelsDir = tempDir();
    const t = io({ MNEME_OFFLINE: '1', MNEME_MODELS_DIR: modelsDir, MNEME_EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2' });
    expect(await main(['doctor', '--data-dir', dataDir], t)).toBe(1);
    expect(t.out()).toContain(`PROBLEM: embedding model Xenova/all-MiniLM-L6-v2 is not in ${path.join(modelsDir, 'Xenova', 'all-MiniLM-L6-v2')}/`);
    expect(t.out()).toContain('MNEME_OFFLINE=1 forbids downloading it');
    expect(t.out()).not.toMatch(/^ok$/m);
  });

  it('exit 1 when the model files are there but corrupt', async () => {
    const dataDir = await ingested();
    const model = path.join(tempDir(), 'broken-bert');
    fs.cpSync(TINY_BERT, model, { recursive: true });
    fs.writeFileSync(path.join(model, 'onnx', 'model.onnx'), 'not an onnx graph');
    const t = io({ MNEME_OFFLINE: '1', MNEME_EMBED_MODEL: model });
    expect(await main(['doctor', '--data-dir', dataDir, '--json'], t)).toBe(1);
    const report = JSON.parse(t.out().trim().split('\n').pop()!) as { ok: boolean; problems: string[] };
    expect(report.ok).toBe(false);
    expect(report.problems.some((p) => p.includes(`copy the model into ${model}/ again`))).toBe(true);
  });

  it('exit 0 and ok when the model loads and embeds', async () => {
    const dataDir = await ingested();
    const t = io({ MNEME_OFFLINE: '1', MNEME_EMBED_MODEL: TINY_BERT });
    expect(await main(['doctor', '--data-dir', dataDir], t)).toBe(0);
    expect(t.out()).toMatch(/^ok$/m);
  });
});

describe('the missing-model message', () => {
  it('offline with an empty models dir: the directory to copy into, no transformers.js internals, no "unset MNEME_OFFLINE"', async () => {
    const modelsDir = tempDir();
    const config = loadConfig({ MNEME_DATA_DIR: tempDir(), MNEME_MODELS_DIR: modelsDir, MNEME_OFFLINE: '1', MNEME_THREADS: '1' });
    const r = await loadEmbedder(config);
    expect(r.embedder).toBeNull();
    expect(r.warning).toContain(`copy those files from https://huggingface.co/Xenova/all-MiniLM-L6-v2 into ${path.join(modelsDir, 'Xenova', 'all-MiniLM-L6-v2')}/`);
    expect(r.warning).not.toMatch(/tokenizer_class|Cannot read properties/);
    expect(r.warning).not.toMatch(/unset MNEME_OFFLINE/);
  });

  it('a local model directory without files names what is missing there', async () => {
    const dir = tempDir();
    const config = loadConfig({ MNEME_DATA_DIR: tempDir(), MNEME_EMBED_MODEL: dir, MNEME_OFFLINE: '1', MNEME_THREADS: '1' });
    const r = await loadEmbedder(config);
    expect(r.warning).toContain(`embedding model directory ${dir} is missing config.json`);
  });
});
