/**
 * The generation queue around a hand-written controllable ChatModel (the code under test is the
 * scheduling around the model, so a fake whose timing the test controls is the right tool here).
 */
import { describe, expect, it } from 'vitest';
import { GenerationQueue } from '../../../src/chat/queue.ts';
import { CancelledError, UnavailableError, UpstreamError, ValidationError } from '../../../src/core/errors.ts';
import type { ChatModel, GenerateRequest, GenerateResult, ModelState } from '../../../src/core/llm/types.ts';

interface Call {
  id: string;
  signal: AbortSignal;
  finish: (text?: string) => void;
  fail: (err: Error) => void;
}

/** Generations stay in flight until the test finishes them; abort rejects with CancelledError. */
class ControlledModel implements ChatModel {
  readonly backend = 'fake';
  readonly modelId = 'fake-1';
  state: ModelState = { state: 'ready' };
  readonly calls: Call[] = [];
  readonly started: string[] = [];
  readonly finished: string[] = [];
  running = 0;
  maxRunning = 0;

  status(): ModelState {
    return this.state;
  }
  countTokens(text: string): number {
    return text.length;
  }
  async close(): Promise<void> {}

  generate(req: GenerateRequest): Promise<GenerateResult> {
    const id = req.context.query;
    this.started.push(id);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise<GenerateResult>((resolve, reject) => {
      const done = (): void => {
        this.running--;
        this.finished.push(id);
      };
      const onAbort = (): void => {
        done();
        reject(new CancelledError('fake cancelled'));
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      this.calls.push({
        id,
        signal: req.signal,
        finish: (text = `answer ${id}`) => {
          req.signal.removeEventListener('abort', onAbort);
          done();
          resolve({ text, promptTokens: 1, completionTokens: 1, finishReason: 'stop' });
        },
        fail: (err) => {
          req.signal.removeEventListener('abort', onAbort);
          done();
          reject(err);
        },
      });
    });
  }

  /** Finishes the in-flight call `id`. */
  finish(id: string): void {
    const call = this.calls.find((c) => c.id === id);
    if (!call) throw new Error(`no call ${id} (started: ${this.started.join(',')})`);
    call.finish();
  }
}

function req(id: string, signal: AbortSignal = new AbortController().signal): GenerateRequest {
  return {
    messages: [{ role: 'user', content: id }],
    sampling: { maxTokens: 8, temperature: 0, topP: 1, seed: 0, stop: [] },
    signal,
    context: { query: id, passages: [] },
  };
}

/** Lets pending promise callbacks (queue hand-offs) run. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('GenerationQueue', () => {
  it('runs one generation at a time by default, in FIFO order, reporting depth and active', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const results = ['a', 'b', 'c', 'd'].map((id) => q.run(req(id)));
    await tick();
    expect(model.started).toEqual(['a']);
    expect(q.active()).toBe(1);
    expect(q.depth()).toBe(3);
    for (const id of ['a', 'b', 'c', 'd']) {
      model.finish(id);
      await tick();
    }
    const texts = (await Promise.all(results)).map((r) => r.text);
    expect(texts).toEqual(['answer a', 'answer b', 'answer c', 'answer d']);
    expect(model.started).toEqual(['a', 'b', 'c', 'd']);
    expect(model.maxRunning).toBe(1);
    expect(q.active()).toBe(0);
    expect(q.depth()).toBe(0);
  });

  it('never runs two at once even when generations finish out of band', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 50 });
    const all = Array.from({ length: 12 }, (_, i) => q.run(req(`r${i}`)));
    for (let i = 0; i < 12; i++) {
      await tick();
      expect(model.running).toBe(1);
      model.finish(`r${i}`);
    }
    await Promise.all(all);
    expect(model.maxRunning).toBe(1);
  });

  it('runs up to `concurrency` generations at once', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10, concurrency: 2 });
    const all = ['a', 'b', 'c'].map((id) => q.run(req(id)));
    await tick();
    expect(model.started).toEqual(['a', 'b']);
    expect(q.active()).toBe(2);
    expect(q.depth()).toBe(1);
    model.finish('b');
    await tick();
    expect(model.started).toEqual(['a', 'b', 'c']);
    model.finish('a');
    model.finish('c');
    await Promise.all(all);
    expect(model.maxRunning).toBe(2);
  });

  it('refuses at once with queue_full and a Retry-After when the queue is full', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 2 });
    const accepted = ['a', 'b', 'c'].map((id) => q.run(req(id)));
    await tick();
    const refused = await settle(q.run(req('d')));
    expect(refused.ok).toBe(false);
    const err = (refused as { error: unknown }).error;
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).code).toBe('queue_full');
    expect((err as UnavailableError).status).toBe(503);
    expect((err as UnavailableError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(q.depth()).toBe(2);
    for (const id of ['a', 'b', 'c']) {
      model.finish(id);
      await tick();
    }
    await Promise.all(accepted);
    expect(model.started).not.toContain('d');
  });

  it('removes a queued request whose signal aborts, without it ever reaching the model', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const ac = new AbortController();
    const a = q.run(req('a'));
    const b = settle(q.run(req('b', ac.signal)));
    const c = q.run(req('c'));
    await tick();
    expect(q.depth()).toBe(2);
    ac.abort();
    const rb = await b;
    expect(rb.ok).toBe(false);
    expect((rb as { error: unknown }).error).toBeInstanceOf(CancelledError);
    expect(q.depth()).toBe(1);
    model.finish('a');
    await tick();
    model.finish('c');
    await Promise.all([a, c]);
    expect(model.started).toEqual(['a', 'c']);
  });

  it('rejects an already-aborted request at once', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const ac = new AbortController();
    ac.abort();
    await expect(q.run(req('x', ac.signal))).rejects.toBeInstanceOf(CancelledError);
    expect(model.started).toEqual([]);
  });

  it('cancels an in-flight request through its signal and moves on to the next', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const ac = new AbortController();
    const a = settle(q.run(req('a', ac.signal)));
    const b = q.run(req('b'));
    await tick();
    expect(model.started).toEqual(['a']);
    ac.abort();
    const ra = await a;
    expect((ra as { error: unknown }).error).toBeInstanceOf(CancelledError);
    await tick();
    expect(model.started).toEqual(['a', 'b']);
    model.finish('b');
    expect((await b).text).toBe('answer b');
  });

  it('passes model errors through and keeps serving', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const a = settle(q.run(req('a')));
    const b = q.run(req('b'));
    await tick();
    model.calls[0]?.fail(new UpstreamError('server down'));
    expect((await a) as unknown).toMatchObject({ ok: false, error: expect.any(UpstreamError) });
    await tick();
    model.finish('b');
    expect((await b).text).toBe('answer b');
  });

  it('refuses with model_loading / model_failed while the model is not ready', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    model.state = { state: 'loading' };
    const loading = (await settle(q.run(req('a')))) as { error: UnavailableError };
    expect(loading.error).toBeInstanceOf(UnavailableError);
    expect(loading.error.code).toBe('model_loading');
    model.state = { state: 'failed', error: 'GGUF file is truncated' };
    const failed = (await settle(q.run(req('b')))) as { error: UnavailableError };
    expect(failed.error.code).toBe('model_failed');
    expect(failed.error.message).toContain('GGUF file is truncated');
    expect(model.started).toEqual([]);
  });

  it('refuses a waiting request with model_failed if the model fails before its turn', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const a = q.run(req('a'));
    const b = settle(q.run(req('b')));
    await tick();
    model.state = { state: 'failed', error: 'worker crashed' };
    model.finish('a');
    await a;
    const rb = (await b) as { ok: boolean; error: UnavailableError };
    expect(rb.ok).toBe(false);
    expect(rb.error.code).toBe('model_failed');
    expect(model.started).toEqual(['a']);
  });

  it('close() refuses new and waiting requests, and waits for the in-flight one', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const a = q.run(req('a'));
    const b = settle(q.run(req('b')));
    await tick();
    let closed = false;
    const closing = q.close().then(() => {
      closed = true;
    });
    const rb = (await b) as { error: UnavailableError };
    expect(rb.error.code).toBe('shutting_down');
    const late = (await settle(q.run(req('c')))) as { error: UnavailableError };
    expect(late.error.code).toBe('shutting_down');
    await tick();
    expect(closed).toBe(false);
    model.finish('a');
    expect((await a).text).toBe('answer a');
    await closing;
    expect(closed).toBe(true);
    expect(model.started).toEqual(['a']);
  });

  it('close({ cancelInFlight: true }) cancels the in-flight generation', async () => {
    const model = new ControlledModel();
    const q = new GenerationQueue({ model, maxQueued: 10 });
    const a = settle(q.run(req('a')));
    await tick();
    await q.close({ cancelInFlight: true });
    const ra = (await a) as { error: unknown };
    expect(ra.error).toBeInstanceOf(CancelledError);
    expect(model.calls[0]?.signal.aborted).toBe(true);
    expect(q.active()).toBe(0);
    // Idempotent, and immediate when idle.
    await q.close();
  });

  it('validates its options', () => {
    const model = new ControlledModel();
    expect(() => new GenerationQueue({ model, maxQueued: -1 })).toThrow(ValidationError);
    expect(() => new GenerationQueue({ model, maxQueued: 1, concurrency: 0 })).toThrow(ValidationError);
    expect(() => new GenerationQueue({ model, maxQueued: 1.5 })).toThrow(ValidationError);
  });
});
