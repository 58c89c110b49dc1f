import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/core/errors.ts';
import { splitTranscript } from '../../../src/chat/http/routes/completions.ts';

describe('splitTranscript (OpenAI messages → question + history)', () => {
  it('takes the last user message as the question and earlier user/assistant turns as history', () => {
    const r = splitTranscript([
      { role: 'system', content: 'be terse' },
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'answer one' },
      { role: 'tool', content: 'tool output' },
      { role: 'user', content: [{ type: 'text', text: 'second' }, { type: 'image_url' }, { type: 'text', text: 'part' }] },
    ]);
    expect(r).toEqual({
      question: 'second\npart',
      history: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'answer one' },
      ],
    });
  });

  it('keeps only the last maxHistory turns', () => {
    const msgs = Array.from({ length: 9 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `m${i}` }) as const);
    const r = splitTranscript([...msgs, { role: 'user', content: 'q' }] as never, 4);
    expect(r.history.map((m) => m.content)).toEqual(['m5', 'm6', 'm7', 'm8']);
  });

  it('rejects a transcript that does not end with a non-empty user message', () => {
    expect(() => splitTranscript([{ role: 'assistant', content: 'hi' }])).toThrow(ValidationError);
    expect(() => splitTranscript([{ role: 'user', content: '  ' }])).toThrow(/must not be empty/);
    expect(() => splitTranscript([{ role: 'user', content: null }])).toThrow(ValidationError);
  });
});
