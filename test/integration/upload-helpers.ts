/**
 * A test server built like `mneme serve` with uploads enabled (the entry point hands the app the
 * ingest pipeline: ingest/upload.ts), plus multipart helpers. Builds on http-helpers.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Database from 'better-sqlite3';
import { createApp } from '../../src/chat/http/app.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import { createUser } from '../../src/chat/users.ts';
import { loadConfig } from '../../src/core/config.ts';
import { uploadIngester } from '../../ingest/upload.ts';
import type { TestServer } from './http-helpers.ts';

/** startTestServer's server, with POST /v1/documents wired as `mneme serve` wires it. */
export async function startUploadServer(env: Record<string, string>): Promise<TestServer> {
  const config = loadConfig(env, { host: '127.0.0.1', port: 0 });
  const deps = await buildServerDeps(config);
  const ingestFiles = uploadIngester({ store: deps.store, dataDir: config.dataDir, maxFileBytes: config.maxFileBytes, embedder: deps.embedder });
  const app = createApp({ ...deps, ingestFiles });
  const server = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const db = new Database(config.dbFile);
  let stopped = false;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    config,
    deps,
    server,
    db,
    key: async (name, admin = false) => (await createUser(deps.store, { name, admin })).apiKey,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await deps.queue.close({ cancelInFlight: true });
      await deps.close();
      db.close();
    },
  };
}

/** POSTs files as multipart/form-data (`file` parts, optional `collection`) through fetch's FormData. */
export async function upload(url: string, key: string, files: Array<{ name: string; content: string | Uint8Array<ArrayBuffer> }>, collection?: string): Promise<{ status: number; body: any }> {
  const form = new FormData();
  if (collection !== undefined) form.append('collection', collection);
  for (const f of files) form.append('file', new Blob([f.content]), f.name);
  const res = await fetch(`${url}/v1/documents`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Polls GET /v1/jobs/:id until the job is done or failed. */
export async function waitForJob(url: string, key: string, jobId: string, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${url}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${key}` } });
    const job = await res.json();
    if (job.state === 'done' || job.state === 'failed') return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.state}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
