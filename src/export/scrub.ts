/**
 * PII and secret scrubbing for training exports. Pure: `scrubText` maps a string to its scrubbed form
 * and adds what it replaced to a per-kind counter; nothing else is touched.
 *
 * What is replaced (tag in brackets):
 * - `email` [EMAIL]: local@domain.tld (not `icon@2x.png`-style asset names).
 * - `phone` [PHONE]: `+` international numbers (8-15 digits), North-American numbers with phone
 *   formatting (`(555) 123-4567`, `1-800-555-0199`), and any 7-15 digit number right after "phone",
 *   "tel", "mobile", "cell", "fax" or "call". A bare 3-3-4 group (`555-123-4567`, `555.123.4567`) has
 *   the shape of a part number too, so it is a phone number only when the nearest label before it on
 *   its line (within PHONE_CONTEXT_CHARS) is a phone word ("phone", "desk", "hotline", "reach",
 *   "number"...), not a part label ("Part", "P/N", "SKU", "serial", "part number"...). Bare digit
 *   runs, years, dates, prices and times are left alone.
 * - `ipv4` / `ipv6` [IP_ADDRESS]: valid addresses, except loopback, unspecified and broadcast/netmask
 *   addresses (127.x, 0.x, 255.x, ::1, ::), which identify nobody, and dotted numbers right after
 *   "version"/"v"/"release" (a four-part version string looks exactly like an IPv4 address).
 * - `api_key` [API_KEY]: well-known credential shapes: OpenAI/Anthropic `sk-…`, Stripe `sk_live_…`,
 *   GitHub `ghp_…`/`github_pat_…`, AWS `AKIA…`/`ASIA…`, Slack `xox?-…`, Google `AIza…`, GitLab `glpat-…`,
 *   Hugging Face `hf_…`, npm `npm_…`.
 * - `bearer` [TOKEN]: the credential after `Bearer ` or `Authorization: Basic `.
 * - `jwt` [JWT]: `eyJ….eyJ….…` JSON Web Tokens.
 * - `private_key` [PRIVATE_KEY]: PEM `-----BEGIN … PRIVATE KEY-----` blocks.
 * - `secret` [SECRET]: the value (6+ characters, not a plain word) of `password=…`, `api_key: "…"`,
 *   `OPENAI_API_KEY=…`, `client_secret => …`-style assignments, and bare high-entropy base64-like
 *   strings of 32+ characters mixing upper case, lower case and digits.
 *   Bare hex digests (sha256, git commit ids, UUIDs) are identifiers, not credentials, and are kept
 *   unless they are the value of such an assignment.
 *
 * Secrets are scrubbed first so that their digits are never half-eaten by the phone or IP rules. No
 * rule but the PEM block spans a line break. Each pass runs only when a cheap check finds its trigger
 * (an "@", a digit pattern, a key prefix...), so ordinary prose costs a few scans.
 */
import net from 'node:net';

export const SCRUB_KINDS = ['email', 'phone', 'ipv4', 'ipv6', 'api_key', 'bearer', 'jwt', 'private_key', 'secret'] as const;
export type ScrubKind = (typeof SCRUB_KINDS)[number];
export type ScrubCounts = Record<ScrubKind, number>;

/** What each kind is replaced with. */
export const SCRUB_TAGS: Readonly<Record<ScrubKind, string>> = {
  email: '[EMAIL]',
  phone: '[PHONE]',
  ipv4: '[IP_ADDRESS]',
  ipv6: '[IP_ADDRESS]',
  api_key: '[API_KEY]',
  bearer: '[TOKEN]',
  jwt: '[JWT]',
  private_key: '[PRIVATE_KEY]',
  secret: '[SECRET]',
};

/** Shortest bare string considered a possible high-entropy secret, in characters. */
export const SECRET_MIN_CHARS = 32;
/** Least Shannon entropy of a bare secret candidate, in bits per character (random base62 ≈ 4.5-5). */
export const SECRET_MIN_ENTROPY_BITS = 4.0;
/** Largest share of a bare secret candidate that may sit in lower-case runs of 4+ letters. */
export const SECRET_MAX_WORD_FRACTION = 0.35;
/** Fewest digits a phone number has (local numbers), and most (E.164). */
export const PHONE_MIN_DIGITS = 7;
export const PHONE_MAX_DIGITS = 15;

export function emptyScrubCounts(): ScrubCounts {
  return { email: 0, phone: 0, ipv4: 0, ipv6: 0, api_key: 0, bearer: 0, jwt: 0, private_key: 0, secret: 0 };
}

/** Adds `b` into `a` (in place) and returns `a`. */
export function addScrubCounts(a: ScrubCounts, b: Readonly<ScrubCounts>): ScrubCounts {
  for (const k of SCRUB_KINDS) a[k] += b[k];
  return a;
}

const PRIVATE_KEY_RE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----/g;
const JWT_RE = /(?<![\w-])eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const BEARER_RE = /\b(Bearer[ \t]+|Authorization:[ \t]*Basic[ \t]+)([A-Za-z0-9\-._~+/]{16,}=*)/gi;
const API_KEY_RE = new RegExp(
  [
    String.raw`(?<![\w-])sk-(?:proj-|ant-(?:api\d\d-)?|live-|test-|svcacct-)?[A-Za-z0-9_-]{20,}`,
    String.raw`\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}`,
    String.raw`\bgh[pousr]_[A-Za-z0-9]{30,}`,
    String.raw`\bgithub_pat_[A-Za-z0-9_]{40,}`,
    String.raw`\b(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])`,
    String.raw`\bxox[abposr]-[A-Za-z0-9-]{10,}`,
    String.raw`\bAIza[0-9A-Za-z_-]{35}`,
    String.raw`\bglpat-[A-Za-z0-9_-]{20,}`,
    String.raw`\bhf_[A-Za-z0-9]{30,}`,
    String.raw`\bnpm_[A-Za-z0-9]{36}`,
  ].join('|'),
  'g',
);
// `key: value` / `key=value` / `key "value"` assignments of credential-named keys (`aws_secret_access_key`,
// `OPENAI_API_KEY`... match on their tail).
const ASSIGNMENT_RE =
  /((?:api[_-]?key|apikey|access[_-]?key|secret(?:[_-]?access)?(?:[_-]?key)?|client[_-]?secret|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|password|passwd)["']?[ \t]*(?:[:=]|=>)[ \t]*["']?)([^\s"',;)\]}]{6,})/gi;
const BARE_SECRET_RE = /(?<![\w+/=.-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w+/=-])/g;
const EMAIL_RE = /(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.\w)/g;
const ASSET_TLDS = new Set(['png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'bmp', 'avif']);
const IPV6_RE = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)/g;
const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4_RE = new RegExp(`(?<![\\w.])${OCTET}(?:\\.${OCTET}){3}(?![\\w]|\\.\\d)`, 'g');
const VERSION_CONTEXT_RE = /(?:\bversion|\bver\.?|\brelease|\bv)[ \t]*$/i;
const PHONE_INTL_RE = /(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w])/g;
// Group 1: phone formatting (a `(555)` area code, or a leading `1-` / `1.` / `1 ` trunk prefix);
// group 2 a bare 3-3-4 group, which needs phone context (see phoneContextBefore).
const PHONE_NANP_RE = /(?<![\w+.-])(?:(\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|1([-. ])\d{3}\2\d{3}\2\d{4})|(\d{3}([.-])\d{3}\4\d{4}))(?![\w-]|\.\d)/g;
/** How far before a bare 3-3-4 group its label is looked for, in characters (same line only). */
export const PHONE_CONTEXT_CHARS = 40;
// Labels before a bare 3-3-4 group: group 1 a part label (possibly "part number", "P/N", "SKU #"),
// group 2 a phone word. The nearest one decides.
const PHONE_CONTEXT_RE =
  /(?<![a-z])(?:((?:parts?|p\/n|pn|sku|model|serial|s\/n|item|catalog(?:ue)?|cat\.|ref|order|lot|batch|kit)(?:[ \t]*(?:number|no\.?|num\.?|#))?)|(phone|telephone|tel|mobile|cell|fax|call(?:ed|ing|s)?|text|sms|whatsapp|contact|reach|dial|ring|number|desk|office|home|hotline|helpline))(?![a-z])/gi;
const PHONE_KEYWORD_RE = /\b((?:phone|telephone|tel|mobile|cell|fax|call(?: me)?(?: at| on)?)\b\.?:?[ \t]*)(\+?\(?\d[\d ().-]{5,}\d)/gi;

// Cheap pre-checks: a pass runs only when its trigger is present (most text has none).
const API_KEY_HINT_RE = /sk-|[spr]k_(?:live|test)_|gh[pousr]_|github_pat_|AKIA|ASIA|xox[abposr]-|AIza|glpat-|hf_|npm_/;
const ASSIGNMENT_HINTS = ['key', 'secret', 'token', 'passw'];
const PHONE_KEYWORD_HINTS = ['phone', 'tel', 'mobile', 'cell', 'fax', 'call'];
// One scan of the lower-cased text for every keyword any pass needs (most text has none).
const ANY_KEYWORD_RE = /key|secret|token|passw|phone|tel|mobile|cell|fax|call|bearer|authorization/;
const IPV6_HINT_RE = /[0-9A-Fa-f]:[0-9A-Fa-f:]|::/;
const IPV4_HINT_RE = /\d\.\d{1,3}\.\d/;
const PHONE_INTL_HINT_RE = /\+\d/;
const PHONE_NANP_HINT_RE = /\d{3}[.-]\d{3}[.-]\d{4}|\(\d{3}\)|1[. -]\d{3}[. -]\d{3}[. -]\d{4}/;

function digitCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

// Characters of a base64/base64url/base62 token: A-Z a-z 0-9 + / _ -
const TOKEN_CHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  TOKEN_CHAR[c] = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 43 || c === 47 || c === 95 || c === 45 ? 1 : 0;
}
const isTokenChar = (c: number): boolean => c < 128 && TOKEN_CHAR[c] === 1;

/**
 * True when `s` has a run of at least `min` token characters. Probes the last character a run
 * starting at the current position would need and jumps past it when it is not a token character,
 * so prose costs a fraction of a character test per character (a regex retries at every position).
 */
export function hasLongToken(s: string, min: number): boolean {
  const n = s.length;
  // Invariant: i = 0 or s[i - 1] is not a token character.
  let i = 0;
  while (i + min <= n) {
    const probe = i + min - 1;
    if (!isTokenChar(s.charCodeAt(probe))) {
      i = probe + 1;
      continue;
    }
    let start = probe;
    while (start > i && isTokenChar(s.charCodeAt(start - 1))) start--;
    let end = probe + 1;
    while (end < n && end - start < min && isTokenChar(s.charCodeAt(end))) end++;
    if (end - start >= min) return true;
    i = end + 1;
  }
  return false;
}

/** Shannon entropy of the character distribution of `s`, in bits per character. */
export function shannonEntropy(s: string): number {
  const freq = new Map<number, number>();
  for (let i = 0; i < s.length; i++) freq.set(s.charCodeAt(i), (freq.get(s.charCodeAt(i)) ?? 0) + 1);
  let h = 0;
  for (const n of freq.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/** True for a bare string that looks like a random credential rather than a word, path or digest. */
export function looksLikeSecret(s: string): boolean {
  const body = s.replace(/=+$/, '');
  if (body.length < SECRET_MIN_CHARS) return false;
  let upper = 0;
  let lower = 0;
  let digits = 0;
  let slashes = 0;
  let lowerRun = 0;
  let wordChars = 0;
  for (let i = 0; i <= body.length; i++) {
    const c = i < body.length ? body.charCodeAt(i) : 0;
    if (c >= 97 && c <= 122) {
      lower++;
      lowerRun++;
      continue;
    }
    // Characters in lower-case runs of 4+ ("Factory", "settings"): word-like, rare in random text.
    if (lowerRun >= 4) wordChars += lowerRun;
    lowerRun = 0;
    if (c >= 65 && c <= 90) upper++;
    else if (c >= 48 && c <= 57) digits++;
    else if (c === 47) slashes++;
  }
  // Random base62/64 mixes all three classes; CamelCase identifiers and paths are mostly lower-case
  // words (random base62 of this length has ~8% of its characters in such runs) and have more
  // slashes than base64's 1-in-64.
  if (upper < 2 || lower < 2 || digits < 2) return false;
  if (wordChars > body.length * SECRET_MAX_WORD_FRACTION) return false;
  if (slashes > body.length / 16) return false;
  return shannonEntropy(body) >= SECRET_MIN_ENTROPY_BITS;
}

/** Public, loopback, private, link-local... anything but the few addresses that identify nobody. */
function isIdentifyingIpv4(ip: string): boolean {
  const first = Number(ip.slice(0, ip.indexOf('.')));
  return first !== 127 && first !== 0 && first !== 255;
}

function isIdentifyingIpv6(candidate: string): boolean {
  if (!net.isIPv6(candidate)) return false;
  const groups = candidate.split(':').filter((g) => g !== '');
  // "::1", "::", "a::" — and time-like "10:30::" shapes — are too short to be a real address in prose.
  return groups.length >= 2;
}

/**
 * Returns `text` with PII and secrets replaced by their tags, adding one to `counts[kind]` per
 * replacement. Pure apart from mutating `counts`.
 */
export function scrubText(text: string, counts: ScrubCounts): string {
  let s = text;
  if (s.includes('-----BEGIN')) {
    s = s.replace(PRIVATE_KEY_RE, () => {
      counts.private_key++;
      return SCRUB_TAGS.private_key;
    });
  }
  if (s.includes('eyJ')) {
    s = s.replace(JWT_RE, () => {
      counts.jwt++;
      return SCRUB_TAGS.jwt;
    });
  }
  const lower = s.toLowerCase();
  const keywords = ANY_KEYWORD_RE.test(lower);
  if (keywords && (lower.includes('bearer') || lower.includes('authorization'))) {
    s = s.replace(BEARER_RE, (_m, prefix: string) => {
      counts.bearer++;
      return prefix + SCRUB_TAGS.bearer;
    });
  }
  if (API_KEY_HINT_RE.test(s)) {
    s = s.replace(API_KEY_RE, () => {
      counts.api_key++;
      return SCRUB_TAGS.api_key;
    });
  }
  if (keywords && ASSIGNMENT_HINTS.some((h) => lower.includes(h))) {
    s = s.replace(ASSIGNMENT_RE, (m, prefix: string, value: string) => {
      // An assignment's value is a credential only if it is not plain prose ("password: required").
      if (value.startsWith('[') || /^[a-z]+$/.test(value) || /^[A-Z][a-z]+$/.test(value)) return m;
      counts.secret++;
      return prefix + SCRUB_TAGS.secret;
    });
  }
  if (hasLongToken(s, SECRET_MIN_CHARS)) {
    s = s.replace(BARE_SECRET_RE, (m) => {
      if (!looksLikeSecret(m)) return m;
      counts.secret++;
      return SCRUB_TAGS.secret;
    });
  }
  if (s.includes('@')) {
    s = s.replace(EMAIL_RE, (m) => {
      const tld = m.slice(m.lastIndexOf('.') + 1).toLowerCase();
      if (ASSET_TLDS.has(tld)) return m;
      counts.email++;
      return SCRUB_TAGS.email;
    });
  }
  if (IPV6_HINT_RE.test(s)) {
    s = s.replace(IPV6_RE, (m) => {
      if (!isIdentifyingIpv6(m)) return m;
      counts.ipv6++;
      return SCRUB_TAGS.ipv6;
    });
  }
  if (IPV4_HINT_RE.test(s)) {
    s = s.replace(IPV4_RE, (m, offset: number, whole: string) => {
      if (!isIdentifyingIpv4(m)) return m;
      if (VERSION_CONTEXT_RE.test(whole.slice(Math.max(0, offset - 12), offset))) return m;
      counts.ipv4++;
      return SCRUB_TAGS.ipv4;
    });
  }
  if (keywords && PHONE_KEYWORD_HINTS.some((h) => lower.includes(h))) {
    s = s.replace(PHONE_KEYWORD_RE, (m, prefix: string, number: string) => {
      const d = digitCount(number);
      if (d < PHONE_MIN_DIGITS || d > PHONE_MAX_DIGITS) return m;
      counts.phone++;
      return prefix + SCRUB_TAGS.phone;
    });
  }
  if (PHONE_INTL_HINT_RE.test(s)) {
    s = s.replace(PHONE_INTL_RE, (m) => {
      const d = digitCount(m);
      if (d < 8 || d > PHONE_MAX_DIGITS) return m;
      counts.phone++;
      return SCRUB_TAGS.phone;
    });
  }
  if (PHONE_NANP_HINT_RE.test(s)) {
    s = s.replace(PHONE_NANP_RE, (m, formatted: string | undefined, _trunk, _bare, _sep, offset: number, whole: string) => {
      if (formatted === undefined && !phoneContextBefore(whole, offset)) return m;
      counts.phone++;
      return SCRUB_TAGS.phone;
    });
  }
  return s;
}

/**
 * True when the nearest label in the PHONE_CONTEXT_CHARS before `offset` (same line) is a phone word
 * rather than a part label: what tells a phone number from a part number of the same 3-3-4 shape.
 */
export function phoneContextBefore(text: string, offset: number): boolean {
  let window = text.slice(Math.max(0, offset - PHONE_CONTEXT_CHARS), offset);
  const nl = window.lastIndexOf('\n');
  if (nl !== -1) window = window.slice(nl + 1);
  let phone = false;
  for (const m of window.matchAll(PHONE_CONTEXT_RE)) phone = m[2] !== undefined;
  return phone;
}

/** Entries the scrub cache keeps (most recently used). */
export const SCRUB_CACHE_ENTRIES = 256;
/** Longest text the cache stores, in characters (bounds the cache at ENTRIES × this × 2 bytes). */
export const SCRUB_CACHE_MAX_CHARS = 8192;

/**
 * `scrubText` with a small LRU cache: the system prompt (and often the retrieved context) repeats
 * across thousands of logged responses, so each distinct text is scanned once. Counts are still
 * added for every occurrence, exactly as `scrubText` would. Memory ≤ ENTRIES × MAX_CHARS × 4 bytes
 * (input + output strings): 8 MiB at the defaults.
 */
export class ScrubCache {
  private readonly entries = new Map<string, { out: string; counts: ScrubCounts }>();

  constructor(private readonly maxEntries = SCRUB_CACHE_ENTRIES) {}

  scrub(text: string, counts: ScrubCounts): string {
    if (text.length > SCRUB_CACHE_MAX_CHARS) return scrubText(text, counts);
    const hit = this.entries.get(text);
    if (hit) {
      // Refresh recency: Map iteration order is insertion order.
      this.entries.delete(text);
      this.entries.set(text, hit);
      addScrubCounts(counts, hit.counts);
      return hit.out;
    }
    const own = emptyScrubCounts();
    const out = scrubText(text, own);
    addScrubCounts(counts, own);
    this.entries.set(text, { out, counts: own });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    return out;
  }
}

/**
 * Where a scrub replacement was made, as counted in the export manifest: the parts of the rendered
 * prompt (system messages; user messages outside the retrieved passages — the question and earlier
 * turns; the retrieved passages; earlier assistant messages) and the trained outputs (a logged
 * answer, a user's correction).
 */
export const SCRUB_FIELDS = ['prompt_system', 'prompt_user', 'prompt_context', 'prompt_assistant', 'answer', 'correction'] as const;
export type ScrubField = (typeof SCRUB_FIELDS)[number];

// A passage header at a line start: "[1] Title › Heading (source: file)" (src/chat/context.ts formatPassage).
const FIRST_PASSAGE_RE = /(?:^|\n)\[1\] /g;

/**
 * The span [start, end) of the retrieved passages inside a rendered user message: from the first
 * line starting with "[1] " (the first passage header) to the last occurrence of the user's
 * question, or to the end of the message when the question comes before the passages. Null when the
 * message has no passage header or the question (non-empty) is not in it: then nothing of the
 * message is taken for corpus text, so all of it is scrubbed as user text.
 */
export function passageSpan(content: string, query: string): { start: number; end: number } | null {
  if (query === '') return null;
  const qAt = content.lastIndexOf(query);
  if (qAt === -1) return null;
  const qEnd = qAt + query.length;
  for (const m of content.matchAll(FIRST_PASSAGE_RE)) {
    const start = m.index + (m[0].startsWith('\n') ? 1 : 0);
    // A "[1] " inside the question itself is the user's text, not a passage header.
    if (start >= qAt && start < qEnd) continue;
    return start < qAt ? { start, end: qAt } : { start, end: content.length };
  }
  return null;
}

/**
 * Scrubs a rendered prompt with `scrub(text, field)`: system and earlier assistant messages whole,
 * every user message except its retrieved passages (see passageSpan; only the last user message —
 * the one holding this turn's question — is searched for passages), and the passages themselves
 * only when `scrubContext` is set. Returns new messages (other keys, like `weight`, are kept).
 */
export function scrubPromptMessages<M extends { role: string; content: string }>(
  messages: readonly M[],
  query: string,
  opts: { scrubContext: boolean },
  scrub: (text: string, field: ScrubField) => string,
): M[] {
  let lastUser = -1;
  messages.forEach((m, i) => {
    if (m.role === 'user') lastUser = i;
  });
  return messages.map((m, i) => {
    if (m.role === 'system') return { ...m, content: scrub(m.content, 'prompt_system') };
    if (m.role !== 'user') return { ...m, content: scrub(m.content, 'prompt_assistant') };
    const span = i === lastUser ? passageSpan(m.content, query) : null;
    if (!span) return { ...m, content: scrub(m.content, 'prompt_user') };
    const c = m.content;
    const passages = c.slice(span.start, span.end);
    const content = scrub(c.slice(0, span.start), 'prompt_user') + (opts.scrubContext ? scrub(passages, 'prompt_context') : passages) + scrub(c.slice(span.end), 'prompt_user');
    return { ...m, content };
  });
}
