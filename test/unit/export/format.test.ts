import { describe, expect, it } from 'vitest';
import {
  PreferenceExampleSchema,
  SftExampleSchema,
  correctionPair,
  parseRenderedPrompt,
  preferenceDedupeTexts,
  promptHash,
  promptHashOfJson,
  ratingPair,
  sftDedupeTexts,
  sftExample,
  targetOf,
} from '../../../src/export/format.ts';
import type { ChatMessage, LoggedResponse } from '../../../src/export/format.ts';

const SYSTEM = { role: 'system', content: 'Answer from the sources; cite like [1].' } as const;
const FIRST_USER = { role: 'user', content: 'Sources:\n[1] Halcyon X3 manual > Reset\nHold the button ten seconds.\n\nQuestion: How do I reset it?' } as const;

function row(over: Partial<LoggedResponse> = {}): LoggedResponse {
  return {
    seq: 7,
    id: 'resp_7',
    userId: 1,
    userCreatedAt: '2025-03-01T08:00:00.000Z',
    conversationId: 'conv_a',
    turnIndex: 0,
    createdAt: '2025-03-01T09:00:00.000Z',
    status: 'ok',
    collection: 'manuals',
    promptName: 'answer',
    promptSha256: 'a'.repeat(64),
    renderedPromptJson: JSON.stringify([SYSTEM, FIRST_USER]),
    modelBackend: 'extractive',
    modelId: 'extractive-v1',
    query: 'How do I reset it?',
    answer: 'Hold the recessed button for ten seconds [1].',
    rating: null,
    correction: null,
    ...over,
  };
}

describe('parseRenderedPrompt', () => {
  it('keeps role and content of each message, in order', () => {
    const r = parseRenderedPrompt(JSON.stringify([{ ...SYSTEM, name: 'sys' }, FIRST_USER]));
    expect(r).toEqual({ ok: true, value: [SYSTEM, FIRST_USER] });
  });

  it.each([
    ['{not json', 'rendered_prompt_not_json'],
    ['{"role":"user","content":"x"}', 'rendered_prompt_not_messages'],
    ['[{"role":"tool","content":"x"}]', 'rendered_prompt_not_messages'],
    ['[{"role":"user","content":42}]', 'rendered_prompt_not_messages'],
    ['[]', 'rendered_prompt_empty'],
    ['[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]', 'rendered_prompt_last_not_user'],
  ])('rejects %s as %s', (json, reason) => {
    const r = parseRenderedPrompt(json);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.skip).toMatchObject({ kind: 'malformed', reason });
  });
});

describe('sftExample', () => {
  it('appends the answer as the trained assistant turn after the exact rendered prompt', () => {
    const r = sftExample(row());
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.messages).toEqual([SYSTEM, FIRST_USER, { role: 'assistant', content: 'Hold the recessed button for ten seconds [1].' }]);
    expect(SftExampleSchema.safeParse(r.value).success).toBe(true);
  });

  it('uses the correction instead of the answer when there is one', () => {
    const r = sftExample(row({ rating: -1, correction: 'Hold it for twelve seconds [1].' }));
    expect(r.ok && r.value.messages.at(-1)).toEqual({ role: 'assistant', content: 'Hold it for twelve seconds [1].' });
    // A blank correction is no correction.
    const blank = sftExample(row({ rating: -1, correction: ' \n ' }));
    expect(blank.ok && blank.value.messages.at(-1)?.content).toBe('Hold the recessed button for ten seconds [1].');
  });

  it('keeps earlier turns as the model saw them, with weight 0 on earlier assistant turns', () => {
    const rendered = [SYSTEM, { role: 'user', content: 'How do I reset it?' }, { role: 'assistant', content: 'Hold the button.' }, { role: 'user', content: 'Sources: ...\n\nQuestion: And E-417?' }];
    const r = sftExample(row({ renderedPromptJson: JSON.stringify(rendered), turnIndex: 1, answer: 'Coolant pressure [1].' }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.messages).toEqual([
      SYSTEM,
      { role: 'user', content: 'How do I reset it?' },
      { role: 'assistant', content: 'Hold the button.', weight: 0 },
      { role: 'user', content: 'Sources: ...\n\nQuestion: And E-417?' },
      { role: 'assistant', content: 'Coolant pressure [1].' },
    ]);
    expect(SftExampleSchema.safeParse(r.value).success).toBe(true);
  });

  it('has no target without an answer or correction', () => {
    expect(sftExample(row({ status: 'error', answer: null }))).toEqual({ ok: false, skip: { kind: 'no_target' } });
    expect(sftExample(row({ answer: '   ' }))).toEqual({ ok: false, skip: { kind: 'no_target' } });
    expect(targetOf({ answer: null, correction: 'fixed' })).toEqual({ content: 'fixed', source: 'correction' });
  });
});

describe('preference pairs', () => {
  const prompt: ChatMessage[] = [SYSTEM, FIRST_USER];

  it('correction ≻ answer for a rated-down answer with a correction', () => {
    const r = correctionPair(row({ rating: -1, correction: 'Hold it twelve seconds [1].' }), prompt);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toEqual({
      input: { messages: prompt },
      preferred_output: [{ role: 'assistant', content: 'Hold it twelve seconds [1].' }],
      non_preferred_output: [{ role: 'assistant', content: 'Hold the recessed button for ten seconds [1].' }],
    });
    expect(PreferenceExampleSchema.safeParse(r.value).success).toBe(true);
  });

  it('needs a -1 rating, a correction and an answer', () => {
    expect(correctionPair(row({ rating: 1, correction: 'x' }), prompt).ok).toBe(false);
    expect(correctionPair(row({ rating: -1 }), prompt).ok).toBe(false);
    expect(correctionPair(row({ rating: -1, correction: 'x', answer: null }), prompt).ok).toBe(false);
  });

  it('skips a pair whose sides are the same text after normalization', () => {
    const r = correctionPair(row({ rating: -1, answer: 'Hold  it.', correction: 'hold it.' }), prompt);
    expect(r).toEqual({ ok: false, skip: { kind: 'same_output' } });
  });

  it('up ≻ down for two answers to the same prompt, the up side contributing its correction if any', () => {
    const down = row({ rating: -1, answer: 'No idea.' });
    const r = ratingPair(down, prompt, { answer: 'Hold ten seconds [1].', correction: null });
    expect(r.ok && [r.value.preferred_output[0].content, r.value.non_preferred_output[0].content]).toEqual(['Hold ten seconds [1].', 'No idea.']);
    const r2 = ratingPair(down, prompt, { answer: 'Hold ten seconds [1].', correction: 'Hold ten seconds, then release [1].' });
    expect(r2.ok && r2.value.preferred_output[0].content).toBe('Hold ten seconds, then release [1].');
  });
});

describe('prompt hashing', () => {
  it('identifies prompts by their messages, not their JSON spelling', () => {
    const a = JSON.stringify([SYSTEM, FIRST_USER]);
    const b = JSON.stringify([{ content: SYSTEM.content, role: 'system' }, { content: FIRST_USER.content, role: 'user', extra: 1 }], null, 2);
    expect(promptHashOfJson(a)).toBe(promptHashOfJson(b));
    expect(promptHashOfJson(a)).toBe(promptHash([SYSTEM, FIRST_USER]));
    expect(promptHashOfJson(JSON.stringify([SYSTEM, { role: 'user', content: 'other' }]))).not.toBe(promptHashOfJson(a));
    expect(promptHashOfJson('nope')).toBeNull();
  });
});

describe('output schemas', () => {
  it('reject what a fine-tuning job would reject', () => {
    const ok = { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] };
    expect(SftExampleSchema.safeParse(ok).success).toBe(true);
    expect(SftExampleSchema.safeParse({ ...ok, extra: 1 }).success).toBe(false);
    expect(SftExampleSchema.safeParse({ messages: [{ role: 'user', content: 'q' }] }).success).toBe(false);
    expect(SftExampleSchema.safeParse({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: ' ' }] }).success).toBe(false);
    expect(SftExampleSchema.safeParse({ messages: [{ role: 'user', content: 'q', weight: 0 }, { role: 'assistant', content: 'a' }] }).success).toBe(false);
    expect(SftExampleSchema.safeParse({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a', weight: 0 }] }).success).toBe(false);
    const pref = { input: { messages: [{ role: 'user', content: 'q' }] }, preferred_output: [{ role: 'assistant', content: 'a' }], non_preferred_output: [{ role: 'assistant', content: 'b' }] };
    expect(PreferenceExampleSchema.safeParse(pref).success).toBe(true);
    expect(PreferenceExampleSchema.safeParse({ ...pref, non_preferred_output: [{ role: 'assistant', content: 'a' }] }).success).toBe(false);
    expect(PreferenceExampleSchema.safeParse({ ...pref, input: { messages: [{ role: 'assistant', content: 'x' }] } }).success).toBe(false);
  });
});

describe('dedupe texts', () => {
  it('compare the question and target, not the retrieved context, for near-duplicates', () => {
    const a = sftExample(row());
    const b = sftExample(row({ renderedPromptJson: JSON.stringify([SYSTEM, { role: 'user', content: 'Sources: other\n\nQuestion: How do I reset it?' }]) }));
    if (!a.ok || !b.ok) throw new Error('setup');
    const ta = sftDedupeTexts(a.value, 'How do I reset it?');
    const tb = sftDedupeTexts(b.value, 'How do I reset it?');
    expect(ta.exact).not.toEqual(tb.exact);
    expect(ta.near).toEqual(tb.near);
    const p = correctionPair(row({ rating: -1, correction: 'c' }), [SYSTEM, FIRST_USER]);
    if (!p.ok) throw new Error('setup');
    expect(preferenceDedupeTexts(p.value, 'q').near).toEqual(['q', 'c', 'Hold the recessed button for ten seconds [1].']);
  });
});
