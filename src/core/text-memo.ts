/**
 * A bounded memo for pure functions of a text: the same chunk texts are tokenized, counted and
 * scored again by every question that retrieves them (a server profile under 20 chat clients spent
 * a third of its main thread re-deriving them). Least recently used entries go first.
 */

/** Texts memoized per function (default); each entry holds the text (shared with its caller) and the result. */
export const TEXT_MEMO_ENTRIES = 4096;
/** Texts shorter than this (characters) are cheaper to recompute than to look up. */
const TEXT_MEMO_MIN_CHARS = 32;

/**
 * `fn` memoized by its text argument (strings shorter than TEXT_MEMO_MIN_CHARS are not cached).
 * `fn` must be pure; a result that callers may mutate must be copied by the caller of `memoText`
 * (pass `copy`), since the cached value is returned again later.
 */
export function memoText<T>(fn: (text: string) => T, opts: { entries?: number; copy?: (v: T) => T } = {}): (text: string) => T {
  const entries = opts.entries ?? TEXT_MEMO_ENTRIES;
  const copy = opts.copy ?? ((v: T) => v);
  const cache = new Map<string, T>();
  return (text: string): T => {
    if (text.length < TEXT_MEMO_MIN_CHARS) return fn(text);
    const hit = cache.get(text);
    if (hit !== undefined) {
      // Re-inserting moves the entry to the end (most recently used).
      cache.delete(text);
      cache.set(text, hit);
      return copy(hit);
    }
    const value = fn(text);
    cache.set(text, value);
    if (cache.size > entries) cache.delete(cache.keys().next().value as string);
    return copy(value);
  };
}
