/**
 * Pure formatting of prediction-log rows into fine-tuning examples, and the zod schemas every written
 * line is checked against.
 *
 * SFT (OpenAI chat fine-tuning format): `{"messages": [...rendered prompt, {role: "assistant",
 * content: target}]}` where the target is the user's correction when there is one, else the logged
 * answer.
 *
 * Multi-turn: a conversation of N logged answers yields N examples, and each keeps its earlier turns
 * exactly as the model saw them, because `rendered_prompt_json` already holds them: the default
 * template (prompts/answer.md) renders them into the user message ("Conversation so far: User: …
 * Assistant: …", citation markers stripped, long turns cut, oldest dropped to fit the window), beside
 * the retrieved context and under the system message's personalization notes. The exporter never
 * rebuilds history from `messages`/`history_json` and never splices a later correction into an
 * earlier turn: the logged answer was conditioned on exactly that context, and training on a
 * different one would teach the model to answer prompts it was never given. A template that sends
 * earlier turns as separate chat messages gets them kept as messages, with `"weight": 0` on earlier
 * assistant turns (OpenAI's per-message training weight) so each logged answer is a training target
 * once, in its own example, and an answer the user corrected or rated down is never trained on
 * through a later turn's example. Trainers that ignore `weight` still see a faithful transcript.
 *
 * Preference (OpenAI DPO format): `{"input": {"messages": [...rendered prompt]}, "preferred_output":
 * [{role: "assistant", content}], "non_preferred_output": [{role: "assistant", content}]}` from
 * (a) a rated-down answer with a correction (correction ≻ answer) and (b) two answers to the same prompt
 * (identical rendered messages, see `promptHash`) whose current ratings differ (+1 ≻ -1; the +1 side
 * contributes its correction if it has one). Input messages carry no `weight` (DPO does not take it).
 *
 * Preference, TRL (`--preference-format trl`): the same pairs in TRL DPOTrainer's conversational
 * preference format with an explicit prompt: `{"prompt": [...rendered prompt messages], "chosen":
 * [{role: "assistant", content}], "rejected": [{role: "assistant", content}]}` (the trainer applies
 * the chat template to prompt + chosen and prompt + rejected).
 *
 * Every written line also carries `user`: the pseudonymous hash of the user whose conversation it
 * comes from (src/core/store/exports.ts: HMAC-SHA256 keyed per data dir, 32 hex digits), so a later
 * erasure can be propagated to exported files; preference lines add `preferred_user`, the user of the
 * preferred side (the same hash for a correction pair). Trainers that reject unknown keys: drop them.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { LoggedResponse } from '../core/store/exports.ts';
import { USER_HASH_HEX_DIGITS } from '../core/store/exports.ts';
import { normalizeText } from './dedupe.ts';
import type { DedupeTexts } from './dedupe.ts';

export type Role = 'system' | 'user' | 'assistant';
export interface ChatMessage {
  role: Role;
  content: string;
}
export interface SftMessage extends ChatMessage {
  /** 0 on earlier assistant turns (context only); absent on the trained turn. */
  weight?: 0;
}
export interface SftExample {
  messages: SftMessage[];
}
export interface AssistantOutput {
  role: 'assistant';
  content: string;
}
export interface PreferenceExample {
  input: { messages: ChatMessage[] };
  preferred_output: [AssistantOutput];
  non_preferred_output: [AssistantOutput];
}
/** A preference pair in TRL's conversational preference format (explicit prompt). */
export interface TrlPreferenceExample {
  prompt: ChatMessage[];
  chosen: [AssistantOutput];
  rejected: [AssistantOutput];
}
export type ExportFormat = 'sft' | 'preference';
export const EXPORT_FORMATS = ['sft', 'preference'] as const satisfies readonly ExportFormat[];
/** How preference pairs are written: OpenAI's DPO shape (default) or TRL's prompt/chosen/rejected. */
export type PreferenceFormat = 'openai' | 'trl';
export const PREFERENCE_FORMATS = ['openai', 'trl'] as const satisfies readonly PreferenceFormat[];
export const DEFAULT_PREFERENCE_FORMAT: PreferenceFormat = 'openai';

/** The same pair in TRL's conversational shape (messages copied, nothing else changes). */
export function toTrl(ex: PreferenceExample): TrlPreferenceExample {
  return {
    prompt: ex.input.messages.map((m) => ({ role: m.role, content: m.content })),
    chosen: [{ role: 'assistant', content: ex.preferred_output[0].content }],
    rejected: [{ role: 'assistant', content: ex.non_preferred_output[0].content }],
  };
}

/** One `responses` row joined with its current (latest) feedback: defined by the store. */
export type { LoggedResponse } from '../core/store/exports.ts';

export const MALFORMED_REASONS = [
  'rendered_prompt_not_json',
  'rendered_prompt_not_messages',
  'rendered_prompt_empty',
  'rendered_prompt_last_not_user',
] as const;
export type MalformedReason = (typeof MALFORMED_REASONS)[number];

export type Skip =
  | { kind: 'malformed'; reason: MalformedReason; detail: string }
  /** Neither a correction nor a non-blank answer (e.g. an errored response): nothing to train on. */
  | { kind: 'no_target' }
  /** A preference pair whose two sides normalize to the same text. */
  | { kind: 'same_output' };

export type FormatResult<T> = { ok: true; value: T } | { ok: false; skip: Skip };

/** Blank = null or only ASCII whitespace (the same test the SQL filters use). */
export function isBlank(s: string | null | undefined): boolean {
  return s == null || /^[ \t\r\n]*$/.test(s);
}

const renderedMessageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });
const renderedPromptSchema = z.array(renderedMessageSchema);

/**
 * Parses `rendered_prompt_json` into messages (role + content only; other keys are dropped).
 * A prompt must be a non-empty array of {role, content} ending with the user's turn.
 */
export function parseRenderedPrompt(json: string): FormatResult<ChatMessage[]> {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    return { ok: false, skip: { kind: 'malformed', reason: 'rendered_prompt_not_json', detail: (err as Error).message } };
  }
  const parsed = renderedPromptSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const detail = `${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`;
    return { ok: false, skip: { kind: 'malformed', reason: 'rendered_prompt_not_messages', detail } };
  }
  const messages = parsed.data.map((m) => ({ role: m.role, content: m.content }));
  const last = messages[messages.length - 1];
  if (!last) return { ok: false, skip: { kind: 'malformed', reason: 'rendered_prompt_empty', detail: 'no messages' } };
  if (last.role !== 'user') {
    return { ok: false, skip: { kind: 'malformed', reason: 'rendered_prompt_last_not_user', detail: `last message role is ${last.role}` } };
  }
  return { ok: true, value: messages };
}

/** Canonical text of a message list: two prompts are "the same prompt" when these are equal. */
export function promptKey(messages: readonly ChatMessage[]): string {
  return JSON.stringify(messages.map((m) => [m.role, m.content]));
}

/** sha256 (hex) of `promptKey`. */
export function promptHash(messages: readonly ChatMessage[]): string {
  return createHash('sha256').update(promptKey(messages)).digest('hex');
}

/**
 * `promptHash` of a raw `rendered_prompt_json`, or null when it is malformed. Registered as an SQL
 * function to group rated responses by prompt without loading them into memory.
 */
export function promptHashOfJson(json: string): string | null {
  const parsed = parseRenderedPrompt(json);
  return parsed.ok ? promptHash(parsed.value) : null;
}

/** The assistant turn to train on: the correction when given, else the answer; null when neither. */
export function targetOf(row: Pick<LoggedResponse, 'answer' | 'correction'>): { content: string; source: 'correction' | 'answer' } | null {
  if (!isBlank(row.correction)) return { content: row.correction as string, source: 'correction' };
  if (!isBlank(row.answer)) return { content: row.answer as string, source: 'answer' };
  return null;
}

/** One SFT example from one logged response (see the module comment for multi-turn). */
export function sftExample(row: LoggedResponse): FormatResult<SftExample> {
  const prompt = parseRenderedPrompt(row.renderedPromptJson);
  if (!prompt.ok) return prompt;
  const target = targetOf(row);
  if (!target) return { ok: false, skip: { kind: 'no_target' } };
  const messages: SftMessage[] = prompt.value.map((m) => (m.role === 'assistant' ? { role: m.role, content: m.content, weight: 0 } : { role: m.role, content: m.content }));
  messages.push({ role: 'assistant', content: target.content });
  return { ok: true, value: { messages } };
}

function pair(messages: ChatMessage[], preferred: string, nonPreferred: string): FormatResult<PreferenceExample> {
  if (normalizeText(preferred) === normalizeText(nonPreferred)) return { ok: false, skip: { kind: 'same_output' } };
  return {
    ok: true,
    value: {
      input: { messages: messages.map((m) => ({ role: m.role, content: m.content })) },
      preferred_output: [{ role: 'assistant', content: preferred }],
      non_preferred_output: [{ role: 'assistant', content: nonPreferred }],
    },
  };
}

/**
 * correction ≻ answer, for a response whose current rating is -1 and that has both a correction and a
 * non-blank answer; otherwise `no_target`.
 */
export function correctionPair(row: LoggedResponse, prompt: ChatMessage[]): FormatResult<PreferenceExample> {
  if (row.rating !== -1 || isBlank(row.correction) || isBlank(row.answer)) return { ok: false, skip: { kind: 'no_target' } };
  return pair(prompt, row.correction as string, row.answer as string);
}

/**
 * up ≻ down for two responses to the same prompt rated +1 and -1. The preferred side is the +1
 * response's target (its correction if any); the other is the -1 response's answer as logged.
 */
export function ratingPair(down: LoggedResponse, prompt: ChatMessage[], up: Pick<LoggedResponse, 'answer' | 'correction'>): FormatResult<PreferenceExample> {
  const preferred = targetOf(up);
  if (!preferred || isBlank(down.answer)) return { ok: false, skip: { kind: 'no_target' } };
  return pair(prompt, preferred.content, down.answer as string);
}

/**
 * Texts the deduplicator compares. `exact`: every message (role and content), so only a true repeat
 * (same context, same target) is an exact duplicate. `near`: the user's own words and the target(s),
 * without the retrieved context — different questions over the same retrieved chunks are not
 * near-duplicates, the same question answered the same way is.
 */
export function sftDedupeTexts(example: SftExample, query: string): DedupeTexts {
  const target = example.messages[example.messages.length - 1]?.content ?? '';
  return { exact: messageParts(example.messages), near: [query, target] };
}

export function preferenceDedupeTexts(example: PreferenceExample, query: string): DedupeTexts {
  const p = example.preferred_output[0].content;
  const n = example.non_preferred_output[0].content;
  return { exact: [...messageParts(example.input.messages), '\u0001', p, n], near: [query, p, n] };
}

function messageParts(messages: readonly ChatMessage[]): string[] {
  const parts: string[] = [];
  for (const m of messages) parts.push(m.role, m.content);
  return parts;
}

// ---- Output schemas: every written line is validated against these before it is written. ----

const nonBlank = z.string().refine((s) => !isBlank(s), { message: 'must not be blank' });

export const ChatMessageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }).strict();

export const SftMessageSchema = z
  .object({ role: z.enum(['system', 'user', 'assistant']), content: z.string(), weight: z.literal(0).optional() })
  .strict()
  .refine((m) => m.weight === undefined || m.role === 'assistant', { message: 'weight is only allowed on assistant messages' });

export const SftExampleSchema = z
  .object({ messages: z.array(SftMessageSchema).min(2) })
  .strict()
  .superRefine((ex, ctx) => {
    const last = ex.messages[ex.messages.length - 1];
    if (!last || last.role !== 'assistant' || isBlank(last.content) || last.weight !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'the last message must be a trained (unweighted), non-blank assistant turn' });
    }
    if (ex.messages[ex.messages.length - 2]?.role !== 'user') {
      ctx.addIssue({ code: 'custom', message: 'the trained assistant turn must follow a user turn' });
    }
  });

export const AssistantOutputSchema = z.object({ role: z.literal('assistant'), content: nonBlank }).strict();

export const PreferenceExampleSchema = z
  .object({
    input: z
      .object({ messages: z.array(ChatMessageSchema).min(1) })
      .strict()
      .refine((i) => i.messages[i.messages.length - 1]?.role === 'user', { message: 'input must end with a user turn' }),
    preferred_output: z.array(AssistantOutputSchema).length(1),
    non_preferred_output: z.array(AssistantOutputSchema).length(1),
  })
  .strict()
  .refine((ex) => ex.preferred_output[0]?.content !== ex.non_preferred_output[0]?.content, { message: 'preferred and non-preferred outputs are identical' });

export const TrlPreferenceExampleSchema = z
  .object({
    prompt: z
      .array(ChatMessageSchema)
      .min(1)
      .refine((p) => p[p.length - 1]?.role === 'user', { message: 'prompt must end with a user turn' }),
    chosen: z.array(AssistantOutputSchema).length(1),
    rejected: z.array(AssistantOutputSchema).length(1),
  })
  .strict()
  .refine((ex) => ex.chosen[0]?.content !== ex.rejected[0]?.content, { message: 'chosen and rejected are identical' });

export const EXAMPLE_SCHEMAS = { sft: SftExampleSchema, preference: PreferenceExampleSchema, trl: TrlPreferenceExampleSchema } as const;

/** A user hash as written in `user` / `preferred_user`. */
export const UserHashSchema = z.string().regex(new RegExp(`^[0-9a-f]{${USER_HASH_HEX_DIGITS}}$`));

/** A written SFT line: the example and its user hash. */
export type SftLine = SftExample & { user: string };
/** A written preference line: the example, the user hash of its input and rejected side, and of its preferred side. */
export type PreferenceLine = PreferenceExample & { user: string; preferred_user: string };
/** A written TRL preference line: the pair and the same two user hashes. */
export type TrlPreferenceLine = TrlPreferenceExample & { user: string; preferred_user: string };
