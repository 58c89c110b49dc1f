/**
 * Conversational retrieval without an LLM rewrite: a follow-up ("How do I create one?", "Does it
 * lock the table?") is searched together with the key terms of the conversation's previous user
 * turn(s), so it retrieves what the thread is about. The answer prompt still gets the user's real
 * message; only the retrieval query changes. Pure.
 */
import type { ChatMessage } from '../core/llm/types.ts';
import { keyTerms, wordsOf } from '../features/personalize.ts';

/** A message with at most this many key terms (and an anaphoric word, or none at all) is a follow-up. */
export const FOLLOW_UP_MAX_KEY_TERMS = 3;
/** Previous user turns whose key terms are added (most recent first). */
export const FOLLOW_UP_CONTEXT_TURNS = 2;
/** Most key terms taken from the previous turns (fewer than a question of its own has: they are context, not the question). */
export const FOLLOW_UP_CONTEXT_TERMS = 6;

/** Words that point back at something said before. */
const ANAPHORA: ReadonlySet<string> = new Set([
  'it', 'its', 'this', 'that', 'these', 'those', 'they', 'them', 'their', 'one', 'ones', 'there', 'such', 'same', 'former', 'latter', 'above', 'previous',
]);
/** Openers of an elliptical follow-up ("and for GIN?", "what about replicas?"). */
const FOLLOW_UP_OPENERS = [/^and\b/, /^also\b/, /^what about\b/, /^how about\b/, /^then\b/, /^but\b/];

/**
 * True when `message` reads as a continuation rather than a standalone question: it has no key term
 * at all, or at most FOLLOW_UP_MAX_KEY_TERMS key terms together with a pronoun pointing back
 * ("How do I create one?") or a follow-up opener ("And for GIN?").
 */
export function isFollowUp(message: string): boolean {
  const terms = keyTerms(message);
  if (terms.length === 0) return true;
  if (terms.length > FOLLOW_UP_MAX_KEY_TERMS) return false;
  const lower = message.trim().toLowerCase();
  return wordsOf(lower).some((w) => ANAPHORA.has(w)) || FOLLOW_UP_OPENERS.some((re) => re.test(lower));
}

/**
 * The query to retrieve with: `message` itself, or, for a follow-up with earlier user turns in
 * `history`, `message` followed by up to FOLLOW_UP_CONTEXT_TERMS key terms of the last
 * FOLLOW_UP_CONTEXT_TURNS user turns (most recent first, terms already in the message skipped).
 * "How do I create one?" after "What is a BRIN index?" → "How do I create one? brin index".
 * @param history earlier messages, oldest first (assistant turns are ignored: answers drift)
 */
export function retrievalQuery(message: string, history: readonly Pick<ChatMessage, 'role' | 'content'>[]): string {
  if (!isFollowUp(message)) return message;
  const own = new Set(keyTerms(message));
  const added: string[] = [];
  const users = history.filter((m) => m.role === 'user').slice(-FOLLOW_UP_CONTEXT_TURNS).reverse();
  for (const turn of users) {
    for (const t of keyTerms(turn.content)) {
      if (added.length >= FOLLOW_UP_CONTEXT_TERMS) break;
      if (!own.has(t) && !added.includes(t)) added.push(t);
    }
  }
  return added.length === 0 ? message : `${message} ${added.join(' ')}`;
}
