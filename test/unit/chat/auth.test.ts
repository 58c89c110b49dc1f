import { describe, expect, it } from 'vitest';
import { parseBearer } from '../../../src/chat/http/auth.ts';

describe('parseBearer', () => {
  it('extracts the token from a Bearer header, case-insensitively', () => {
    expect(parseBearer('Bearer mn_abc-DEF_123')).toBe('mn_abc-DEF_123');
    expect(parseBearer('bearer   mn_x ')).toBe('mn_x');
  });
  it('rejects missing, other schemes, empty, spaced and oversized values', () => {
    for (const h of [undefined, '', 'Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearer a b', 'Token x', `Bearer ${'a'.repeat(600)}`]) {
      expect(parseBearer(h), String(h)).toBeNull();
    }
  });
});
