import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, NotFoundError, ValidationError } from '../../../src/core/errors.ts';
import type { PromptTemplate } from '../../../src/core/prompts.ts';
import { PROMPTS_DIR, PromptStore, parsePromptTemplate, renderPrompt } from '../../../src/core/prompts.ts';

const GOOD = `---
name: demo
version: 2
description: a test template
variables: [question, context, history?]
---

## system
Answer from:
{{context}}

## user
{{#history}}
History:
{{history}}

{{/history}}
Q: {{ question }}
`;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-prompts-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function loadError(name: string, text: string): ConfigError {
  write(name, text);
  try {
    PromptStore.load(dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(path.join(dir, name));
    return err as ConfigError;
  }
  throw new Error('expected PromptStore.load to throw');
}

describe('PromptStore', () => {
  it('loads the repository prompts, with the answer template and its declared variables', () => {
    expect(path.isAbsolute(PROMPTS_DIR)).toBe(true);
    const store = PromptStore.load(PROMPTS_DIR);
    const answer = store.get('answer');
    expect(answer.variables.sort()).toEqual(['context', 'evidence', 'history', 'personalization', 'question']);
    expect(answer.optional?.sort()).toEqual(['evidence', 'history', 'personalization']);
    const bytes = fs.readFileSync(path.join(PROMPTS_DIR, 'answer.md'));
    expect(answer.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(store.list().map((t) => t.name)).toContain('answer');
  });

  it('renders the answer template without leftovers, with and without the optional blocks', () => {
    const answer = PromptStore.load(PROMPTS_DIR).get('answer');
    const bare = renderPrompt(answer, { question: 'Where is the serial number?', context: '[1] Manual\nOn the label.' });
    expect(bare.map((m) => m.role)).toEqual(['system', 'user']);
    const all = bare.map((m) => m.content).join('\n');
    expect(all).not.toMatch(/\{\{|\}\}/);
    expect(all).not.toMatch(/\n\n\n/);
    expect(all).not.toContain('Conversation so far');
    expect(bare[1]?.content).toContain('Question: Where is the serial number?');
    expect(bare[1]?.content).toContain('[1] Manual\nOn the label.');

    const full = renderPrompt(answer, {
      question: 'And the weight?',
      context: '[1] Manual\n4.2 kg.',
      history: 'User: hi\nAssistant: hello',
      personalization: 'Prefers one-sentence answers.',
    });
    expect(full[0]?.content).toContain('Prefers one-sentence answers.');
    expect(full[1]?.content).toContain('Conversation so far:\nUser: hi\nAssistant: hello');
    expect(full.map((m) => m.content).join('\n')).not.toMatch(/\n\n\n/);
    // The system prompt carries the grounding and citation rules.
    expect(full[0]?.content).toMatch(/\[n\]|\[2\]/);
    expect(full[0]?.content.toLowerCase()).toContain('only');
  });

  it('parses front matter, sections and hashes the exact file bytes', () => {
    const file = write('demo.md', GOOD);
    const t = PromptStore.load(dir).get('demo');
    expect(t).toMatchObject({ name: 'demo', version: '2', description: 'a test template', variables: ['question', 'context', 'history'], optional: ['history'] });
    expect(t.system).toBe('Answer from:\n{{context}}');
    expect(t.sha256).toBe(createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
  });

  it('gets by name, lists sorted, and throws NotFoundError for unknown names', () => {
    write('zeta.md', GOOD.replace('name: demo', 'name: zeta'));
    write('alpha.md', GOOD.replace('name: demo', 'name: alpha'));
    write('notes.txt', 'not a template');
    const store = PromptStore.load(dir);
    expect(store.list().map((t) => t.name)).toEqual(['alpha', 'zeta']);
    expect(() => store.get('missing')).toThrow(NotFoundError);
  });

  it('rejects an unreadable directory with ConfigError', () => {
    expect(() => PromptStore.load(path.join(dir, 'nope'))).toThrow(ConfigError);
  });

  it('rejects malformed templates, naming the file', () => {
    expect(loadError('a.md', '## system\nhi\n## user\nthere').message).toMatch(/front matter/);
    fs.rmSync(path.join(dir, 'a.md'));
    expect(loadError('b.md', GOOD.replace('name: demo', 'name: b').replace('{{ question }}', '{{ question }} {{extra}}')).message).toMatch(/\{\{extra\}\}.*not declared/);
  });

  it.each([
    ['undeclared placeholder', (s: string) => s.replace('Q: {{ question }}', 'Q: {{ question }} {{user_name}}'), /not declared/],
    ['declared but unused variable', (s: string) => s.replace('variables: [question, context, history?]', 'variables: [question, context, history?, persona]'), /never used: persona/],
    ['name differs from file name', (s: string) => s.replace('name: demo', 'name: other'), /must match the file name/],
    ['missing user section', (s: string) => s.replace('## user', '## notes'), /## system.*## user/],
    ['sections in the wrong order', (s: string) => s.replace('## system', '## tmp').replace('## user', '## system').replace('## tmp', '## user'), /## system.*## user/],
    ['unclosed section', (s: string) => s.replace('{{/history}}', ''), /never closed/],
    ['mismatched section close', (s: string) => s.replace('{{/history}}', '{{/context}}'), /closes/],
    ['stray braces', (s: string) => s.replace('Q: {{ question }}', 'Q: {{ question }} {{ bad name }}'), /malformed placeholder/],
    ['missing version', (s: string) => s.replace('version: 2\n', ''), /missing "version"/],
    ['unknown front matter key', (s: string) => s.replace('version: 2', 'version: 2\nauthor: me'), /unknown front matter key/],
    ['variables not a list', (s: string) => s.replace('[question, context, history?]', 'question, context'), /inline list/],
    ['duplicate variable', (s: string) => s.replace('[question, context, history?]', '[question, context, history?, question]'), /declared twice/],
    ['text before the system section', (s: string) => s.replace('## system', 'intro\n\n## system'), /between the front matter/],
  ])('rejects %s', (_label, mutate, pattern) => {
    const err = loadError('demo.md', mutate(GOOD));
    expect(err.message).toMatch(pattern);
  });

  it('accepts a BOM, CRLF line endings and quoted values', () => {
    const crlf = `\uFEFF${GOOD.replace('version: 2', 'version: "2.1"')}`.replace(/\n/g, '\r\n');
    write('demo.md', crlf);
    const t = PromptStore.load(dir).get('demo');
    expect(t.version).toBe('2.1');
    const [sys, user] = renderPrompt(t, { question: 'q', context: 'c' });
    expect(sys?.content.replace(/\r/g, '')).toBe('Answer from:\nc');
    expect(user?.content.replace(/\r/g, '')).toBe('Q: q');
  });
});

describe('renderPrompt', () => {
  const t = parsePromptTemplate(GOOD, '/x/demo.md');

  it('substitutes variables and drops an empty optional block with its heading', () => {
    const [sys, user] = renderPrompt(t, { question: 'Why?', context: 'ctx' });
    expect(sys).toEqual({ role: 'system', content: 'Answer from:\nctx' });
    expect(user).toEqual({ role: 'user', content: 'Q: Why?' });
    const withHistory = renderPrompt(t, { question: 'Why?', context: 'ctx', history: 'User: a' });
    expect(withHistory[1]?.content).toBe('History:\nUser: a\n\nQ: Why?');
    // Blank (whitespace-only) counts as empty for a section.
    expect(renderPrompt(t, { question: 'Why?', context: 'ctx', history: '  \n' })[1]?.content).toBe('Q: Why?');
  });

  it('is single-pass: values containing placeholders or replacement patterns are inserted verbatim', () => {
    const [sys, user] = renderPrompt(t, { question: '{{context}} and $& and $1', context: '{{question}} {{#history}}x{{/history}}' });
    expect(sys?.content).toBe('Answer from:\n{{question}} {{#history}}x{{/history}}');
    expect(user?.content).toBe('Q: {{context}} and $& and $1');
  });

  it('throws ValidationError for a missing required variable', () => {
    expect(() => renderPrompt(t, { question: 'q' })).toThrow(ValidationError);
    expect(() => renderPrompt(t, { question: 'q' })).toThrow(/missing variable\(s\) context/);
  });

  it('throws ValidationError for an unknown variable and for non-string values', () => {
    expect(() => renderPrompt(t, { question: 'q', context: 'c', persona: 'x' })).toThrow(/unknown variable\(s\) persona/);
    expect(() => renderPrompt(t, { question: 'q', context: 42 as unknown as string })).toThrow(ValidationError);
  });

  it('treats every variable as required on a hand-built template without `optional`', () => {
    const hand: PromptTemplate = { name: 'h', version: '1', sha256: '', variables: ['a', 'b'], system: 'S {{a}}', user: 'U {{b}}' };
    expect(() => renderPrompt(hand, { a: '1' })).toThrow(/missing variable\(s\) b/);
    expect(renderPrompt(hand, { a: '1', b: '' }).map((m) => m.content)).toEqual(['S 1', 'U']);
  });

  it('keeps inline empty values in place and removes a standalone empty line', () => {
    const hand: PromptTemplate = {
      name: 'h',
      version: '1',
      sha256: '',
      variables: ['a', 'b'],
      optional: ['a', 'b'],
      system: 'line1\n  {{a}}\nline3',
      user: 'x{{b}}y',
    };
    expect(renderPrompt(hand, {}).map((m) => m.content)).toEqual(['line1\nline3', 'xy']);
    expect(renderPrompt(hand, { a: 'A', b: 'B' }).map((m) => m.content)).toEqual(['line1\n  A\nline3', 'xBy']);
  });
});
