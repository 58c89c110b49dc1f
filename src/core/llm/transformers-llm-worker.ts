/**
 * Worker thread that owns a transformers.js causal LM: onnxruntime's run() blocks its thread, so
 * generation must not run on the event loop. Protocol (see transformers-llm.ts):
 *  - on start it loads the model and posts `ready` (with the tokenizer's JSON, so the main thread can
 *    count tokens without touching disk or transformers.js' global env) or `load-error`;
 *  - each `generate` (token ids of the rendered prompt) is answered by `token` messages (text safe to
 *    show: never part of a stop string, never half a UTF-8 character) and one `done` or `error`.
 * Cancellation is a SharedArrayBuffer flag read by a stopping criterion at every step: the worker's
 * event loop is busy inside generate(), so a `cancel` message would only arrive after the end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  BaseStreamer,
  LogitsProcessor,
  StoppingCriteria,
  Tensor,
  env,
  random,
} from '@huggingface/transformers';
import type { PreTrainedModel, PreTrainedTokenizer } from '@huggingface/transformers';
import { configureTransformersEnv } from '../transformers-env.ts';
import { scanStops, topPFilter } from './transformers-llm.ts';
import type { LlmWorkerData, LlmWorkerReply, LlmWorkerRequest } from './transformers-llm.ts';

const data = (workerData as { data: LlmWorkerData }).data;
const port = parentPort!;

let tokenizer: PreTrainedTokenizer;
let model: PreTrainedModel;
let eosTokenIds: number[] = [];

const post = (msg: LlmWorkerReply) => port.postMessage(msg);

async function init(): Promise<void> {
  const id = configureTransformersEnv(env, data);
  tokenizer = await AutoTokenizer.from_pretrained(id);
  model = await AutoModelForCausalLM.from_pretrained(id, {
    dtype: data.dtype as 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: data.threads, interOpNumThreads: 1 },
  });
  const gen = (model as unknown as { generation_config?: { eos_token_id?: number | number[] | null } }).generation_config;
  const cfg = model.config as unknown as { eos_token_id?: number | number[]; max_position_embeddings?: number };
  const eos = gen?.eos_token_id ?? cfg.eos_token_id ?? tokenizer.eos_token_id;
  eosTokenIds = (Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos]).map(Number);
  const t = tokenizer as unknown as { _tokenizerJSON: unknown; _tokenizerConfig: unknown };
  post({
    type: 'ready',
    tokenizerJson: t._tokenizerJSON,
    tokenizerConfig: t._tokenizerConfig,
    maxPositions: typeof cfg.max_position_embeddings === 'number' ? cfg.max_position_embeddings : null,
    eosTokenIds,
  });
}

/** Nucleus filter (transformers.js 4.3 declares TopPLogitsWarper but does not apply it). */
class TopP extends LogitsProcessor {
  constructor(private readonly topP: number) {
    super();
  }
  override _call(_ids: bigint[][], logits: Tensor): Tensor {
    const vocab = logits.dims.at(-1)!;
    const d = logits.data as Float32Array;
    for (let o = 0; o < d.length; o += vocab) topPFilter(d.subarray(o, o + vocab), this.topP);
    return logits;
  }
}

class Flagged extends StoppingCriteria {
  constructor(private readonly stop: () => boolean) {
    super();
  }
  override _call(ids: number[][]): boolean[] {
    const s = this.stop();
    return ids.map(() => s);
  }
}

async function generate(msg: Extract<LlmWorkerRequest, { type: 'generate' }>): Promise<void> {
  const { id, inputIds, sampling } = msg;
  const cancel = new Int32Array(msg.cancel);
  const stops = sampling.stop.filter((s) => s.length > 0);
  const generated: number[] = [];
  let emitted = 0;
  // Assigned inside Streamer.put(); the cast stops TS narrowing it to `null` here.
  let final = null as string | null;
  let sawEos = false;
  let promptSeen = false;

  class Streamer extends BaseStreamer {
    override put(value: bigint[][]): void {
      // generate() first puts the prompt, then one token per step.
      if (!promptSeen) {
        promptSeen = true;
        return;
      }
      const tok = Number(value[0]![0]!);
      generated.push(tok);
      if (eosTokenIds.includes(tok)) {
        sawEos = true;
        return;
      }
      const text = tokenizer.decode(generated, { skip_special_tokens: true });
      const { stopAt, safeEnd } = scanStops(text, stops);
      const end = stopAt ?? safeEnd;
      if (end > emitted && Atomics.load(cancel, 0) === 0) {
        post({ type: 'token', id, text: text.slice(emitted, end) });
        emitted = end;
      }
      if (stopAt !== null) final = text.slice(0, stopAt);
    }
    override end(): void {}
  }

  const n = inputIds.length;
  const doSample = sampling.temperature > 0;
  random.seed(sampling.seed);
  await model.generate({
    input_ids: new Tensor('int64', BigInt64Array.from(inputIds, (v) => BigInt(v)), [1, n]),
    attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    max_new_tokens: sampling.maxTokens,
    do_sample: doSample,
    temperature: doSample ? sampling.temperature : 1,
    // top_k 0 = the whole vocabulary: the logged sampling parameters are the only ones applied.
    top_k: 0,
    logits_processor: doSample && sampling.topP < 1 ? [new TopP(sampling.topP)] : null,
    stopping_criteria: [new Flagged(() => final !== null || Atomics.load(cancel, 0) !== 0 || exitCode !== null)],
    streamer: new Streamer(),
  } as unknown as Parameters<PreTrainedModel['generate']>[0]);

  if (exitCode !== null) return; // leaving: no reply (the caller sees the exit)
  const cancelled = Atomics.load(cancel, 0) !== 0;
  let text = final;
  if (text === null) {
    text = tokenizer.decode(sawEos ? generated.slice(0, -1) : generated, { skip_special_tokens: true });
    if (!cancelled && text.length > emitted) post({ type: 'token', id, text: text.slice(emitted) });
  }
  post({
    type: 'done',
    id,
    text,
    completionTokens: generated.length,
    finishReason: final === null && !sawEos && generated.length >= sampling.maxTokens ? 'length' : 'stop',
    cancelled,
  });
}

/** Set by an `exit` request (see LlmWorkerRequest): the generation in flight stops, then the thread exits. */
let exitCode: number | null = null;
let running = 0;

port.on('message', (msg: LlmWorkerRequest) => {
  if (msg.type === 'exit') {
    exitCode = msg.code;
    if (running === 0) process.exit(exitCode);
    return;
  }
  running++;
  generate(msg)
    .catch((err: unknown) => {
      if (exitCode === null) post({ type: 'error', id: msg.id, message: (err as Error).message ?? String(err) });
    })
    .finally(() => {
      running--;
      if (exitCode !== null) process.exit(exitCode);
    });
});

init().catch((err: unknown) => post({ type: 'load-error', message: (err as Error).message ?? String(err) }));
