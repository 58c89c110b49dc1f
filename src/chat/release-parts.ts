/**
 * Release parts (issue 15): what a release bundles, built from the current configuration or from
 * another release, changed by `--prompt FILE`, `--llm SPEC` and `--set key=value`, checked before
 * it is stored (a release whose parts are missing is refused with the reason), compared (`diff`),
 * and turned back into what answering needs (a Config for the chat model and sampling, the prompt
 * template, the retrieval settings).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Config } from '../core/config.ts';
import { ConfigError, ValidationError } from '../core/errors.ts';
import type { PromptTemplate } from '../core/prompts.ts';
import { parsePromptTemplate, renderPrompt } from '../core/prompts.ts';
import type { ReleaseParts } from '../core/store/releases.ts';
import { DEFAULT_TOP_K } from './answer.ts';
import { MAX_TOP_K, RRF_K } from './retrieve.ts';

/** The name of the release created from the configuration on the first start without one. */
export const INITIAL_RELEASE = 'initial';
/** Who created the initial release (audit rows). */
export const SYSTEM_ACTOR = 'system';
/** Release names: what may appear in URLs and file names. */
export const RELEASE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Variables answer.ts passes when it renders the prompt: a release's template must declare them all. */
export const ANSWER_PROMPT_VARIABLES = ['question', 'context', 'personalization', 'history'] as const;

export const releaseNameSchema = z.string().regex(RELEASE_NAME, 'letters, digits, "_", "-", "." (1-64 characters, starting with a letter or digit)');

/** Validates parts as stored (every field, with its range). */
export const releasePartsSchema = z
  .object({
    prompt: z.object({ name: z.string().min(1), version: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), text: z.string().min(1) }).strict(),
    llm: z
      .object({
        spec: z.string().regex(/^(extractive|gguf:.+|transformers:.+|openai:https?:\/\/.+)$/, 'expected extractive, gguf:PATH, transformers:ID_OR_DIR or openai:BASE_URL'),
        model: z.string().min(1).nullable(),
        max_tokens: z.number().int().min(1).max(32_768),
        temperature: z.number().min(0).max(2),
        top_p: z.number().min(0).max(1),
        seed: z.number().int().min(0).max(2 ** 31 - 1),
        context_tokens: z.number().int().min(256).max(1_048_576),
      })
      .strict(),
    embedding: z.object({ model: z.string().min(1).nullable(), generation: z.number().int().min(1).nullable() }).strict(),
    retrieval: z
      .object({
        mode: z.enum(['hybrid', 'bm25', 'dense']),
        top_k: z.number().int().min(1).max(MAX_TOP_K),
        rrf_k: z.number().min(0).max(10_000),
        bm25_weight: z.number().min(0).max(100),
        dense_weight: z.number().min(0).max(100),
      })
      .strict(),
    personalization: z.object({ weight: z.number().min(0).max(10) }).strict(),
  })
  .strict();

/** What the parts of the current configuration need besides the Config. */
export interface CurrentSources {
  /** The 'answer' template file's text and path. */
  promptText: string;
  promptFile: string;
  /** The active index generation (null: BM25 only). */
  embedding: { model: string | null; generation: number | null };
}

/** The parts the configuration describes (MNEME_LLM_*, MNEME_PERSONALIZATION_WEIGHT, prompts/answer.md, the active index). */
export function partsFromConfig(config: Config, src: CurrentSources): ReleaseParts {
  const prompt = parsePromptTemplate(src.promptText, src.promptFile);
  return {
    prompt: { name: prompt.name, version: prompt.version, sha256: prompt.sha256, text: src.promptText },
    llm: {
      spec: config.llm.spec,
      model: config.llm.model ?? null,
      max_tokens: config.llm.maxTokens,
      temperature: config.llm.temperature,
      top_p: config.llm.topP,
      seed: config.llm.seed,
      context_tokens: config.llm.contextTokens,
    },
    embedding: { model: src.embedding.model, generation: src.embedding.generation },
    retrieval: { mode: 'hybrid', top_k: DEFAULT_TOP_K, rrf_k: RRF_K, bm25_weight: 1, dense_weight: 1 },
    personalization: { weight: config.personalizationWeight },
  };
}

/**
 * Replaces the prompt with the template in `file` (its text is stored in the release).
 * @throws ValidationError when the file is missing or unreadable (the reason says which); ConfigError
 * when it is not a valid template.
 */
export function withPromptFile(parts: ReleaseParts, file: string): ReleaseParts {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ValidationError(`prompt file ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const t = parsePromptTemplate(text, path.resolve(file));
  return { ...parts, prompt: { name: t.name, version: t.version, sha256: t.sha256, text } };
}

/** Dotted keys `--set` accepts, with how the value is parsed. */
const SETTABLE: Record<string, (v: string) => unknown> = {
  'llm.model': (v) => (v === '' || v === 'null' ? null : v),
  'llm.max_tokens': Number,
  'llm.temperature': Number,
  'llm.top_p': Number,
  'llm.seed': Number,
  'llm.context_tokens': Number,
  'retrieval.mode': (v) => v,
  'retrieval.top_k': Number,
  'retrieval.rrf_k': Number,
  'retrieval.bm25_weight': Number,
  'retrieval.dense_weight': Number,
  'personalization.weight': Number,
};
export const SETTABLE_KEYS = Object.keys(SETTABLE);

/**
 * Applies `key=value` settings (keys: SETTABLE_KEYS) to a copy of `parts`. Pure.
 * @throws ValidationError for a malformed pair, an unknown key or a value out of range.
 */
export function applySettings(parts: ReleaseParts, settings: readonly string[]): ReleaseParts {
  const out = structuredClone(parts) as unknown as Record<string, Record<string, unknown>>;
  for (const s of settings) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new ValidationError(`--set ${JSON.stringify(s)}: expected key=value`);
    const key = s.slice(0, eq).trim();
    const parse = SETTABLE[key];
    if (!parse) throw new ValidationError(`--set ${key}: unknown key (one of ${SETTABLE_KEYS.join(', ')})`);
    const [group, field] = key.split('.') as [string, string];
    out[group]![field] = parse(s.slice(eq + 1).trim());
  }
  return checkParts(out as unknown as ReleaseParts);
}

/** @throws ValidationError naming the first invalid field. */
export function checkParts(parts: ReleaseParts): ReleaseParts {
  const r = releasePartsSchema.safeParse(parts);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ValidationError(`release parts: ${issue?.path.join('.') ?? '?'}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data as ReleaseParts;
}

/** sha256 (hex) of the parts' canonical JSON (keys sorted): equal parts, equal hash. Pure. */
export function partsSha256(parts: ReleaseParts): string {
  return createHash('sha256').update(canonicalJson(parts)).digest('hex');
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The template a release answers with (parsed from its stored text). @throws ConfigError when the text is not a valid template. */
export function releasePrompt(parts: ReleaseParts): PromptTemplate {
  return parsePromptTemplate(parts.prompt.text, `${parts.prompt.name}.md`);
}

/** `config` with the release's chat model, sampling and personalization weight. Pure. */
export function releaseConfig(config: Config, parts: ReleaseParts): Config {
  return {
    ...config,
    llm: {
      ...config.llm,
      spec: parts.llm.spec,
      model: parts.llm.model ?? undefined,
      maxTokens: parts.llm.max_tokens,
      temperature: parts.llm.temperature,
      topP: parts.llm.top_p,
      seed: parts.llm.seed,
      contextTokens: parts.llm.context_tokens,
    },
    personalizationWeight: parts.personalization.weight,
  };
}

/** The key a chat model is cached under: two releases with the same key share one loaded model. */
export function modelKey(parts: ReleaseParts): string {
  return JSON.stringify([parts.llm.spec, parts.llm.model, parts.llm.context_tokens]);
}

/** modelKey of the model the configuration describes (the one `serve` loads at start). */
export function configModelKey(config: Config): string {
  return JSON.stringify([config.llm.spec, config.llm.model ?? null, config.llm.contextTokens]);
}

/**
 * Why a release's parts cannot serve, or null when every part is present: the prompt renders with
 * the variables answers pass, the chat model's file/directory exists (a hub id must be cached when
 * offline; an openai: spec needs a model name), the embedding model is the active index's.
 */
export function missingParts(parts: ReleaseParts, ctx: { config: Config; activeEmbedding: { model: string | null; generation: number | null } }): string | null {
  let prompt: PromptTemplate;
  try {
    prompt = releasePrompt(parts);
  } catch (err) {
    return (err as ConfigError).message;
  }
  const undeclared = ANSWER_PROMPT_VARIABLES.filter((v) => !prompt.variables.includes(v));
  if (undeclared.length > 0) return `prompt template ${prompt.name} does not declare ${undeclared.join(', ')} (answers pass ${ANSWER_PROMPT_VARIABLES.join(', ')}; mark unused ones optional with "?")`;
  try {
    renderPrompt(prompt, { question: 'q', context: 'c', personalization: '', history: '' });
  } catch (err) {
    return `prompt template ${prompt.name} does not render: ${(err as Error).message}`;
  }
  const llm = missingModel(parts, ctx.config);
  if (llm) return llm;
  const active = ctx.activeEmbedding.model;
  if (parts.embedding.model !== active) {
    return `embedding model ${parts.embedding.model ?? 'none'} is not the active index's (${active ?? 'none: BM25 only'}); run \`mneme reindex --model\` first, or create the release from the current index`;
  }
  return null;
}

function missingModel(parts: ReleaseParts, config: Config): string | null {
  const spec = parts.llm.spec;
  const colon = spec.indexOf(':');
  const kind = colon === -1 ? spec : spec.slice(0, colon);
  const target = colon === -1 ? '' : spec.slice(colon + 1);
  if (kind === 'gguf' && !fs.existsSync(path.resolve(target))) return `chat model file ${target} does not exist`;
  if (kind === 'transformers') {
    const local = target.startsWith('.') || target.startsWith('/');
    const dir = local ? path.resolve(target) : path.join(config.modelsDir, ...target.split('/'));
    if ((local || config.offline) && !fs.existsSync(dir)) return `chat model ${target} is not present (${dir} does not exist${local ? '' : '; MNEME_OFFLINE forbids a download'})`;
  }
  if (kind === 'openai' && !parts.llm.model) return 'an openai: chat model needs a model name (--set llm.model=NAME)';
  return null;
}

export interface PartsDifference {
  key: string;
  a: unknown;
  b: unknown;
}

/** Every leaf that differs between two releases' parts (the prompt text by its hash). Pure. */
export function diffParts(a: ReleaseParts, b: ReleaseParts): PartsDifference[] {
  const flat = (p: ReleaseParts): Map<string, unknown> => {
    const m = new Map<string, unknown>();
    for (const [group, fields] of Object.entries(p)) {
      for (const [k, v] of Object.entries(fields as Record<string, unknown>)) if (!(group === 'prompt' && k === 'text')) m.set(`${group}.${k}`, v);
    }
    return m;
  };
  const fa = flat(a);
  const fb = flat(b);
  const keys = [...new Set([...fa.keys(), ...fb.keys()])];
  return keys.filter((k) => JSON.stringify(fa.get(k)) !== JSON.stringify(fb.get(k))).map((k) => ({ key: k, a: fa.get(k) ?? null, b: fb.get(k) ?? null }));
}
