import { describe, expect, it } from 'vitest';
import { SCRUB_KINDS, SCRUB_TAGS, ScrubCache, emptyScrubCounts, hasLongToken, looksLikeSecret, passageSpan, scrubPromptMessages, scrubText } from '../../../src/export/scrub.ts';
import type { ScrubCounts, ScrubField, ScrubKind } from '../../../src/export/scrub.ts';

function scrub(text: string): { out: string; counts: Partial<Record<ScrubKind, number>> } {
  const counts = emptyScrubCounts();
  const out = scrubText(text, counts);
  return { out, counts: Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0)) };
}

/** [input, kind, the secret substring that must be gone] */
const POSITIVES: Array<[string, ScrubKind, string]> = [
  ['write to jane.doe+lists@example.co.uk today', 'email', 'jane.doe+lists@example.co.uk'],
  ['Contact: OPS_Team@corp-mail.example.org.', 'email', 'OPS_Team@corp-mail.example.org'],
  ['call +1 (555) 123-4567 after six', 'phone', '123-4567'],
  ['UK office +44 20 7946 0958', 'phone', '7946 0958'],
  ['E.164 +4915112345678 works', 'phone', '4915112345678'],
  ['desk 555-123-4567 or', 'phone', '555-123-4567'],
  ['desk (555) 123 4567 or', 'phone', '123 4567'],
  ['reach me at 555.123.4567.', 'phone', '555.123.4567'],
  ['call (555) 201-3344 today', 'phone', '201-3344'],
  ['my cell is +1 555 201 3344', 'phone', '555 201 3344'],
  ['Questions? Our hotline 1-800-555-0199.', 'phone', '800-555-0199'],
  ['Parts desk: 555-201-3344', 'phone', '555-201-3344'],
  ['phone: 030 1234567', 'phone', '030 1234567'],
  ['Tel. 0612 34 56 78', 'phone', '0612 34 56 78'],
  ['server at 192.168.1.20:8080 is down', 'ipv4', '192.168.1.20'],
  ['from 8.8.4.4, then', 'ipv4', '8.8.4.4'],
  ['host 2001:db8:85a3::8a2e:370:7334 answered', 'ipv6', '2001:db8:85a3::8a2e:370:7334'],
  ['link-local fe80::1ff:fe23:4567:890a%', 'ipv6', 'fe80::1ff:fe23:4567:890a'],
  ['full 2001:0db8:0000:0000:0000:ff00:0042:8329 form', 'ipv6', '2001:0db8:0000:0000:0000:ff00:0042:8329'],
  ['key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z done', 'api_key', 'sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z'],
  ['sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789', 'api_key', 'abcdefghijklmnopqrstuvwxyz0123456789'],
  ['token ghp_16C7e42F292c6912E7710c838347Ae178B4a here', 'api_key', 'ghp_16C7e42F292c6912E7710c838347Ae178B4a'],
  ['aws AKIAIOSFODNN7EXAMPLE key', 'api_key', 'AKIAIOSFODNN7EXAMPLE'],
  ['slack xoxb-1234567890-abcdefghij', 'api_key', 'xoxb-1234567890-abcdefghij'],
  ['stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc', 'api_key', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'],
  ['google AIzaSyA-1234567890abcdefghijklmnopqrstu', 'api_key', 'AIzaSyA-1234567890abcdefghijklmnopqrstu'],
  ['hf hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789', 'api_key', 'hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789'],
  ['Authorization: Bearer abcdef1234567890ABCDEF.xyz', 'bearer', 'abcdef1234567890ABCDEF.xyz'],
  ['curl -H "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw=="', 'bearer', 'dXNlcjpwYXNzd29yZDEyMw=='],
  [
    'jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c ok',
    'jwt',
    'SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c',
  ],
  ['-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd\n-----END RSA PRIVATE KEY-----', 'private_key', 'MIIEowIBAAKCAQEA1234'],
  ['password=hunter22 in the config', 'secret', 'hunter22'],
  ['export OPENAI_API_KEY="abc123XYZ987def"', 'secret', 'abc123XYZ987def'],
  ['aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'secret', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
  ['client_secret: 7f3a9c0e1b2d4f6a8c0e2b4d6f8a0c2e', 'secret', '7f3a9c0e1b2d4f6a8c0e2b4d6f8a0c2e'],
  ['leaked 8Hk2LmP9qRsT4vWx7Yz1AbCdEfGh3JkL in a log', 'secret', '8Hk2LmP9qRsT4vWx7Yz1AbCdEfGh3JkL'],
];

/** Ordinary text that must come out unchanged. */
const NEGATIVES: string[] = [
  'In 2024 the fleet grew by 1,000,000 passengers; tickets cost $19.99.',
  'Released on 2024-01-15 at 12:30:45 (UTC), build 20240115.',
  'Node v20.20.2, transformers 4.3.1, version 1.2.3.4 and release 10.0.0.1 notes.',
  'Loopback 127.0.0.1, any 0.0.0.0 and netmask 255.255.255.0 identify nobody.',
  'Error E-417 on the Halcyon X3; see section 3.14.159 and ratio 3.14159.',
  'ISBN 978-3-16-148410-0 and order no. 20240115123.',
  'The sha256 is 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 and the commit 3f786850e387550fdab836ed7e6dc881de23001b.',
  'Request id 123e4567-e89b-12d3-a456-426614174000 was logged.',
  'std::vector<int> and Foo::Bar::baz() in C++; MAC 00:1A:2B:3C:4D:5E.',
  'Times 10:30, 07:15 and 16:40 on weekdays; ratio 16:9.',
  'Class AbstractSingletonProxyFactoryBean2024Impl and getUserAccountSettingsFromDatabaseV2.',
  'Path /usr/lib/x86_64-linux-gnu/libsqlite3.so.0 and src/export/run.ts.',
  'npm install @huggingface/transformers and icon@2x.png assets.',
  'The password: required field, and token=abc; max_tokens=512.',
  'Bearer bonds are paper; sk-short is not a key.',
  'Call me maybe; phone 12 is short; fax 123.',
  'Temperature +20.5 degrees, +3 points, pages 100-200, score 3-1.',
  'Matrix 1 0 0 0 1 0 0 0 1 and 5 000 000 rows.',
  // 3-3-4 part numbers: the phone shape, but a part label and no phone context or formatting.
  'Part 555-201-3344 fits the pump housing.',
  'Order P/N 123-456-7890 (rev B) and part number 555.201.3344.',
  'Replace the seal (SKU 200-300-4000) every 500 hours.',
  'Codes 555-201-3344 and 555-201-3345 are listed in table 4.',
];

describe('scrubText', () => {
  it.each(POSITIVES)('scrubs %s as %s', (input, kind, secret) => {
    const { out, counts } = scrub(input);
    expect(out).not.toContain(secret);
    expect(out).toContain(SCRUB_TAGS[kind]);
    expect(counts[kind]).toBe(1);
    // Nothing else was counted for a single planted item.
    expect(Object.values(counts).reduce((a, b) => a + (b ?? 0), 0)).toBe(1);
  });

  it.each(NEGATIVES)('leaves ordinary text alone: %s', (input) => {
    const { out, counts } = scrub(input);
    expect(counts).toEqual({});
    expect(out).toBe(input);
  });

  it('counts each occurrence of each kind in a mixed text', () => {
    const text = [
      'Ann (ann@example.com) and Bob (bob@example.org) share 10.1.2.3 and 10.1.2.4.',
      'Ann: +1 415 555 0100. Key: sk-abcdefghijklmnopqrstuvwxyz123456.',
      'Authorization: Bearer ZXhhbXBsZXRva2VuMTIzNDU2Nzg5MA and host fd00::1:2.',
    ].join('\n');
    const { out, counts } = scrub(text);
    expect(counts).toEqual({ email: 2, ipv4: 2, phone: 1, api_key: 1, bearer: 1, ipv6: 1 });
    for (const secret of ['ann@example.com', 'bob@example.org', '10.1.2.3', '555 0100', 'sk-abc', 'ZXhhbXBs', 'fd00::1:2']) expect(out).not.toContain(secret);
    expect(out).toContain('Ann (');
  });

  it('keeps the text around a scrubbed bearer token and assignment key', () => {
    expect(scrub('curl -H "Authorization: Bearer abcdefghijklmnop1234"').out).toBe('curl -H "Authorization: Bearer [TOKEN]"');
    expect(scrub('db_password: S3cret!pass').out).toBe('db_password: [SECRET]');
  });

  it('does not re-scrub its own tags and is idempotent', () => {
    const once = scrub('mail a@b.io, ip 8.8.8.8, key ghp_abcdefghijklmnopqrstuvwxyz0123456789').out;
    const twice = scrub(once);
    expect(twice.out).toBe(once);
    expect(twice.counts).toEqual({});
  });

  it('exposes a tag and a counter for every kind', () => {
    expect(Object.keys(emptyScrubCounts()).sort()).toEqual([...SCRUB_KINDS].sort());
    for (const k of SCRUB_KINDS) expect(SCRUB_TAGS[k]).toMatch(/^\[[A-Z_]+\]$/);
  });
});

describe('looksLikeSecret', () => {
  it('accepts random base62/base64 and rejects words, digests and short strings', () => {
    expect(looksLikeSecret('8Hk2LmP9qRsT4vWx7Yz1AbCdEfGh3JkL')).toBe(true);
    expect(looksLikeSecret('aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Q0MjE3')).toBe(true);
    expect(looksLikeSecret('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08')).toBe(false);
    expect(looksLikeSecret('AbstractSingletonProxyFactoryBean2024Impl')).toBe(false);
    expect(looksLikeSecret('Ab1Cd2Ef3')).toBe(false);
  });
});

describe('ScrubCache', () => {
  it('gives the same text and the same per-occurrence counts as scrubText', () => {
    const texts = ['sys prompt, mail ops@example.com', 'q1 from 8.8.8.8', 'sys prompt, mail ops@example.com', 'plain', 'sys prompt, mail ops@example.com'];
    const direct = emptyScrubCounts();
    const cached = emptyScrubCounts();
    const cache = new ScrubCache(2);
    for (const t of texts) expect(cache.scrub(t, cached)).toBe(scrubText(t, direct));
    expect(cached).toEqual(direct);
    expect(cached.email).toBe(3);
  });
});

describe('hasLongToken', () => {
  it('finds a run of at least min token characters anywhere, and nothing shorter', () => {
    const run = (n: number) => 'aB3+/_-x'.repeat(8).slice(0, n);
    for (const [prefix, suffix] of [
      ['', ''],
      ['x ', ' y'],
      ['words and more words ', '.'],
      ['a'.repeat(31) + ' ', ''],
      ['', ' ' + 'b'.repeat(31)],
    ]) {
      expect(hasLongToken(`${prefix}${run(32)}${suffix}`, 32)).toBe(true);
      expect(hasLongToken(`${prefix}${run(31)}${suffix}`, 32)).toBe(false);
    }
    expect(hasLongToken('a'.repeat(100), 32)).toBe(true);
    expect(hasLongToken(`${'a'.repeat(31)}.${'b'.repeat(31)}`, 32)).toBe(false);
    expect(hasLongToken('short', 32)).toBe(false);
    // Agrees with the obvious regex on pseudo-random mixes.
    let x = 12345;
    for (let t = 0; t < 300; t++) {
      let s = '';
      for (let i = 0; i < 200; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        s += x % 40 === 0 ? ' ' : x % 97 === 0 ? '.' : String.fromCharCode(97 + (x % 26));
      }
      expect(hasLongToken(s, 32)).toBe(/[A-Za-z0-9+/_-]{32}/.test(s));
    }
  });
});

describe('scrubPromptMessages: user text and answers by default, retrieved passages only on request', () => {
  const passage = "[1] Network guide › Static addresses (source: net.md)\nSet inet '192.168.7.20' on eth0, then INSERT INTO staff VALUES ('Alice','555-201-3344'); mail admin@example.com.";
  const question = 'Is ann@example.com allowed to use 10.9.8.7?';
  const user = `Conversation so far:\nUser: my laptop is 10.1.2.3\nAssistant: Noted.\n\nContext passages:\n\n${passage}\n\n[2] FAQ › Contact (source: faq.md)\nWrite to help@example.org.\n\nQuestion: ${question}`;
  const messages = [
    { role: 'system' as const, content: 'Rules.\n\nNotes: the user is ann@example.com.' },
    { role: 'user' as const, content: user },
  ];

  function run(scrubContext: boolean, msgs: ReadonlyArray<{ role: string; content: string; weight?: 0 }> = messages, query = question): { out: Array<{ role: string; content: string }>; byField: Partial<Record<ScrubField, Partial<ScrubCounts>>> } {
    const byField: Partial<Record<ScrubField, ScrubCounts>> = {};
    const out = scrubPromptMessages(msgs, query, { scrubContext }, (text, field) => scrubText(text, (byField[field] ??= emptyScrubCounts())));
    const compact = Object.fromEntries(
      Object.entries(byField).map(([f, c]) => [f, Object.fromEntries(Object.entries(c).filter(([, n]) => n > 0))]),
    ) as Partial<Record<ScrubField, Partial<ScrubCounts>>>;
    return { out, byField: compact };
  }

  it('finds the passages between the first [1] header and the question', () => {
    const span = passageSpan(user, question);
    expect(span).not.toBeNull();
    expect(user.slice(span!.start, span!.end)).toBe(`${passage}\n\n[2] FAQ › Contact (source: faq.md)\nWrite to help@example.org.\n\nQuestion: `);
    expect(passageSpan('Context passages:\n\n(no passages were found for this question)\n\nQuestion: q', 'q')).toBeNull();
    // The question cannot be located: no span, so everything is scrubbed as user text.
    expect(passageSpan(user, 'a question that is not there')).toBeNull();
  });

  it("leaves the manual's own text alone by default and scrubs the user's words around it", () => {
    const { out, byField } = run(false);
    const text = out[1]!.content;
    expect(text).toContain(passage);
    expect(text).toContain('help@example.org');
    expect(text).toContain('User: my laptop is [IP_ADDRESS]');
    expect(text).toContain('Question: Is [EMAIL] allowed to use [IP_ADDRESS]?');
    expect(out[0]!.content).toBe('Rules.\n\nNotes: the user is [EMAIL].');
    expect(byField).toEqual({ prompt_system: { email: 1 }, prompt_user: { email: 1, ipv4: 2 } });
  });

  it('scrubs the passages too with scrubContext, counted under prompt_context', () => {
    const { out, byField } = run(true);
    const text = out[1]!.content;
    expect(text).not.toContain('192.168.7.20');
    expect(text).not.toContain('help@example.org');
    // The phone rule needs phone context or formatting: a quoted 3-3-4 value in SQL is left alone.
    expect(text).toContain("'Alice','555-201-3344'");
    expect(byField.prompt_context).toEqual({ ipv4: 1, email: 2 });
  });

  it('scrubs a whole user message when it has no passages or the question is not in it, and earlier turns by role', () => {
    const noCtx = [{ role: 'user' as const, content: 'Context passages:\n\n(no passages were found)\n\nQuestion: mail me at ann@example.com' }];
    expect(run(false, noCtx, 'mail me at ann@example.com').byField).toEqual({ prompt_user: { email: 1 } });
    expect(run(false, messages, 'not the question').byField).toEqual({ prompt_system: { email: 1 }, prompt_user: { email: 3, ipv4: 3 } });
    const turns = [
      { role: 'user' as const, content: 'first question from 10.1.2.3' },
      { role: 'assistant' as const, content: 'write to ops@example.org', weight: 0 as const },
      { role: 'user' as const, content: user },
    ];
    const r = run(false, turns);
    expect(r.byField).toEqual({ prompt_user: { ipv4: 3, email: 1 }, prompt_assistant: { email: 1 } });
    expect(r.out[1]).toEqual({ role: 'assistant', content: 'write to [EMAIL]', weight: 0 });
  });
});
