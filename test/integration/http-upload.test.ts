/**
 * Uploads (issue 14, items 1-2) on a real server: POST /v1/documents streams files to
 * <data dir>/uploads/, a job runs them through the CLI's ingest pipeline (source `upload:NAME`),
 * GET /v1/jobs/:id and its SSE stream report progress. Every bad input of the issue that applies to
 * uploads: an empty file, a binary disguised as .md, a file over MNEME_MAX_FILE_BYTES (413 while
 * streaming, nothing left on disk), a zip bomb disguised as PDF, 0 files, a `../` name, an invalid
 * UTF-8 name, a client that disconnects mid-upload; and two uploads of the same file at once.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, parseSse, tempDir, testEnv, waitFor } from './http-helpers.ts';
import type { TestServer } from './http-helpers.ts';
import { startUploadServer, upload, waitForJob } from './upload-helpers.ts';

const MAX_FILE_BYTES = 200_000;
let dir: string;
let srv: TestServer;
let admin: string;
let bob: string;

const uploadsDir = () => path.join(dir, 'uploads');
/** Files left anywhere under <data dir>/uploads. */
const leftovers = () => (fs.existsSync(uploadsDir()) ? fs.readdirSync(uploadsDir(), { recursive: true }).filter((p) => fs.statSync(path.join(uploadsDir(), String(p))).isFile()) : []);
const docs = async (q = '') => (await fetch(`${srv.url}/v1/documents?limit=200${q}`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.json())).data as Array<Record<string, any>>;
const chat = async (message: string, collection?: string) =>
  fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ message, collection }) }).then((r) => r.json());

/** A multipart body built by hand (for names fetch's FormData would re-encode). */
function rawMultipart(parts: Array<{ filename: Buffer; content: Buffer }>, boundary = 'mnemeBoundary42'): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="`), p.filename, Buffer.from('"\r\nContent-Type: application/octet-stream\r\n\r\n'), p.content, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

function postRaw(body: Buffer, boundary = 'mnemeBoundary42'): Promise<{ status: number; body: any }> {
  const u = new URL(`${srv.url}/v1/documents`);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  dir = tempDir();
  srv = await startUploadServer(testEnv(dir, { MNEME_MAX_FILE_BYTES: String(MAX_FILE_BYTES) }));
  admin = await srv.key('root', true);
  bob = await srv.key('bob');
}, 120_000);

afterAll(async () => {
  await srv?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('POST /v1/documents', () => {
  it('ingests uploaded files through the ingest pipeline into the collection; answers cite them; the job reports progress over SSE', async () => {
    const res = await upload(srv.url, admin, [
      { name: 'zanzibar-pumps.md', content: '# Zanzibar pumps\n\nThe Zanzibar pump primes itself in 40 seconds when the quokka valve is open.\n' },
      { name: 'quillfeather.txt', content: 'Quillfeather routers reboot every night at 03:10 to rotate their keys.\n' },
    ], 'team');
    expect(res.status).toBe(202);
    expect(res.body.job_id).toMatch(/^job_/);
    const events = parseSse(await fetch(`${srv.url}/v1/jobs/${res.body.job_id}/events`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.text()));
    expect(events[0]!.event).toBe('progress');
    const done = events.at(-1)!;
    expect(done.event).toBe('done');
    expect(JSON.parse(done.data)).toMatchObject({ id: res.body.job_id, state: 'done', files_total: 2, files_done: 2, files_failed: 0, failures: [], eta_s: null });
    const job = await waitForJob(srv.url, admin, res.body.job_id);
    expect(job.chunks_embedded).toBeGreaterThanOrEqual(2);

    const team = await docs('&collection=team');
    expect(team.map((d) => d.source).sort()).toEqual(['upload:quillfeather.txt', 'upload:zanzibar-pumps.md']);
    expect(team.find((d) => d.source === 'upload:zanzibar-pumps.md')).toMatchObject({ title: 'Zanzibar pumps', collection: 'team' });
    const answer = await chat('When does the Zanzibar pump prime itself with the quokka valve open?', 'team');
    expect(answer.citations.map((c: { source: string }) => c.source)).toContain('upload:zanzibar-pumps.md');
    // Uploaded files are removed once ingested; the database holds the document.
    expect(leftovers()).toEqual([]);
    // Another user cannot see the job.
    expect((await fetch(`${srv.url}/v1/jobs/${res.body.job_id}`, { headers: { authorization: `Bearer ${bob}` } })).status).toBe(404);
  }, 60_000);

  it('the same file again is unchanged (content hash); a new version of the same name updates the document', async () => {
    const v1 = '# Ostrich cache\n\nThe ostrich cache keeps 12 entries.\n';
    const first = await waitForJob(srv.url, admin, (await upload(srv.url, admin, [{ name: 'ostrich.md', content: v1 }], 'versions')).body.job_id);
    expect(first.state).toBe('done');
    const [doc1] = await docs('&collection=versions');
    const again = await waitForJob(srv.url, admin, (await upload(srv.url, admin, [{ name: 'ostrich.md', content: v1 }], 'versions')).body.job_id);
    expect(again.state).toBe('done');
    const job = await (await fetch(`${srv.url}/v1/jobs/${again.id}`, { headers: { authorization: `Bearer ${admin}` } })).json();
    expect(job.chunks_embedded).toBe(0);
    expect(await docs('&collection=versions')).toEqual([doc1]);
    await waitForJob(srv.url, admin, (await upload(srv.url, admin, [{ name: 'ostrich.md', content: '# Ostrich cache\n\nThe ostrich cache now keeps 64 entries.\n' }], 'versions')).body.job_id);
    const after = await docs('&collection=versions');
    expect(after).toHaveLength(1);
    expect(after[0]!.id).toBe(doc1!.id);
    expect(after[0]!.bytes).not.toBe(doc1!.bytes);
    expect(count(srv, 'chunks', "text LIKE '%64 entries%'")).toBe(1);
    expect(count(srv, 'chunks', "text LIKE '%12 entries%'")).toBe(0);
  }, 60_000);

  it('two uploads of the same file at once make one document', async () => {
    const file = { name: 'twin.md', content: '# Twin\n\nTwin uploads land once.\n' };
    const [a, b] = await Promise.all([upload(srv.url, admin, [file], 'twins'), upload(srv.url, admin, [file], 'twins')]);
    await Promise.all([waitForJob(srv.url, admin, a.body.job_id), waitForJob(srv.url, admin, b.body.job_id)]);
    expect(await docs('&collection=twins')).toHaveLength(1);
    expect(count(srv, 'documents', "collection = 'twins'")).toBe(1);
  }, 60_000);

  it('bad files fail the file, not the job, each with its reason: empty, binary disguised as .md, zip bomb disguised as PDF', async () => {
    const bomb = Buffer.concat([Buffer.from('PK\x03\x04'), zlib.deflateRawSync(Buffer.alloc(64 * 1024 * 1024))]);
    expect(bomb.length).toBeLessThan(MAX_FILE_BYTES);
    const binary = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    const res = await upload(srv.url, admin, [
      { name: 'empty.md', content: '' },
      { name: 'notes.md', content: new Uint8Array(binary) },
      { name: 'report.pdf', content: new Uint8Array(bomb) },
      { name: 'fine.md', content: '# Fine\n\nThis one is fine.\n' },
    ], 'bad');
    const job = await waitForJob(srv.url, admin, res.body.job_id);
    expect(job).toMatchObject({ state: 'done', files_total: 4, files_done: 4, files_failed: 3 });
    const reasons = Object.fromEntries(job.failures.map((f: { file: string; reason: string }) => [f.file, f.reason]));
    expect(reasons['empty.md']).toBe('empty');
    expect(reasons['notes.md']).toBe('binary');
    expect(['parse_error', 'binary', 'undecodable']).toContain(reasons['report.pdf']);
    expect((await docs('&collection=bad')).map((d) => d.source)).toEqual(['upload:fine.md']);
    expect(leftovers()).toEqual([]);
  }, 60_000);

  it('a file over MNEME_MAX_FILE_BYTES is 413 while streaming, and nothing is left on disk or in the store', async () => {
    const jobsBefore = count(srv, 'jobs');
    const res = await upload(srv.url, admin, [{ name: 'small.md', content: '# Small\n\nsmall\n' }, { name: 'huge.md', content: 'x'.repeat(MAX_FILE_BYTES * 3) }], 'big');
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
    expect(res.body.error.message).toContain('huge.md');
    expect(leftovers()).toEqual([]);
    expect(fs.readdirSync(uploadsDir())).toEqual([]);
    expect(count(srv, 'jobs')).toBe(jobsBefore);
    expect(await docs('&collection=big')).toEqual([]);
  });

  it('0 files, a body that is not multipart, a bad collection: 400; a non-admin without write access: 403', async () => {
    const none = await upload(srv.url, admin, [], 'x');
    expect(none.status).toBe(400);
    expect(none.body.error.message).toContain('file');
    const json = await fetch(`${srv.url}/v1/documents`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(400);
    expect((await upload(srv.url, admin, [{ name: 'a.md', content: '# A\n\na\n' }], '../etc')).status).toBe(400);
    // A collection bob reads (public) but may not write (no grant): 403 (access control: test/integration/acl-isolation.test.ts).
    await srv.deps.store.collections.create({ name: 'x', visibility: 'public', createdBy: null, createdAt: new Date().toISOString() });
    const forbidden = await upload(srv.url, bob, [{ name: 'a.md', content: '# A\n\na\n' }], 'x');
    expect(forbidden.status).toBe(403);
    expect(leftovers()).toEqual([]);
  });

  it('names: `../` keeps only the last segment; invalid UTF-8 is replaced; nothing is written outside the job directory', async () => {
    const res = await postRaw(rawMultipart([
      { filename: Buffer.from('../../../escape.md'), content: Buffer.from('# Escape\n\nTried to escape.\n') },
      { filename: Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9, 0xff]), Buffer.from('.md')]), content: Buffer.from('# Cafe\n\nInvalid bytes in the name.\n') },
    ]));
    expect(res.status).toBe(202);
    const job = await waitForJob(srv.url, admin, res.body.job_id);
    expect(job).toMatchObject({ state: 'done', files_failed: 0 });
    const sources = (await docs('&collection=default')).map((d) => d.source).sort();
    expect(sources).toEqual(['upload:caf__.md', 'upload:escape.md']);
    expect(fs.existsSync(path.join(dir, '..', 'escape.md'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'escape.md'))).toBe(false);
  }, 60_000);

  it('a client that disconnects mid-upload leaves no job, no document and no temp file', async () => {
    const jobsBefore = count(srv, 'jobs');
    const docsBefore = count(srv, 'documents');
    const u = new URL(`${srv.url}/v1/documents`);
    const head = Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename="partial.md"\r\nContent-Type: text/markdown\r\n\r\n# Partial\n\n');
    await new Promise<void>((resolve) => {
      const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'multipart/form-data; boundary=B', 'content-length': 100_000 } });
      req.on('error', () => resolve());
      req.write(head);
      req.write('y'.repeat(20_000));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    await waitFor(() => leftovers().length === 0 && (!fs.existsSync(uploadsDir()) || fs.readdirSync(uploadsDir()).length === 0), 5000, 'upload dir cleaned');
    expect(count(srv, 'jobs')).toBe(jobsBefore);
    expect(count(srv, 'documents')).toBe(docsBefore);
  });
});
