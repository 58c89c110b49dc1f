/**
 * createApp with hand-assembled deps: a chat model whose load state the test controls (a wrapper
 * around the real extractive model: only `status()` is scripted) and NO feature store, to check the
 * 503s while loading / after a failed load, /healthz readiness, and that chat works without features.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.ts';
import Database from 'better-sqlite3';
import { openVectorStack } from '../../src/core/deps.ts';
import type { VectorStack } from '../../src/core/deps.ts';
import { ExtractiveChatModel } from '../../src/core/llm/extractive.ts';
import type { ModelState } from '../../src/core/llm/types.ts';
import { PromptStore } from '../../src/core/prompts.ts';
import type { SqliteStore } from '../../src/core/store/sqlite/index.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import { createApp } from '../../src/chat/http/app.ts';
import { GenerationQueue } from '../../src/chat/queue.ts';
import { HybridRetriever } from '../../src/chat/retrieve.ts';
import { createUser } from '../../src/chat/users.ts';
import { authHeaders, count, ingestFixtures, postJson, tempDir, testEnv } from './http-helpers.ts';

class ScriptedStateModel extends ExtractiveChatModel {
  state: ModelState = { state: 'loading' };
  override status(): ModelState {
    return this.state;
  }
}

describe('model state and optional feature store', () => {
  let store: SqliteStore;
  /** Probe handle on the same file (test reads only). */
  let db: Database.Database;
  let stack: VectorStack;
  let server: http.Server;
  let url: string;
  let key: string;
  let admin: string;
  const model = new ScriptedStateModel();

  beforeAll(async () => {
    const env = testEnv(tempDir());
    await ingestFixtures(env);
    const config = loadConfig(env);
    store = openSqliteStore(config.dbFile);
    db = new Database(config.dbFile);
    stack = await openVectorStack(store, config);
    const app = createApp({
      store,
      config,
      retriever: new HybridRetriever({ store, embedder: stack.embedder, index: stack.index }),
      model,
      queue: new GenerationQueue({ model, maxQueued: 4 }),
      prompt: PromptStore.load().get('answer'),
    });
    server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    key = (await createUser(store, { name: 'nora' })).apiKey;
    admin = (await createUser(store, { name: 'ops', admin: true })).apiKey;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await stack?.embedder?.close();
    db?.close();
    await store?.close();
  });

  it('while loading: chat 503 model_loading with Retry-After, no log row; /healthz 503 "loading"', async () => {
    model.state = { state: 'loading' };
    const r = await postJson(`${url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('model_loading');
    expect(r.headers.get('retry-after')).toBe('5');
    const c = await postJson(`${url}/v1/chat/completions`, key, { messages: [{ role: 'user', content: 'What is OrbiSync?' }] });
    expect(c.status).toBe(503);
    expect(count({ db }, 'responses')).toBe(0);
    const h = await fetch(`${url}/healthz`);
    expect(h.status).toBe(503);
    expect(await h.json()).toMatchObject({ status: 'loading', model: { state: 'loading' } });
    const m = await (await fetch(`${url}/metrics`, { headers: authHeaders(admin) })).text();
    expect(m).toMatch(/^mneme_model_state\{backend="extractive",model="extractive-v1",state="loading"\} 1$/m);
  });

  it('once ready: chat answers (no feature store: empty features, no personalization)', async () => {
    model.state = { state: 'ready' };
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const r = await postJson(`${url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    expect(r.status).toBe(200);
    const features = JSON.parse(db.prepare('SELECT features_json FROM responses WHERE id = ?').pluck().get(r.body.id) as string);
    expect(features.precomputed).toEqual({});
    expect(features.on_demand.turn_index).toBe(0);
    const me = await (await fetch(`${url}/v1/me/features`, { headers: authHeaders(key) })).json();
    expect(me).toEqual({ user: 'nora', admin: false, features: {} });
  });

  it('after a failed load: 503 model_failed without the failure detail; /healthz 503 "failed"', async () => {
    model.state = { state: 'failed', error: 'cannot read /secret/path/model.gguf' };
    const r = await postJson(`${url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('model_failed');
    expect(JSON.stringify(r.body)).not.toContain('/secret/path');
    const h = await fetch(`${url}/healthz`);
    expect(h.status).toBe(503);
    const body = await h.json();
    expect(body.status).toBe('failed');
    expect(JSON.stringify(body)).not.toContain('/secret/path');
  });
});
