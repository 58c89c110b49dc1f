// Loads the generated tiny-bert fixture (test/fixtures/models/tiny-bert, see its README.md) through
// the REAL transformers.js local-model path, with remote loading disabled, and checks that it
// behaves like a bag-of-words sentence encoder.
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it, expect, beforeAll } from 'vitest';
import { env, AutoTokenizer, AutoModel, Tensor } from '@huggingface/transformers';
import type { PreTrainedModel, PreTrainedTokenizer } from '@huggingface/transformers';

// Absolute directory that *contains* the model directory, with a trailing slash.
const MODELS_DIR = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));
const MODEL_ID = 'tiny-bert';
const MODEL_DIR = `${MODELS_DIR}${MODEL_ID}`;
const HIDDEN = 32;

const TEXTS = [
  'the postgres vacuum command reclaims storage',
  'vacuum reclaims storage in postgres',
  'a recipe for chocolate cake with eggs',
];

env.allowRemoteModels = false; // never touch the network
env.allowLocalModels = true;
env.localModelPath = MODELS_DIR; // a plain model id like 'tiny-bert' resolves to MODELS_DIR + 'tiny-bert/...'
env.useFSCache = false; // the file cache is consulted BEFORE local files: keep stale entries out of the picture

/** Mean-pool `last_hidden_state` [batch, seq, hidden] over the attention mask, then L2-normalize. */
function meanPoolNormalize(hidden: Tensor, mask: Tensor): number[][] {
  const [batch, seq, dim] = hidden.dims as [number, number, number];
  const h = hidden.data as Float32Array;
  const m = mask.data as BigInt64Array;
  const out: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const v = new Array<number>(dim).fill(0);
    let count = 0;
    for (let s = 0; s < seq; s++) {
      if (m[b * seq + s] === 0n) continue;
      count++;
      for (let d = 0; d < dim; d++) v[d]! += h[(b * seq + s) * dim + d]!;
    }
    const norm = Math.hypot(...v.map((x) => x / count));
    out.push(v.map((x) => x / count / norm));
  }
  return out;
}

function dot(a: number[], b: number[]): number {
  return a.reduce((acc, x, i) => acc + x * b[i]!, 0);
}

interface Encoded {
  input_ids: Tensor;
  attention_mask: Tensor;
  token_type_ids: Tensor;
}

async function embed(tok: PreTrainedTokenizer, model: PreTrainedModel, texts: string[]) {
  const enc = tok(texts, { padding: true, truncation: true }) as unknown as Encoded;
  const out = (await model(enc)) as { last_hidden_state: Tensor };
  return { enc, hidden: out.last_hidden_state, vectors: meanPoolNormalize(out.last_hidden_state, enc.attention_mask) };
}

describe('tiny-bert fixture (transformers.js, local files only)', () => {
  let tok: PreTrainedTokenizer;
  let model: PreTrainedModel;

  beforeAll(async () => {
    tok = await AutoTokenizer.from_pretrained(MODEL_ID);
    model = await AutoModel.from_pretrained(MODEL_ID, {
      dtype: 'fp32', // -> onnx/model.onnx (no suffix)
      session_options: { intraOpNumThreads: 1, interOpNumThreads: 1 },
    });
  });

  it('ships a small ONNX file', () => {
    expect(statSync(`${MODEL_DIR}/onnx/model.onnx`).size).toBeLessThan(5 * 1024 * 1024);
  });

  it('tokenizes like a BERT uncased WordPiece tokenizer', () => {
    const enc = tok(['Hello, WORLD'], { padding: true, truncation: true }) as unknown as Encoded;
    const ids = Array.from(enc.input_ids.data as BigInt64Array, Number);
    expect(ids[0]).toBe(101); // [CLS]
    expect(ids.at(-1)).toBe(102); // [SEP]
    expect(tok.decode(ids, { skip_special_tokens: true })).toBe('hello, world');
    expect(tok.model_max_length).toBe(128);
  });

  it('produces [batch, seq, 32] hidden states and bag-of-words-like sentence embeddings', async () => {
    const { enc, hidden, vectors } = await embed(tok, model, TEXTS);
    const seq = enc.input_ids.dims[1]!;
    expect(hidden.dims).toEqual([3, seq, HIDDEN]);
    expect(hidden.type).toBe('float32');
    for (const v of vectors) {
      expect(v).toHaveLength(HIDDEN);
      expect(v.every(Number.isFinite)).toBe(true);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    }
    const [pg, pg2, cake] = vectors as [number[], number[], number[]];
    const related = dot(pg, pg2);
    const unrelated = dot(pg, cake);
    expect(related).toBeGreaterThan(unrelated + 0.2);
    expect(related).toBeGreaterThan(0.5);
  });

  it('ignores padding: a sentence embeds the same alone and in a padded batch', async () => {
    const alone = (await embed(tok, model, [TEXTS[1]!])).vectors[0]!;
    const batched = (await embed(tok, model, TEXTS)).vectors[1]!; // padded: TEXTS[2] is longer
    expect(dot(alone, batched)).toBeCloseTo(1, 5);
  });

  it('truncates long input to model_max_length (128 positions)', async () => {
    const long = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    const { hidden } = await embed(tok, model, [long]);
    expect(hidden.dims).toEqual([1, 128, HIDDEN]);
  });

  it('also loads when the model id is an absolute directory path', async () => {
    const tok2 = await AutoTokenizer.from_pretrained(MODEL_DIR);
    const model2 = await AutoModel.from_pretrained(MODEL_DIR, { dtype: 'fp32' });
    const a = (await embed(tok2, model2, TEXTS)).vectors;
    const b = (await embed(tok, model, TEXTS)).vectors;
    expect(dot(a[0]!, b[0]!)).toBeCloseTo(1, 5);
    await model2.dispose();
  });
});
