import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/core/errors.ts';
import { ON_DEMAND_FEATURES, countQuestionTokens, countWords } from '../../../src/features/definitions.ts';
import { FOLLOW_UP_WINDOW_SECONDS, computeOnDemandFeatures } from '../../../src/features/on-demand.ts';

const now = new Date('2025-05-01T12:00:00.000Z');
const words = (t: string) => t.split(/\s+/).filter(Boolean).length;

describe('computeOnDemandFeatures', () => {
  it('computes turn index, age of the previous message, question tokens and follow-up', () => {
    const f = computeOnDemandFeatures({ message: 'and what about the E-417 code?', turnIndex: 2, previousMessageAt: '2025-05-01T11:59:30.500Z', now, countTokens: words });
    expect(f).toEqual({ turn_index: 2, seconds_since_previous_message: 29.5, question_tokens: 6, is_follow_up: 1 });
    expect(Object.keys(f).sort()).toEqual(ON_DEMAND_FEATURES.map((d) => d.name).sort());
  });

  it('the first message has no previous one and is not a follow-up; an old previous message is not either', () => {
    expect(computeOnDemandFeatures({ message: 'hi', turnIndex: 0, previousMessageAt: null, now, countTokens: words })).toEqual({
      turn_index: 0,
      seconds_since_previous_message: null,
      question_tokens: 1,
      is_follow_up: 0,
    });
    const old = new Date(now.getTime() - (FOLLOW_UP_WINDOW_SECONDS + 1) * 1000).toISOString();
    expect(computeOnDemandFeatures({ message: 'again', turnIndex: 3, previousMessageAt: old, now, countTokens: words }).is_follow_up).toBe(0);
    const edge = new Date(now.getTime() - FOLLOW_UP_WINDOW_SECONDS * 1000).toISOString();
    expect(computeOnDemandFeatures({ message: 'again', turnIndex: 3, previousMessageAt: edge, now, countTokens: words }).is_follow_up).toBe(1);
    // Turn 0 of a new conversation, even right after another one, is not a follow-up.
    expect(computeOnDemandFeatures({ message: 'new topic', turnIndex: 0, previousMessageAt: now.toISOString(), now, countTokens: words }).is_follow_up).toBe(0);
  });

  it('never reports a negative age (clock skew) and validates its input', () => {
    const future = new Date(now.getTime() + 5000).toISOString();
    expect(computeOnDemandFeatures({ message: 'x', turnIndex: 1, previousMessageAt: future, now, countTokens: words }).seconds_since_previous_message).toBe(0);
    expect(() => computeOnDemandFeatures({ message: 'x', turnIndex: -1, previousMessageAt: null, now, countTokens: words })).toThrow(ValidationError);
    expect(() => computeOnDemandFeatures({ message: 'x', turnIndex: 0.5, previousMessageAt: null, now, countTokens: words })).toThrow(ValidationError);
    expect(() => computeOnDemandFeatures({ message: 'x', turnIndex: 1, previousMessageAt: 'soon', now, countTokens: words })).toThrow(ValidationError);
    expect(() => computeOnDemandFeatures({ message: 'x', turnIndex: 1, previousMessageAt: null, now: new Date(Number.NaN), countTokens: words })).toThrow(ValidationError);
    expect(() => computeOnDemandFeatures({ message: 'x', turnIndex: 1, previousMessageAt: null, now, countTokens: () => -2 })).toThrow(ValidationError);
  });
});

describe('token and word counts used by the pipeline', () => {
  it('counts word runs and punctuation, independent of any model', () => {
    expect(countQuestionTokens('How do I reset the Halcyon X3?')).toBe(8);
    expect(countQuestionTokens('')).toBe(0);
    expect(countQuestionTokens('naïve café, 42!')).toBe(5);
  });

  it('counts answer words without citation markers', () => {
    expect(countWords('The filter lasts six months [2]. Replace it [1][3], see [2, 4] and [5-6].')).toBe(9);
    expect(countWords('one - two')).toBe(2);
    expect(countWords(null)).toBe(0);
  });
});
