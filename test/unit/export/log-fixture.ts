/**
 * Builds a realistic prediction log in a real SQLite data dir for export tests: users, conversations,
 * responses whose rendered prompt has the shape the chat pipeline sends with prompts/answer.md (a
 * system message carrying the personalization notes; a user message with "Conversation so far:",
 * the numbered context passages and the question), and append-only feedback. The `messages` layout
 * instead sends earlier turns as separate chat messages, as an OpenAI-style template would.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { loadConfig } from '../../../src/core/config.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';

type Db = Database.Database;

export const SYSTEM_PROMPT =
  'You are mneme, an assistant that answers questions using only the numbered context passages supplied with each question. The passages come from the user\'s own document collection.\n\nRules:\n1. Use only facts stated in the context passages.\n2. Cite every factual claim with the number of the passage that supports it, in square brackets.';

/** What answered by default: a language model (extractive answers are left out of exports by default). */
export const DEFAULT_BACKEND = 'gguf';
export const DEFAULT_MODEL_ID = 'qwen2.5-1.5b-instruct-q4_k_m';

/** How earlier turns reach the model: inside the user message (prompts/answer.md) or as messages. */
export type HistoryLayout = 'embedded' | 'messages';

export interface Source {
  title: string;
  heading: string;
  file: string;
  text: string;
}

export const SOURCES: Record<string, Source> = {
  halcyon: {
    title: 'Halcyon X3 manual',
    heading: 'Maintenance › Reset',
    file: 'halcyon-x3-manual.md',
    text: 'To reset the Halcyon X3, hold the recessed button for ten seconds until the status lamp blinks amber three times.',
  },
  e417: {
    title: 'Halcyon X3 manual',
    heading: 'Errors › E-417',
    file: 'halcyon-x3-manual.md',
    text: 'Error E-417 means the coolant loop pressure dropped below 1.8 bar; check the pump seal.',
  },
  kestrel: {
    title: 'kestrelctl reference',
    heading: 'Commands › flash',
    file: 'kestrelctl-reference.md',
    text: 'kestrelctl flash --recovery writes the previous firmware image to the standby bank.',
  },
  ferry: {
    title: 'Tidewater ferry timetable',
    heading: 'Winter',
    file: 'tidewater-ferry-timetable.txt',
    text: 'The Tidewater ferry leaves the north pier at 07:15 and 16:40 on weekdays from November to March.',
  },
};

export interface RespondInput {
  conversation: string;
  query: string;
  answer: string | null;
  sources?: Source[];
  status?: 'ok' | 'error' | 'cancelled';
  collection?: string | null;
  modelBackend?: string;
  modelId?: string;
  promptName?: string;
  /** Override the rendered prompt JSON (malformed-row tests). */
  renderedPromptJson?: string;
  /** Override the rendered messages (e.g. to give two conversations the identical prompt). */
  renderedMessages?: Array<{ role: string; content: string }>;
  createdAt?: string;
  /** Personalization notes rendered into the system message. */
  personalization?: string;
  /** Default 'embedded' (what prompts/answer.md renders). */
  layout?: HistoryLayout;
}

export interface Logged {
  seq: number;
  id: string;
  conversationId: string;
  messages: Array<{ role: string; content: string }>;
}

/** sha256 of a prompt template's text, as the prompt loader records it. */
export function templateHash(name: string): string {
  return crypto.createHash('sha256').update(`template:${name}`).digest('hex');
}

export function renderSystemMessage(personalization?: string): string {
  if (!personalization) return SYSTEM_PROMPT;
  return `${SYSTEM_PROMPT}\n\nAdapt your style to the notes below about this user. Follow them silently.\n\n${personalization}`;
}

/** "User: …" / "Assistant: …" lines, citation markers stripped from answers (as the chat does). */
export function renderHistory(turns: Array<{ role: string; content: string }>): string {
  return turns
    .map((t) => `${t.role === 'user' ? 'User' : 'Assistant'}: ${(t.role === 'assistant' ? t.content.replace(/\s*\[\d+\]/g, '') : t.content).replace(/\s+/g, ' ').trim()}`)
    .join('\n');
}

export function renderUserMessage(query: string, sources: Source[], history = ''): string {
  const context = sources.map((s, i) => `[${i + 1}] ${s.title} › ${s.heading} (source: ${s.file})\n${s.text}`).join('\n\n');
  return `${history ? `Conversation so far:\n${history}\n\n` : ''}Context passages:\n\n${context}\n\nQuestion: ${query}`;
}

export class LogFixture {
  /** The store the exporter is given. */
  readonly store: SqliteStore;
  /** Its connection's raw handle, for setting up and probing rows. */
  readonly db: Db;
  private clock = Date.parse('2025-03-01T09:00:00.000Z');
  private readonly users = new Map<string, number>();
  /** Per conversation: the turns as the model saw them, and the user id. */
  private readonly convs = new Map<string, { userId: number; turns: Array<{ role: string; content: string }>; next: number }>();

  readonly dbFile: string;

  constructor(readonly dataDir: string) {
    // Where the CLI looks for it (`--data-dir dataDir`).
    this.dbFile = loadConfig({}, { dataDir }).dbFile;
    this.store = openSqliteStore(this.dbFile);
    this.db = this.store.connection.db;
  }

  static create(): LogFixture {
    return new LogFixture(fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-export-')));
  }

  /** Next timestamp (one minute later each call) unless given. */
  tick(at?: string): string {
    if (at) return at;
    this.clock += 60_000;
    return new Date(this.clock).toISOString();
  }

  user(name: string): number {
    const existing = this.users.get(name);
    if (existing !== undefined) return existing;
    const key = crypto.randomBytes(16).toString('hex');
    const r = this.db
      .prepare('INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at) VALUES (?, ?, ?, 0, ?)')
      .run(name, crypto.createHash('sha256').update(key).digest('hex'), key.slice(0, 8), this.tick());
    this.users.set(name, Number(r.lastInsertRowid));
    return Number(r.lastInsertRowid);
  }

  conversation(userName: string, id = `conv_${crypto.randomUUID()}`): string {
    const userId = this.user(userName);
    const at = this.tick();
    this.db.prepare('INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)').run(id, userId, at, at);
    this.convs.set(id, { userId, turns: [], next: 0 });
    return id;
  }

  respond(input: RespondInput): Logged {
    const conv = this.convs.get(input.conversation);
    if (!conv) throw new Error(`unknown conversation ${input.conversation}`);
    const sources = input.sources ?? [SOURCES.halcyon as Source];
    const system = { role: 'system', content: renderSystemMessage(input.personalization) };
    const messages =
      input.renderedMessages ??
      ((input.layout ?? 'embedded') === 'embedded'
        ? [system, { role: 'user', content: renderUserMessage(input.query, sources, renderHistory(conv.turns)) }]
        : [system, ...conv.turns, { role: 'user', content: renderUserMessage(input.query, sources) }]);
    const id = `resp_${crypto.randomUUID()}`;
    const status = input.status ?? 'ok';
    const promptName = input.promptName ?? 'answer';
    const createdAt = this.tick(input.createdAt);
    const r = this.db
      .prepare(
        `INSERT INTO responses (id, user_id, conversation_id, turn_index, created_at, endpoint, request_json, query, history_json,
           collection, top_k, retrieved_json, features_json, prompt_name, prompt_sha256, rendered_prompt_json, model_backend, model_id,
           sampling_json, answer, citations_json, timings_json, prompt_tokens, completion_tokens, status, error_code, error_message)
         VALUES (?, ?, ?, ?, ?, 'chat', ?, ?, ?, ?, 5, ?, '{}', ?, ?, ?, ?, ?, ?, ?, '[]', '{}', NULL, NULL, ?, ?, ?)`,
      )
      .run(
        id,
        conv.userId,
        input.conversation,
        conv.next,
        createdAt,
        JSON.stringify({ message: input.query, conversation_id: input.conversation }),
        input.query,
        JSON.stringify(conv.turns.map((t) => ({ role: t.role, content: t.content }))),
        input.collection === undefined ? 'manuals' : input.collection,
        JSON.stringify(sources.map((s, i) => ({ chunk_id: i + 1, title: s.title, score: 1 / (i + 1) }))),
        promptName,
        templateHash(promptName),
        input.renderedPromptJson ?? JSON.stringify(messages),
        input.modelBackend ?? DEFAULT_BACKEND,
        input.modelId ?? DEFAULT_MODEL_ID,
        JSON.stringify({ temperature: 0.2, top_p: 0.95, seed: 42 }),
        input.answer,
        status,
        status === 'ok' ? null : status === 'error' ? 'upstream_error' : 'cancelled',
        status === 'ok' ? null : 'failed',
      );
    // Later turns see the question as typed (no sources) and the answer as given.
    conv.turns.push({ role: 'user', content: input.query });
    if (input.answer) conv.turns.push({ role: 'assistant', content: input.answer });
    conv.next++;
    return { seq: Number(r.lastInsertRowid), id, conversationId: input.conversation, messages };
  }

  feedback(response: Logged, rating: 1 | -1, correction: string | null = null, at?: string): void {
    const userId = this.db.prepare('SELECT user_id FROM responses WHERE id = ?').pluck().get(response.id) as number;
    this.db.prepare('INSERT INTO feedback (response_id, user_id, rating, correction, created_at) VALUES (?, ?, ?, ?, ?)').run(response.id, userId, rating, correction, this.tick(at));
  }

  /** The user id of a name given to `user` / `conversation`. */
  userId(name: string): number {
    const id = this.users.get(name);
    if (id === undefined) throw new Error(`unknown user ${name}`);
    return id;
  }

  /** The user as the export hash sees them ({id, createdAt}), read from the users table. */
  userRef(name: string): { id: number; createdAt: string } {
    const row = this.db.prepare<[string], { id: number; created_at: string }>('SELECT id, created_at FROM users WHERE name = ?').get(name);
    if (!row) throw new Error(`no user ${name}`);
    return { id: row.id, createdAt: row.created_at };
  }

  close(): void {
    this.store.connection.close();
  }

  remove(): void {
    this.close();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** The independent reader: split lines, JSON.parse, no schema library. */
export function readJsonl(file: string): unknown[] {
  const text = fs.readFileSync(file, 'utf8');
  if (text.length > 0 && !text.endsWith('\n')) throw new Error(`${file}: last line is not newline-terminated`);
  return text
    .split('\n')
    .slice(0, -1)
    .map((line, i) => {
      if (line.trim() === '') throw new Error(`${file}:${i + 1}: empty line`);
      return JSON.parse(line) as unknown;
    });
}

type Msg = { role: string; content: string; weight?: number };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkMessage(m: unknown, where: string, allowWeight: boolean): Msg {
  if (!isPlainObject(m)) throw new Error(`${where}: message is not an object`);
  const keys = Object.keys(m).sort();
  const allowed = allowWeight ? ['content', 'role', 'weight'] : ['content', 'role'];
  for (const k of keys) if (!allowed.includes(k)) throw new Error(`${where}: unexpected key ${k}`);
  if (!['system', 'user', 'assistant'].includes(m.role as string)) throw new Error(`${where}: bad role ${String(m.role)}`);
  if (typeof m.content !== 'string') throw new Error(`${where}: content is not a string`);
  if ('weight' in m && !(m.weight === 0 && m.role === 'assistant')) throw new Error(`${where}: weight must be 0 and only on assistant turns`);
  return m as Msg;
}

const USER_HASH = /^[0-9a-f]{32}$/;

/** Hand-written structural check of one SFT line; returns its messages. */
export function checkSftLine(v: unknown, where: string): Msg[] {
  if (!isPlainObject(v) || Object.keys(v).sort().join() !== 'messages,user' || !Array.isArray(v.messages)) throw new Error(`${where}: expected {messages: [...], user}`);
  if (typeof v.user !== 'string' || !USER_HASH.test(v.user)) throw new Error(`${where}: user must be a 32-hex-digit hash`);
  const msgs = v.messages.map((m, i) => checkMessage(m, `${where} message ${i}`, true));
  const last = msgs[msgs.length - 1];
  if (msgs.length < 2 || !last || last.role !== 'assistant' || 'weight' in last || last.content.trim() === '') throw new Error(`${where}: must end with a trained assistant turn`);
  if (msgs[msgs.length - 2]?.role !== 'user') throw new Error(`${where}: the trained turn must follow a user turn`);
  return msgs;
}

/** Hand-written structural check of one preference line. */
export function checkPreferenceLine(v: unknown, where: string): { input: Msg[]; preferred: string; nonPreferred: string; user: string; preferredUser: string } {
  if (!isPlainObject(v)) throw new Error(`${where}: not an object`);
  if (Object.keys(v).sort().join() !== 'input,non_preferred_output,preferred_output,preferred_user,user') throw new Error(`${where}: keys ${Object.keys(v).join()}`);
  for (const k of ['user', 'preferred_user']) if (typeof v[k] !== 'string' || !USER_HASH.test(v[k] as string)) throw new Error(`${where}: ${k} must be a 32-hex-digit hash`);
  const input = v.input;
  if (!isPlainObject(input) || Object.keys(input).join() !== 'messages' || !Array.isArray(input.messages)) throw new Error(`${where}: bad input`);
  const msgs = input.messages.map((m, i) => checkMessage(m, `${where} input ${i}`, false));
  if (msgs[msgs.length - 1]?.role !== 'user') throw new Error(`${where}: input must end with a user turn`);
  const side = (x: unknown, name: string): string => {
    if (!Array.isArray(x) || x.length !== 1) throw new Error(`${where}: ${name} must hold one message`);
    const m = checkMessage(x[0], `${where} ${name}`, false);
    if (m.role !== 'assistant' || m.content.trim() === '') throw new Error(`${where}: ${name} must be a non-blank assistant message`);
    return m.content;
  };
  const preferred = side(v.preferred_output, 'preferred_output');
  const nonPreferred = side(v.non_preferred_output, 'non_preferred_output');
  if (preferred === nonPreferred) throw new Error(`${where}: identical sides`);
  return { input: msgs, preferred, nonPreferred, user: v.user as string, preferredUser: v.preferred_user as string };
}
