/**
 * The only module that reads the environment. `loadConfig()` validates every MNEME_* variable with
 * zod once and fails fast with a ConfigError naming the variable; everything else receives a typed
 * `Config`.
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/** Default embedding model (hub id); 384-d, trained at 256 tokens. */
export const DEFAULT_EMBED_MODEL = 'Xenova/all-MiniLM-L6-v2';
/** Prefix of MNEME_EMBED_MODEL selecting an OpenAI-compatible embedding server. */
export const OPENAI_EMBED_PREFIX = 'openai:';
/** Default requests in flight to an `openai:` embedding server. */
export const DEFAULT_EMBED_CONCURRENCY = 4;
/** Default deadline of one embedding request, in ms (30 s). */
export const DEFAULT_EMBED_TIMEOUT_MS = 30_000;
/** Default retries of a failed embedding request (429, 5xx, network error, timeout). */
export const DEFAULT_EMBED_RETRIES = 4;
/** Default texts per embedding request: text-embeddings-inference refuses more than 32 (--max-client-batch-size). */
export const DEFAULT_EMBED_BATCH_ITEMS = 32;
/** Default characters per embedding request, ~16k tokens (TEI's default --max-batch-tokens is 16384). */
export const DEFAULT_EMBED_BATCH_CHARS = 64_000;
/** Default largest file the ingester reads, in bytes (50 MiB). */
export const DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024;

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', ''])
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

const intIn = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const numIn = (min: number, max: number) => z.coerce.number().min(min).max(max);

/** Chat model selector: extractive | gguf:PATH | transformers:ID_OR_DIR | openai:BASE_URL. */
const llmSpec = z.string().regex(/^(extractive|gguf:.+|transformers:.+|openai:https?:\/\/.+)$/, {
  message: 'expected extractive, gguf:PATH, transformers:HUB_ID_OR_DIR or openai:BASE_URL',
});

const envSchema = z.object({
  MNEME_DATA_DIR: z.string().min(1).default('./data'),
  /** postgres://… selects the PostgreSQL engine (shared by several replicas); unset = SQLite in the data dir. */
  MNEME_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\/.+/, { message: 'expected postgres://user@host:port/database (unset for the embedded SQLite file)' })
    .optional(),
  MNEME_MODELS_DIR: z.string().min(1).optional(),
  /** Hub id, local model directory, `openai:BASE_URL[#MODEL]` (an embedding server), or "none" to run BM25-only on purpose. */
  MNEME_EMBED_MODEL: z.string().min(1).default(DEFAULT_EMBED_MODEL),
  MNEME_EMBED_DTYPE: z.enum(['fp32', 'fp16', 'q8', 'int8', 'uint8', 'q4', 'bnb4', 'q4f16']).default('fp32'),
  MNEME_EMBED_MAX_TOKENS: intIn(8, 8192).optional(),
  /** HNSW ef_search forced for every query (unset: the index generation's calibrated ef). */
  MNEME_HNSW_EF_SEARCH: intIn(1, 10_000).optional(),
  /** recall@10 the ef calibration aims for (src/core/index-store.ts CALIBRATION_RECALL_TARGET). */
  MNEME_HNSW_RECALL_TARGET: numIn(0.5, 1).default(0.99),
  /** Embedding worker threads, each with its own copy of the model (default: one per core, at most 4). */
  MNEME_EMBED_WORKERS: intIn(1, 64).optional(),
  /** `openai:` embedding server only: model name sent as `model` (or give it as `#name` after the URL). */
  MNEME_EMBED_MODEL_NAME: z.string().min(1).optional(),
  MNEME_EMBED_API_KEY: z.string().min(1).optional(),
  /** `openai:` only: requests in flight at once. */
  MNEME_EMBED_CONCURRENCY: intIn(1, 256).default(DEFAULT_EMBED_CONCURRENCY),
  /** `openai:` only: deadline of one HTTP request (one attempt), in ms. */
  MNEME_EMBED_TIMEOUT_MS: intIn(100, 3_600_000).default(DEFAULT_EMBED_TIMEOUT_MS),
  /** `openai:` only: retries after a 429, a 5xx, a network error or a timeout (0 = none). */
  MNEME_EMBED_RETRIES: intIn(0, 20).default(DEFAULT_EMBED_RETRIES),
  /** `openai:` only: most texts per request. */
  MNEME_EMBED_BATCH_ITEMS: intIn(1, 2048).default(DEFAULT_EMBED_BATCH_ITEMS),
  /** `openai:` only: most characters per request (a longer single text goes alone). */
  MNEME_EMBED_BATCH_CHARS: intIn(1000, 100_000_000).default(DEFAULT_EMBED_BATCH_CHARS),
  MNEME_OFFLINE: bool.default(false),
  MNEME_THREADS: intIn(1, 256).optional(),
  MNEME_MAX_FILE_BYTES: intIn(1, 2 ** 40).default(DEFAULT_MAX_FILE_BYTES),
  /** 1 (default): run the server's full-text searches on a reader thread (SQLite engine; see README); 0: on the event loop. */
  MNEME_SEARCH_THREAD: bool.default(true),
  /** 1 (default): SQLite connections rank full-text matches with mneme's FTS5 extension when it is built (fts-native.ts); 0: with FTS5's bm25(). */
  MNEME_FTS_NATIVE: bool.default(true),
  /** CPU priority (nice, 0-19) `ingest`/`reindex` lower themselves to, so a server on the same machine keeps its latency. */
  MNEME_INGEST_NICE: intIn(0, 19).default(10),

  MNEME_LLM: llmSpec.default('extractive'),
  MNEME_LLM_MODEL: z.string().min(1).optional(),
  MNEME_LLM_API_KEY: z.string().min(1).optional(),
  MNEME_LLM_TIMEOUT_MS: intIn(100, 3_600_000).default(120_000),
  MNEME_LLM_MAX_TOKENS: intIn(1, 32_768).default(512),
  MNEME_LLM_TEMPERATURE: numIn(0, 2).default(0.2),
  MNEME_LLM_TOP_P: numIn(0, 1).default(0.95),
  MNEME_LLM_SEED: intIn(0, 2 ** 31 - 1).default(42),
  MNEME_LLM_CONTEXT_TOKENS: intIn(256, 1_048_576).default(4096),

  MNEME_HOST: z.string().min(1).default('127.0.0.1'),
  MNEME_PORT: intIn(0, 65_535).default(8080),
  MNEME_BODY_LIMIT_BYTES: intIn(1024, 64 * 1024 * 1024).default(256 * 1024),
  MNEME_MAX_MESSAGE_CHARS: intIn(1, 1_000_000).default(8000),
  MNEME_RATE_LIMIT_PER_MIN: intIn(0, 1_000_000).default(120),
  MNEME_QUEUE_MAX: intIn(1, 100_000).default(64),
  /** Answers computed at once (features, retrieval, extractive generation); the others wait in line. 0 = 2 × cores. */
  MNEME_ANSWER_CONCURRENCY: intIn(0, 10_000).default(0),
  MNEME_JSON_MAX_DEPTH: intIn(2, 10_000).default(64),
  MNEME_AUTH_FAIL_PER_MIN: intIn(0, 1_000_000).default(20),
  MNEME_SHUTDOWN_GRACE_S: numIn(0, 3600).default(10),
  MNEME_PERSONALIZATION_WEIGHT: numIn(0, 10).default(0.3),
  /** Share of a question's key terms the top retrieved chunks must contain, else the answer abstains (0 = never). */
  MNEME_ABSTAIN_MIN_COVERAGE: numIn(0, 1).default(0.65),
  /** Largest drop of hit@5 / MRR@10 on the regression set a promotion accepts (absolute; issue 15). */
  MNEME_RELEASE_GATE_MARGIN: numIn(0, 1).default(0.05),
  MNEME_FEATURES_INTERVAL_S: intIn(0, 86_400).default(60),
  MNEME_CHROMIUM_PATH: z.string().min(1).default('/usr/bin/chromium'),
  /** Redis for the online feature store, rate-limit buckets and corpus-change notices (unset = none). */
  MNEME_REDIS_URL: z.string().regex(/^rediss?:\/\/.+/, { message: 'expected redis://[user:password@]host[:port][/db] or rediss://…' }).optional(),
  /** First segment of every Redis key and channel of this deployment (several can share one Redis). */
  MNEME_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'letters, digits, "_", "-", "." (1-64 characters)' }).default('mneme'),
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  dataDir: string;
  /** Where hub models are cached (default `<dataDir>/models`). */
  modelsDir: string;
  dbFile: string;
  /** PostgreSQL URL when the PostgreSQL engine is selected (MNEME_DATABASE_URL), else null (SQLite at dbFile). */
  databaseUrl: string | null;
  indexDir: string;
  /** HNSW query settings: `efSearch` forced (null = calibrated per generation), the calibration's recall@10 target. */
  hnsw: { efSearch: number | null; recallTarget: number };
  embed: {
    /** Hub id, absolute local directory, or `openai:<api base>#<model name>` (see `server`); null = embeddings disabled on purpose. */
    model: string | null;
    dtype: string;
    /** Override of the model's trained length, in tokens. */
    maxTokens: number | undefined;
    /** Embedding workers; undefined = embedWorkerLayout(threads). */
    workers: number | undefined;
    /** Set when `model` is `openai:…`: the embedding server to call instead of a local model. */
    server: EmbedServerConfig | null;
  };
  offline: boolean;
  /** Real core count used for onnxruntime and llama.cpp threads. */
  threads: number;
  maxFileBytes: number;
  /** Nice value (0 = unchanged) of ingestion processes; default 10. */
  ingestNice: number;
  /** Full-text searches of `serve` on a reader thread (SQLite engine). Default false. */
  searchThread: boolean;
  /** MNEME_FTS_NATIVE: rank with mneme's FTS5 extension when it is built (same scores as bm25(), fewer posting-list walks). */
  ftsNative: boolean;
  llm: {
    spec: string;
    model: string | undefined;
    apiKey: string | undefined;
    timeoutMs: number;
    maxTokens: number;
    temperature: number;
    topP: number;
    seed: number;
    contextTokens: number;
  };
  server: {
    host: string;
    port: number;
    bodyLimitBytes: number;
    maxMessageChars: number;
    rateLimitPerMin: number;
    queueMax: number;
    /** Answers whose CPU-bound stages run at once (MNEME_ANSWER_CONCURRENCY; default 2 × cores). */
    answerConcurrency: number;
    /** Deepest nesting of arrays/objects accepted in a JSON body, in levels (400 beyond). */
    jsonMaxDepth: number;
    /** Failed authentications (401) allowed per client IP per minute before 429; 0 = unlimited. */
    authFailPerMin: number;
    /** How long `serve` lets running answers finish after SIGTERM/SIGINT, in ms. */
    shutdownGraceMs: number;
  };
  personalizationWeight: number;
  /**
   * Minimum share (0–1) of the question's key terms found in the top retrieved chunks
   * (MNEME_ABSTAIN_MIN_COVERAGE, default 0.65; src/chat/evidence.ts says how it is measured); below it the answer says the documents do not cover
   * the question (finish_reason 'no_evidence'). 0 never abstains.
   */
  abstainMinCoverage: number;
  /** MNEME_RELEASE_GATE_MARGIN: largest drop of hit@5 or MRR@10 a promotion accepts (default 0.05). */
  releaseGateMargin: number;
  featuresIntervalSeconds: number;
  chromiumPath: string;
  /** Redis (MNEME_REDIS_URL, MNEME_REDIS_PREFIX); null = everything stays in the SQL store and in memory. */
  redis: { url: string; prefix: string } | null;
}

/** An OpenAI-compatible embedding server (`MNEME_EMBED_MODEL=openai:BASE_URL`). */
export interface EmbedServerConfig {
  /** API root the endpoint hangs off: `<apiBase>/embeddings` (see openAIApiBase). */
  apiBase: string;
  /** Sent as `model`. */
  modelName: string;
  apiKey: string | undefined;
  /** Requests in flight at once (default 4). */
  concurrency: number;
  /** Deadline of one attempt, in ms (default 30 000). */
  timeoutMs: number;
  /** Retries after a transient failure (default 4). */
  retries: number;
  /** Most texts per request (default 32). */
  batchItems: number;
  /** Most characters per request (default 64 000). */
  batchChars: number;
}

/**
 * API root of an OpenAI-compatible server: trailing slashes removed and `/v1` appended unless the
 * last path segment already is a version (`v1`, `v2`, ...), so `http://h:8000`, `http://h:8000/` and
 * `http://h:8000/v1` all give `http://h:8000/v1`. Query and fragment are dropped.
 * @throws Error for a malformed or non-http(s) URL, or one with credentials in it.
 */
export function openAIApiBase(baseUrl: string): string {
  const url = new URL(baseUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`expected an http(s) URL, got ${JSON.stringify(baseUrl)}`);
  if (url.username || url.password) throw new Error('put the key in MNEME_EMBED_API_KEY, not in the URL');
  let p = url.pathname.replace(/\/+$/, '');
  if (!/\/v\d+$/.test(p)) p += '/v1';
  return `${url.protocol}//${url.host}${p}`;
}

/**
 * The stable model id of an embedding server model, `openai:<api base>#<model name>`: what index
 * generations record, and itself a valid MNEME_EMBED_MODEL value.
 */
export function openAIEmbedModelId(apiBase: string, modelName: string): string {
  return `${OPENAI_EMBED_PREFIX}${apiBase}#${modelName}`;
}

type ParsedEnv = z.output<typeof envSchema>;

/**
 * Resolves `openai:BASE_URL[#MODEL]` (+ MNEME_EMBED_MODEL_NAME etc.) to the model id and server settings.
 * @throws ConfigError naming MNEME_EMBED_MODEL or MNEME_EMBED_MODEL_NAME.
 */
export function parseEmbedServer(spec: string, e: Pick<ParsedEnv, 'MNEME_EMBED_MODEL_NAME' | 'MNEME_EMBED_API_KEY' | 'MNEME_EMBED_CONCURRENCY' | 'MNEME_EMBED_TIMEOUT_MS' | 'MNEME_EMBED_RETRIES' | 'MNEME_EMBED_BATCH_ITEMS' | 'MNEME_EMBED_BATCH_CHARS'>): { modelId: string; server: EmbedServerConfig } {
  const raw = spec.slice(OPENAI_EMBED_PREFIX.length);
  const hash = raw.indexOf('#');
  const urlPart = hash === -1 ? raw : raw.slice(0, hash);
  const fragmentName = hash === -1 ? '' : decodeURIComponent(raw.slice(hash + 1));
  let apiBase: string;
  try {
    apiBase = openAIApiBase(urlPart);
  } catch (err) {
    throw new ConfigError(`MNEME_EMBED_MODEL: openai: needs a server URL, openai:http://HOST:PORT[/v1][#MODEL] (${(err as Error).message}) (got ${JSON.stringify(spec)})`, { cause: err });
  }
  const named = e.MNEME_EMBED_MODEL_NAME;
  if (named && fragmentName && named !== fragmentName) {
    throw new ConfigError(`MNEME_EMBED_MODEL_NAME: ${JSON.stringify(named)} contradicts the #${fragmentName} of MNEME_EMBED_MODEL`);
  }
  const modelName = named ?? fragmentName;
  if (!modelName) {
    throw new ConfigError(
      'MNEME_EMBED_MODEL_NAME: required with MNEME_EMBED_MODEL=openai:… (the model the server serves, e.g. "nomic-embed-text" for Ollama; any name for text-embeddings-inference)',
    );
  }
  return {
    modelId: openAIEmbedModelId(apiBase, modelName),
    server: {
      apiBase,
      modelName,
      apiKey: e.MNEME_EMBED_API_KEY,
      concurrency: e.MNEME_EMBED_CONCURRENCY,
      timeoutMs: e.MNEME_EMBED_TIMEOUT_MS,
      retries: e.MNEME_EMBED_RETRIES,
      batchItems: e.MNEME_EMBED_BATCH_ITEMS,
      batchChars: e.MNEME_EMBED_BATCH_CHARS,
    },
  };
}

/** Flags that override the environment (CLI `--data-dir`, `--port`, ...). */
export interface ConfigOverrides {
  dataDir?: string | undefined;
  port?: number | undefined;
  host?: string | undefined;
}

/**
 * Validates `env` (default `process.env`) and applies overrides.
 * @throws ConfigError naming the first invalid variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: ConfigOverrides = {}): Config {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const v = env[key];
    // An empty variable means "unset" except for booleans, where "" is explicitly false.
    if (v !== undefined && (v !== '' || key === 'MNEME_OFFLINE')) picked[key] = v;
  }
  const parsed = envSchema.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? 'environment');
    throw new ConfigError(`${name}: ${issue?.message ?? 'invalid'} (got ${JSON.stringify(picked[name] ?? '')})`, {
      cause: parsed.error,
    });
  }
  const e = parsed.data;
  const dataDir = path.resolve(overrides.dataDir ?? e.MNEME_DATA_DIR);
  const embedServer = e.MNEME_EMBED_MODEL.startsWith(OPENAI_EMBED_PREFIX) ? parseEmbedServer(e.MNEME_EMBED_MODEL, e) : null;
  const embedModel = embedServer ? embedServer.modelId : e.MNEME_EMBED_MODEL === 'none' ? null : resolveModelRef(e.MNEME_EMBED_MODEL);
  return {
    dataDir,
    modelsDir: path.resolve(e.MNEME_MODELS_DIR ?? path.join(dataDir, 'models')),
    dbFile: path.join(dataDir, 'mneme.sqlite'),
    databaseUrl: e.MNEME_DATABASE_URL ?? null,
    indexDir: path.join(dataDir, 'index'),
    hnsw: { efSearch: e.MNEME_HNSW_EF_SEARCH ?? null, recallTarget: e.MNEME_HNSW_RECALL_TARGET },
    embed: { model: embedModel, dtype: e.MNEME_EMBED_DTYPE, maxTokens: e.MNEME_EMBED_MAX_TOKENS, workers: e.MNEME_EMBED_WORKERS, server: embedServer?.server ?? null },
    offline: e.MNEME_OFFLINE,
    threads: e.MNEME_THREADS ?? os.availableParallelism(),
    maxFileBytes: e.MNEME_MAX_FILE_BYTES,
    ingestNice: e.MNEME_INGEST_NICE,
    searchThread: e.MNEME_SEARCH_THREAD,
    ftsNative: e.MNEME_FTS_NATIVE,
    llm: {
      spec: e.MNEME_LLM,
      model: e.MNEME_LLM_MODEL,
      apiKey: e.MNEME_LLM_API_KEY,
      timeoutMs: e.MNEME_LLM_TIMEOUT_MS,
      maxTokens: e.MNEME_LLM_MAX_TOKENS,
      temperature: e.MNEME_LLM_TEMPERATURE,
      topP: e.MNEME_LLM_TOP_P,
      seed: e.MNEME_LLM_SEED,
      contextTokens: e.MNEME_LLM_CONTEXT_TOKENS,
    },
    server: {
      host: overrides.host ?? e.MNEME_HOST,
      port: overrides.port ?? e.MNEME_PORT,
      bodyLimitBytes: e.MNEME_BODY_LIMIT_BYTES,
      maxMessageChars: e.MNEME_MAX_MESSAGE_CHARS,
      rateLimitPerMin: e.MNEME_RATE_LIMIT_PER_MIN,
      queueMax: e.MNEME_QUEUE_MAX,
      answerConcurrency: e.MNEME_ANSWER_CONCURRENCY === 0 ? 2 * os.availableParallelism() : e.MNEME_ANSWER_CONCURRENCY,
      jsonMaxDepth: e.MNEME_JSON_MAX_DEPTH,
      authFailPerMin: e.MNEME_AUTH_FAIL_PER_MIN,
      shutdownGraceMs: Math.round(e.MNEME_SHUTDOWN_GRACE_S * 1000),
    },
    personalizationWeight: e.MNEME_PERSONALIZATION_WEIGHT,
    abstainMinCoverage: e.MNEME_ABSTAIN_MIN_COVERAGE,
    releaseGateMargin: e.MNEME_RELEASE_GATE_MARGIN,
    featuresIntervalSeconds: e.MNEME_FEATURES_INTERVAL_S,
    chromiumPath: e.MNEME_CHROMIUM_PATH,
    redis: e.MNEME_REDIS_URL ? { url: e.MNEME_REDIS_URL, prefix: e.MNEME_REDIS_PREFIX } : null,
  };
}

/** A model reference that looks like a path (./x, /x, ../x) becomes absolute; a hub id stays as is. */
function resolveModelRef(ref: string): string {
  return ref.startsWith('.') || ref.startsWith('/') ? path.resolve(ref) : ref;
}

/** True when the reference is a local directory rather than a hub id. */
export function isLocalModelRef(ref: string): boolean {
  return path.isAbsolute(ref);
}
