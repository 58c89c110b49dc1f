/** Follow-up questions keep the thread (issue 13, item 4): the retrieval query of a follow-up. */
import { describe, expect, it } from 'vitest';
import { FOLLOW_UP_CONTEXT_TERMS, isFollowUp, retrievalQuery } from '../../../src/chat/follow-up.ts';
import { keyTerms, stemWord } from '../../../src/features/personalize.ts';

const user = (content: string) => ({ role: 'user' as const, content });
const assistant = (content: string) => ({ role: 'assistant' as const, content });

describe('key terms', () => {
  it('keeps topic words, stemmed, and drops question and function words', () => {
    expect(keyTerms('How do I create one?')).toEqual(['create']);
    expect(keyTerms('What is a BRIN index?')).toEqual(['brin', 'index']);
    expect(keyTerms('What is the default value of work_mem?')).toEqual(['default', 'value', 'work_mem']);
    expect(keyTerms('indexes policies classes created')).toEqual(['index', 'policy', 'class', 'creat']);
    expect(stemWord('class')).toBe('class');
    expect(keyTerms('a b v2 9x')).toEqual(['v2', '9x']);
  });
});

describe('retrievalQuery', () => {
  it('a pronoun-led or term-less follow-up is searched with the previous user turn\'s key terms', () => {
    const history = [user('What is a BRIN index?'), assistant('BRIN stands for block range index [1].')];
    expect(retrievalQuery('How do I create one?', history)).toBe('How do I create one? brin index');
    expect(retrievalQuery('And for GIN?', history)).toBe('And for GIN? brin index');
    expect(retrievalQuery('Why?', history)).toBe('Why? brin index');
  });

  it('a standalone question is searched as it is', () => {
    const history = [user('What is a BRIN index?')];
    expect(isFollowUp('What is the capital of France?')).toBe(false);
    expect(retrievalQuery('What is the capital of France?', history)).toBe('What is the capital of France?');
    expect(retrievalQuery('How do I load a CSV file into a table with it fast and safely?', history)).toBe('How do I load a CSV file into a table with it fast and safely?');
    expect(retrievalQuery('How do I create one?', [])).toBe('How do I create one?');
  });

  it('uses the last two user turns, most recent first, terms bounded and not repeated', () => {
    const history = [user('Tell me about vacuum'), user('What does VACUUM FULL do?'), assistant('It rewrites the table.'), user('and autovacuum thresholds?')];
    expect(retrievalQuery('Does it lock the table?', history)).toBe('Does it lock the table? autovacuum threshold vacuum full');
    const long = [user('alpha beta gamma delta epsilon zeta eta theta iota kappa')];
    expect(retrievalQuery('What about it?', long).split(' ').length).toBe(3 + FOLLOW_UP_CONTEXT_TERMS);
  });
});
