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
  MNEME_MODELS_DIR: z.string().min(1).optional(),
  /** Hub id, local model directory, or "none" to run BM25-only on purpose. */
  MNEME_EMBED_MODEL: z.string().min(1).default(DEFAULT_EMBED_MODEL),
  MNEME_EMBED_DTYPE: z.enum(['fp32', 'fp16', 'q8', 'int8', 'uint8', 'q4', 'bnb4', 'q4f16']).default('fp32'),
  MNEME_EMBED_MAX_TOKENS: intIn(8, 8192).optional(),
  /** Embedding worker threads, each with its own copy of the model (default: one per core, at most 4). */
  MNEME_EMBED_WORKERS: intIn(1, 64).optional(),
  MNEME_OFFLINE: bool.default(false),
  MNEME_THREADS: intIn(1, 256).optional(),
  MNEME_MAX_FILE_BYTES: intIn(1, 2 ** 40).default(DEFAULT_MAX_FILE_BYTES),
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
  MNEME_JSON_MAX_DEPTH: intIn(2, 10_000).default(64),
  MNEME_AUTH_FAIL_PER_MIN: intIn(0, 1_000_000).default(20),
  MNEME_SHUTDOWN_GRACE_S: numIn(0, 3600).default(10),
  MNEME_PERSONALIZATION_WEIGHT: numIn(0, 10).default(0.3),
  MNEME_FEATURES_INTERVAL_S: intIn(0, 86_400).default(60),
  MNEME_CHROMIUM_PATH: z.string().min(1).default('/usr/bin/chromium'),
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  dataDir: string;
  /** Where hub models are cached (default `<dataDir>/models`). */
  modelsDir: string;
  dbFile: string;
  indexDir: string;
  embed: {
    /** Hub id or absolute local directory; null = embeddings disabled on purpose. */
    model: string | null;
    dtype: string;
    /** Override of the model's trained length, in tokens. */
    maxTokens: number | undefined;
    /** Embedding workers; undefined = embedWorkerLayout(threads). */
    workers: number | undefined;
  };
  offline: boolean;
  /** Real core count used for onnxruntime and llama.cpp threads. */
  threads: number;
  maxFileBytes: number;
  /** Nice value (0 = unchanged) of ingestion processes; default 10. */
  ingestNice: number;
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
    /** Deepest nesting of arrays/objects accepted in a JSON body, in levels (400 beyond). */
    jsonMaxDepth: number;
    /** Failed authentications (401) allowed per client IP per minute before 429; 0 = unlimited. */
    authFailPerMin: number;
    /** How long `serve` lets running answers finish after SIGTERM/SIGINT, in ms. */
    shutdownGraceMs: number;
  };
  personalizationWeight: number;
  featuresIntervalSeconds: number;
  chromiumPath: string;
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
  const embedModel = e.MNEME_EMBED_MODEL === 'none' ? null : resolveModelRef(e.MNEME_EMBED_MODEL);
  return {
    dataDir,
    modelsDir: path.resolve(e.MNEME_MODELS_DIR ?? path.join(dataDir, 'models')),
    dbFile: path.join(dataDir, 'mneme.sqlite'),
    indexDir: path.join(dataDir, 'index'),
    embed: { model: embedModel, dtype: e.MNEME_EMBED_DTYPE, maxTokens: e.MNEME_EMBED_MAX_TOKENS, workers: e.MNEME_EMBED_WORKERS },
    offline: e.MNEME_OFFLINE,
    threads: e.MNEME_THREADS ?? os.availableParallelism(),
    maxFileBytes: e.MNEME_MAX_FILE_BYTES,
    ingestNice: e.MNEME_INGEST_NICE,
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
      jsonMaxDepth: e.MNEME_JSON_MAX_DEPTH,
      authFailPerMin: e.MNEME_AUTH_FAIL_PER_MIN,
      shutdownGraceMs: Math.round(e.MNEME_SHUTDOWN_GRACE_S * 1000),
    },
    personalizationWeight: e.MNEME_PERSONALIZATION_WEIGHT,
    featuresIntervalSeconds: e.MNEME_FEATURES_INTERVAL_S,
    chromiumPath: e.MNEME_CHROMIUM_PATH,
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
