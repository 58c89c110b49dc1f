/**
 * Worker thread that owns the transformers.js embedding model: onnxruntime's run() blocks its thread,
 * so it must not be the event loop's. Protocol: one `init` reply, then `embed` requests answered in
 * order with one flat Float32Array (transferred, not copied).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AutoModel, AutoTokenizer, env } from '@huggingface/transformers';
import type { PreTrainedModel, PreTrainedTokenizer, Tensor } from '@huggingface/transformers';
import { configureTransformersEnv, readSentenceTransformersConfig } from './transformers-env.ts';
import type { EmbedWorkerData, EmbedWorkerReply, EmbedWorkerRequest } from './embedder.ts';

const data = (workerData as { data: EmbedWorkerData }).data;
const port = parentPort!;

let tokenizer: PreTrainedTokenizer;
let model: PreTrainedModel;
let maxTokens = 0;
let pooling: 'mean' | 'cls' = 'mean';
let normalize = true;

async function init(): Promise<EmbedWorkerReply> {
  const id = configureTransformersEnv(env, data);
  tokenizer = await AutoTokenizer.from_pretrained(id);
  model = await AutoModel.from_pretrained(id, {
    dtype: data.dtype as 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: data.threads, interOpNumThreads: 1 },
  });
  const st = readSentenceTransformersConfig(data.modelRef);
  pooling = st.pooling ?? 'mean';
  normalize = st.normalize ?? true;
  const cfg = model.config as unknown as { max_position_embeddings?: number; hidden_size?: number };
  const tokMax = (tokenizer as unknown as { model_max_length?: number }).model_max_length;
  maxTokens =
    data.maxTokens ??
    st.maxSeqLength ??
    Math.min(
      data.defaultMaxTokens ?? Number.POSITIVE_INFINITY,
      tokMax && tokMax < 1e6 ? tokMax : Number.POSITIVE_INFINITY,
      cfg.max_position_embeddings ?? 512,
    );
  // Probe once: the true output width, whatever the config says.
  const probe = await embed(['probe']);
  return { type: 'ready', dimension: probe.length, maxTokens, pooling, normalize };
}

async function embed(texts: string[]): Promise<Float32Array> {
  const inputs = tokenizer(texts, { padding: true, truncation: true, max_length: maxTokens });
  const out = (await model(inputs)) as Record<string, Tensor>;
  const mask = inputs.attention_mask as Tensor;
  const sentence = out.sentence_embedding ?? out.pooler_output;
  let result: Float32Array;
  if (out.sentence_embedding && sentence) {
    result = Float32Array.from(sentence.data as Float32Array);
  } else {
    const hidden = (out.last_hidden_state ?? out.token_embeddings) as Tensor | undefined;
    if (!hidden) throw new Error(`model outputs ${Object.keys(out).join(', ')}; expected last_hidden_state`);
    const [b, t, h] = hidden.dims as [number, number, number];
    const hd = hidden.data as Float32Array;
    const md = mask.data as BigInt64Array;
    result = new Float32Array(b * h);
    for (let i = 0; i < b; i++) {
      const o = i * h;
      if (pooling === 'cls') {
        result.set(hd.subarray(i * t * h, i * t * h + h), o);
        continue;
      }
      let n = 0;
      for (let j = 0; j < t; j++) {
        if (md[i * t + j] === 0n) continue;
        n++;
        const base = (i * t + j) * h;
        for (let k = 0; k < h; k++) result[o + k]! += hd[base + k]!;
      }
      const inv = 1 / Math.max(n, 1);
      for (let k = 0; k < h; k++) result[o + k]! *= inv;
    }
  }
  if (normalize) {
    const h = result.length / texts.length;
    for (let i = 0; i < texts.length; i++) {
      let s = 0;
      for (let k = 0; k < h; k++) s += result[i * h + k]! ** 2;
      const inv = 1 / (Math.sqrt(s) || 1);
      for (let k = 0; k < h; k++) result[i * h + k]! *= inv;
    }
  }
  return result;
}

// One request at a time: onnxruntime-node's run() is asynchronous, and several runs in flight at
// once oversubscribe the cores (measured: 15 chunks/s instead of 40 on 2 cores).
let chain: Promise<void> = Promise.resolve();
/** Set by an `exit` request: queued batches are skipped, the run in flight finishes, then the thread exits. */
let exiting = false;

port.on('message', (msg: EmbedWorkerRequest) => {
  if (msg.type === 'exit') {
    exiting = true;
    const code = msg.code;
    chain = chain.then(() => process.exit(code));
    return;
  }
  if (msg.type === 'init') {
    chain = chain.then(() =>
      init().then(
        (reply) => port.postMessage(reply),
        (err: unknown) => port.postMessage({ type: 'error', id: -1, message: (err as Error).message ?? String(err) } satisfies EmbedWorkerReply),
      ),
    );
    return;
  }
  chain = chain.then(() =>
    exiting
      ? undefined
      : embed(msg.texts).then(
          (vectors) => port.postMessage({ type: 'vectors', id: msg.id, vectors } satisfies EmbedWorkerReply, [vectors.buffer as ArrayBuffer]),
          (err: unknown) => port.postMessage({ type: 'error', id: msg.id, message: (err as Error).message ?? String(err) } satisfies EmbedWorkerReply),
        ),
  );
});
