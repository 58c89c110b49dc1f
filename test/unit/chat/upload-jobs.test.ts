/** Pure pieces of uploads and jobs: file-name sanitizing, the ETA, the job view. */
import { describe, expect, it } from 'vitest';
import { estimateEtaSeconds, jobView } from '../../../src/chat/jobs.ts';
import { MAX_UPLOAD_NAME_CHARS, sanitizeUploadName } from '../../../src/chat/http/upload.ts';

describe('sanitizeUploadName', () => {
  it('keeps the last path segment only', () => {
    expect(sanitizeUploadName('../../etc/passwd')).toBe('passwd');
    expect(sanitizeUploadName('..\\..\\win.ini')).toBe('win.ini');
    expect(sanitizeUploadName('dir/sub/notes.md')).toBe('notes.md');
  });
  it('replaces control characters and U+FFFD (invalid UTF-8), drops leading dots, keeps other letters', () => {
    expect(sanitizeUploadName('caf\ufffd\ufffd.md')).toBe('caf__.md');
    expect(sanitizeUploadName('a\u0000b\nc.txt')).toBe('a_b_c.txt');
    expect(sanitizeUploadName('.hidden.md')).toBe('hidden.md');
    expect(sanitizeUploadName('Ünïcödé 文档.md')).toBe('Ünïcödé 文档.md');
  });
  it('is null when nothing usable is left', () => {
    expect(sanitizeUploadName('')).toBeNull();
    expect(sanitizeUploadName('../')).toBeNull();
    expect(sanitizeUploadName('..')).toBeNull();
    expect(sanitizeUploadName('\ufffd\ufffd')).toBeNull();
  });
  it('cuts long names, keeping the extension', () => {
    const n = sanitizeUploadName(`${'x'.repeat(500)}.pdf`)!;
    expect([...n].length).toBe(MAX_UPLOAD_NAME_CHARS);
    expect(n.endsWith('.pdf')).toBe(true);
  });
});

describe('estimateEtaSeconds', () => {
  it('is the pace so far times what is left, null before the first file', () => {
    expect(estimateEtaSeconds(1000, 0, 10)).toBeNull();
    expect(estimateEtaSeconds(2000, 2, 10)).toBe(8);
    expect(estimateEtaSeconds(2000, 10, 10)).toBe(0);
    expect(estimateEtaSeconds(1234, 3, 4)).toBe(0.5);
  });
});

describe('jobView', () => {
  it('is the contract shape', () => {
    const v = jobView({
      id: 'job_1', kind: 'upload', state: 'running', collection: 'c', userId: 1, filesTotal: 3, filesDone: 1, filesFailed: 1, chunksEmbedded: 4,
      etaS: 2, failures: [{ file: 'a', reason: 'empty' }], error: null, summary: null, createdAt: 't', startedAt: 't', updatedAt: 't', finishedAt: null,
    });
    expect(v).toEqual({ id: 'job_1', state: 'running', collection: 'c', files_total: 3, files_done: 1, files_failed: 1, chunks_embedded: 4, eta_s: 2, failures: [{ file: 'a', reason: 'empty' }], error: null });
  });
});
