/**
 * Named, versioned prompt templates (prompts/*.md). A template is markdown with a front matter block
 * and exactly two sections:
 *
 * ```
 * ---
 * name: answer                  # must equal the file name without .md
 * version: 3
 * description: optional, one line
 * variables: [question, context, history?, personalization?]   # `?` = optional (renders as "")
 * ---
 *
 * ## system
 * ... {{context}} ...
 *
 * ## user
 * {{#history}}Conversation so far:
 * {{history}}
 * {{/history}}
 * {{question}}
 * ```
 *
 * Placeholders are `{{name}}`; `{{#name}}...{{/name}}` renders its body only when `name` is non-blank
 * (so a heading disappears together with an empty block). A tag alone on its line takes the line with
 * it (for `{{name}}`, only when the value is empty), so optional blocks leave no blank-line debris.
 * Substitution is single-pass: values are inserted verbatim and never scanned for placeholders.
 *
 * Every template is checked at load time, so a typo fails the server's start, not a request.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError, NotFoundError, ValidationError } from './errors.ts';
import type { ChatMessage } from './llm/types.ts';

/** Absolute path of the repository's prompts/ directory. */
export const PROMPTS_DIR = fileURLToPath(new URL('../../prompts/', import.meta.url));

export interface PromptTemplate {
  name: string;
  version: string;
  /** sha256 (hex) of the template file bytes: logged with every response. */
  sha256: string;
  /** Every declared variable (required and optional), in declaration order. */
  variables: string[];
  /** The declared variables marked optional (`name?`); absent = none optional. */
  optional?: string[];
  /** Raw template text of the `## system` section. */
  system: string;
  /** Raw template text of the `## user` section. */
  user: string;
  /** Optional one-line description from the front matter. */
  description?: string;
  /** Absolute path of the file it was loaded from (absent for templates built in code). */
  file?: string;
}

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** `{{name}}`, `{{#name}}`, `{{/name}}` with optional inner spaces. */
const TAG = /\{\{\s*([#/]?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
const FRONT_MATTER_KEYS = new Set(['name', 'version', 'description', 'variables']);
const SECTION_HEADING = /^##[ \t]+(system|user)[ \t]*$/gim;

type Token =
  | { kind: 'text'; value: string }
  | { kind: 'var'; name: string; lead: string; trail: string }
  | { kind: 'open' | 'close'; name: string };

/**
 * Splits template text into literal text and tags, with mustache-style "standalone" handling: a tag
 * alone on its line owns the line's indentation and line break.
 * @throws Error (plain; callers wrap it) on a stray `{{` / `}}` or unbalanced sections.
 */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const stack: string[] = [];
  let pos = 0;
  for (const m of text.matchAll(TAG)) {
    const start = m.index;
    const end = start + m[0].length;
    const sigil = m[1] ?? '';
    const name = m[2] ?? '';
    let literal = text.slice(pos, start);
    assertNoStrayBraces(literal);
    // Standalone: only whitespace between the previous line break (or start) and the tag, and
    // between the tag and the next line break (or end).
    const lineStart = text.lastIndexOf('\n', start - 1) + 1;
    const nl = text.indexOf('\n', end);
    const lineEnd = nl === -1 ? text.length : nl + 1;
    const before = text.slice(Math.max(lineStart, pos), start);
    const after = text.slice(end, lineEnd);
    const standalone = lineStart >= pos && /^[ \t]*$/.test(before) && /^[ \t]*\r?\n?$/.test(after);
    let lead = '';
    let trail = '';
    if (standalone) {
      lead = before;
      trail = after;
      literal = literal.slice(0, literal.length - before.length);
    }
    if (literal) tokens.push({ kind: 'text', value: literal });
    if (sigil === '') {
      tokens.push({ kind: 'var', name, lead, trail });
    } else if (sigil === '#') {
      stack.push(name);
      tokens.push({ kind: 'open', name });
    } else {
      const open = stack.pop();
      if (open !== name) throw new Error(open ? `{{/${name}}} closes {{#${open}}}` : `{{/${name}}} has no matching {{#${name}}}`);
      tokens.push({ kind: 'close', name });
    }
    pos = standalone ? lineEnd : end;
  }
  const rest = text.slice(pos);
  assertNoStrayBraces(rest);
  if (rest) tokens.push({ kind: 'text', value: rest });
  const unclosed = stack.pop();
  if (unclosed) throw new Error(`{{#${unclosed}}} is never closed`);
  return tokens;
}

function assertNoStrayBraces(literal: string): void {
  const i = literal.search(/\{\{|\}\}/);
  if (i !== -1) {
    throw new Error(`malformed placeholder near ${JSON.stringify(literal.slice(Math.max(0, i - 10), i + 20))} (expected {{name}}, {{#name}} or {{/name}})`);
  }
}

/** Names referenced by tags in `text` (placeholders and sections). */
function referencedNames(tokens: Token[]): Set<string> {
  const names = new Set<string>();
  for (const t of tokens) if (t.kind !== 'text') names.add(t.name);
  return names;
}

function renderTokens(tokens: Token[], vars: Record<string, string>): string {
  let out = '';
  // Depth of sections being skipped: once inside a false section, everything up to its close is dropped.
  let skipping = 0;
  for (const t of tokens) {
    switch (t.kind) {
      case 'open':
        if (skipping > 0 || (vars[t.name] ?? '').trim() === '') skipping++;
        break;
      case 'close':
        if (skipping > 0) skipping--;
        break;
      case 'text':
        if (skipping === 0) out += t.value;
        break;
      case 'var': {
        const value = vars[t.name] ?? '';
        // An empty standalone placeholder takes its whole line with it (lead/trail are '' inline).
        if (skipping === 0 && value !== '') out += t.lead + value + t.trail;
        break;
      }
    }
  }
  return out;
}

interface FrontMatter {
  name: string;
  version: string;
  description?: string;
  variables: string[];
  optional: string[];
}

function parseFrontMatter(block: string): FrontMatter {
  const fields = new Map<string, string>();
  for (const raw of block.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][\w-]*)\s*:\s*(.*)$/.exec(line);
    if (!m) throw new Error(`front matter line is not "key: value": ${JSON.stringify(line)}`);
    const key = m[1] ?? '';
    if (!FRONT_MATTER_KEYS.has(key)) throw new Error(`unknown front matter key "${key}" (allowed: ${[...FRONT_MATTER_KEYS].join(', ')})`);
    if (fields.has(key)) throw new Error(`front matter key "${key}" appears twice`);
    fields.set(key, unquote(stripComment(m[2] ?? '')));
  }
  const name = fields.get('name');
  const version = fields.get('version');
  const vars = fields.get('variables');
  if (!name) throw new Error('front matter is missing "name"');
  if (!version) throw new Error('front matter is missing "version"');
  if (vars === undefined) throw new Error('front matter is missing "variables"');
  const list = /^\[(.*)\]$/.exec(vars);
  if (!list) throw new Error(`"variables" must be an inline list like [question, context, history?], got ${JSON.stringify(vars)}`);
  const variables: string[] = [];
  const optional: string[] = [];
  const items = (list[1] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) {
    const isOptional = item.endsWith('?');
    const varName = isOptional ? item.slice(0, -1).trim() : item;
    if (!VARIABLE_NAME.test(varName)) throw new Error(`invalid variable name ${JSON.stringify(item)}`);
    if (variables.includes(varName)) throw new Error(`variable "${varName}" is declared twice`);
    variables.push(varName);
    if (isOptional) optional.push(varName);
  }
  const description = fields.get('description');
  return { name, version, variables, optional, ...(description ? { description } : {}) };
}

function stripComment(value: string): string {
  // YAML-style trailing comment; only when preceded by whitespace so "#" inside a value survives.
  return value.replace(/\s+#.*$/, '').trim();
}

function unquote(value: string): string {
  const m = /^(["'])(.*)\1$/.exec(value);
  return m ? (m[2] ?? '') : value;
}

/**
 * Parses one template file's text. Exported for tests and tools; `PromptStore.load` is the normal entry.
 * @throws ConfigError naming `file` when the template is malformed, uses an undeclared placeholder or
 * declares a variable it never uses.
 */
export function parsePromptTemplate(text: string, file: string, bytes: Buffer = Buffer.from(text, 'utf8')): PromptTemplate {
  const fail = (why: string, cause?: unknown): never => {
    throw new ConfigError(`prompt template ${file}: ${why}`, cause === undefined ? undefined : { cause });
  };
  const body = text.replace(/^\uFEFF/, '');
  const fm = /^---[ \t]*\r?\n([\s\S]*?)\r?\n---[ \t]*(?:\r?\n|$)/.exec(body);
  if (!fm) return fail('must start with a front matter block between "---" lines');
  let meta: FrontMatter;
  try {
    meta = parseFrontMatter(fm[1] ?? '');
  } catch (err) {
    return fail((err as Error).message, err);
  }
  const expectedName = path.basename(file).replace(/\.md$/i, '');
  if (meta.name !== expectedName) fail(`name "${meta.name}" must match the file name "${expectedName}"`);

  const rest = body.slice(fm[0].length);
  const headings = [...rest.matchAll(SECTION_HEADING)];
  const kinds = headings.map((h) => (h[1] ?? '').toLowerCase());
  if (kinds.length !== 2 || kinds[0] !== 'system' || kinds[1] !== 'user') {
    fail(`needs exactly one "## system" section followed by one "## user" section (found: ${kinds.map((k) => `## ${k}`).join(', ') || 'none'})`);
  }
  const [sys, usr] = headings as [RegExpMatchArray, RegExpMatchArray];
  if (rest.slice(0, sys.index).trim() !== '') fail('text between the front matter and "## system" (put descriptions in the "description" key)');
  const system = rest.slice((sys.index ?? 0) + sys[0].length, usr.index).trim();
  const user = rest.slice((usr.index ?? 0) + usr[0].length).trim();
  if (system === '') fail('the "## system" section is empty');
  if (user === '') fail('the "## user" section is empty');

  const used = new Set<string>();
  for (const [label, section] of [['system', system], ['user', user]] as const) {
    let tokens: Token[];
    try {
      tokens = tokenize(section);
    } catch (err) {
      return fail(`## ${label}: ${(err as Error).message}`, err);
    }
    for (const n of referencedNames(tokens)) {
      if (!meta.variables.includes(n)) fail(`## ${label} uses {{${n}}}, which is not declared in "variables"`);
      used.add(n);
    }
  }
  const unused = meta.variables.filter((v) => !used.has(v));
  if (unused.length > 0) fail(`declared variable(s) never used: ${unused.join(', ')}`);

  return {
    name: meta.name,
    version: meta.version,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    variables: meta.variables,
    optional: meta.optional,
    system,
    user,
    ...(meta.description ? { description: meta.description } : {}),
    file,
  };
}

/** The loaded, validated templates of one directory (every `*.md` file in it, not recursive). */
export class PromptStore {
  private readonly byName: Map<string, PromptTemplate>;

  private constructor(templates: PromptTemplate[]) {
    this.byName = new Map(templates.map((t) => [t.name, t]));
  }

  /**
   * Loads and validates every `*.md` template in `dir` (default PROMPTS_DIR).
   * @throws ConfigError naming the file for a malformed template, an undeclared placeholder or a
   * declared-but-unused variable; ConfigError when `dir` cannot be read.
   */
  static load(dir: string = PROMPTS_DIR): PromptStore {
    let names: string[];
    try {
      names = fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.md'))
        .map((e) => e.name)
        .sort();
    } catch (err) {
      throw new ConfigError(`cannot read prompt directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const templates = names.map((n) => {
      const file = path.resolve(dir, n);
      const bytes = fs.readFileSync(file);
      return parsePromptTemplate(bytes.toString('utf8'), file, bytes);
    });
    return new PromptStore(templates);
  }

  /** @throws NotFoundError for an unknown template name. */
  get(name: string): PromptTemplate {
    const t = this.byName.get(name);
    if (!t) throw new NotFoundError(`no prompt template named "${name}" (have: ${[...this.byName.keys()].join(', ') || 'none'})`);
    return t;
  }

  /** All templates, sorted by name. */
  list(): PromptTemplate[] {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

const varsSchema = z.record(z.string(), z.string());

/**
 * Renders a template into [system, user] messages. Optional variables that are absent render as "".
 * @throws ValidationError when a required declared variable is missing, an undeclared variable is
 * passed, or a value is not a string.
 */
export function renderPrompt(t: PromptTemplate, vars: Record<string, string>): ChatMessage[] {
  const parsed = varsSchema.safeParse(vars);
  if (!parsed.success) {
    throw new ValidationError(`prompt "${t.name}": every variable value must be a string`, { cause: parsed.error });
  }
  const given = parsed.data;
  const unknown = Object.keys(given).filter((k) => !t.variables.includes(k));
  if (unknown.length > 0) {
    throw new ValidationError(`prompt "${t.name}": unknown variable(s) ${unknown.join(', ')} (declared: ${t.variables.join(', ')})`);
  }
  const optional = new Set(t.optional ?? []);
  const missing = t.variables.filter((v) => !optional.has(v) && !Object.hasOwn(given, v));
  if (missing.length > 0) throw new ValidationError(`prompt "${t.name}": missing variable(s) ${missing.join(', ')}`);
  const render = (section: string): string => {
    let tokens: Token[];
    try {
      tokens = tokenize(section);
    } catch (err) {
      // Only reachable for templates built in code; loaded ones were validated.
      throw new ValidationError(`prompt "${t.name}": ${(err as Error).message}`, { cause: err });
    }
    return renderTokens(tokens, given).trim();
  };
  return [
    { role: 'system', content: render(t.system) },
    { role: 'user', content: render(t.user) },
  ];
}
