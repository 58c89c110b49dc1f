/**
 * Graceful shutdown of `mneme serve`: in-process through startServer (the function serveCommand
 * runs), and as a real child process receiving SIGTERM.
 */
import type { SqliteStore } from '../../src/core/store/sqlite/index.ts';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.ts';
import { createUser } from '../../src/chat/users.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import { startServer } from '../../src/commands/serve.ts';
import type { FakeLlm } from './http-helpers.ts';
import { REPO, bufferIo, ingestFixtures, postJson, startFakeLlm, tempDir, testEnv, waitFor } from './http-helpers.ts';

function rows(dataDir: string): Array<{ status: string }> {
  const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT status FROM responses ORDER BY seq').all() as Array<{ status: string }>;
  } finally {
    db.close();
  }
}

async function makeKey(dataDir: string, name: string): Promise<string> {
  const store = openSqliteStore(path.join(dataDir, 'mneme.sqlite'));
  try {
    return (await createUser(store, { name })).apiKey;
  } finally {
    await store.close();
  }
}

describe('graceful shutdown', () => {
  let llm: FakeLlm;
  let env: Record<string, string>;
  let dataDir: string;

  beforeAll(async () => {
    llm = await startFakeLlm();
    dataDir = tempDir();
    env = testEnv(dataDir, { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake-llm', MNEME_HOST: '127.0.0.1', MNEME_PORT: '0' });
    await ingestFixtures(env);
  });
  afterAll(async () => {
    await llm?.close();
  });

  it('stops accepting, lets the running answer finish, then closes SQLite', async () => {
    const key = await makeKey(dataDir, 'kate');
    const io = bufferIo(env);
    const running = await startServer(loadConfig(env), io, { graceMs: 5000 });
    llm.behaviour = { kind: 'answer', text: 'Finished anyway [1].', firstByteDelayMs: 700 };
    const pending = postJson(`${running.url}/v1/chat`, key, { message: 'What does kestrelctl do?' });
    await waitFor(() => running.deps.inflight.size() === 1, 5000, 'the request to start');
    const before = rows(dataDir).length;
    const stopping = running.shutdown();
    // New connections are refused while the answer finishes.
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.body.answer).toBe('Finished anyway [1].');
    await stopping;
    expect((running.deps.store as SqliteStore).connection.isOpen).toBe(false);
    expect(running.server.listening).toBe(false);
    // The WAL was checkpointed and removed when the last connection closed (checked before
    // reopening the file, which would create a new one).
    expect(fs.existsSync(path.join(dataDir, 'mneme.sqlite-wal'))).toBe(false);
    const after = rows(dataDir);
    expect(after.length).toBe(before + 1);
    expect(after[after.length - 1]!.status).toBe('ok');
  });

  it('cancels answers still running after the grace period; their cancelled rows are written first', async () => {
    const key = await makeKey(dataDir, 'liam');
    const running = await startServer(loadConfig(env), bufferIo(env), { graceMs: 300 });
    llm.behaviour = { kind: 'answer', text: 'too late', firstByteDelayMs: 5000 };
    const before = rows(dataDir).length;
    const pending = postJson(`${running.url}/v1/chat`, key, { message: 'When does the Tidewater ferry leave?' }).catch((err: unknown) => err);
    await waitFor(() => running.deps.inflight.size() === 1, 5000, 'the request to start');
    const t0 = Date.now();
    await running.shutdown();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((running.deps.store as SqliteStore).connection.isOpen).toBe(false);
    const after = rows(dataDir);
    expect(after.length).toBe(before + 1);
    expect(after[after.length - 1]!.status).toBe('cancelled');
    const r = await pending;
    // The client sees the connection end (or the 499 written just before it closed), never a 200.
    if (!(r instanceof Error)) expect((r as { status: number }).status).not.toBe(200);
  });

  it('mneme serve exits 0 on SIGTERM after finishing the in-flight request', async () => {
    const key = await makeKey(dataDir, 'mia');
    const script = path.join(tempDir(), 'serve.mts');
    fs.writeFileSync(
      script,
      `import { serveCommand } from ${JSON.stringify(path.join(REPO, 'src/commands/serve.ts'))};\n` +
        'process.exitCode = await serveCommand.run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, isTty: false });\n',
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, '--port', '0', '--host', '127.0.0.1'], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(() => /listening on http:\/\/127\.0\.0\.1:\d+/.test(stdout), 30_000, `the server to listen (stderr: ${stderr}; stdout: ${stdout})`);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
    expect(stdout).toMatch(/chat model: openai fake-llm; retrieval: hybrid/);
    llm.behaviour = { kind: 'answer', text: 'Answered during shutdown [1].', firstByteDelayMs: 800 };
    const before = rows(dataDir).length;
    const upstreamBefore = llm.requests.length;
    const pending = postJson(`${url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    await waitFor(() => llm.requests.length > upstreamBefore, 5000, 'the upstream call');
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGTERM');
    const r = await pending;
    expect(r.status).toBe(200);
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/SIGTERM: shutting down/);
    const after = rows(dataDir);
    expect(after.length).toBe(before + 1);
    expect(after[after.length - 1]!.status).toBe('ok');
  }, 60_000);

  it('MNEME_SHUTDOWN_GRACE_S bounds the wait: a stream still running is cancelled and logs a cancelled row with its partial answer', async () => {
    const key = await makeKey(dataDir, 'noor');
    const script = path.join(tempDir(), 'serve.mts');
    fs.writeFileSync(
      script,
      `import { serveCommand } from ${JSON.stringify(path.join(REPO, 'src/commands/serve.ts'))};\n` +
        'process.exitCode = await serveCommand.run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, isTty: false });\n',
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, '--port', '0', '--host', '127.0.0.1'], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, MNEME_SHUTDOWN_GRACE_S: '0.5' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(() => /listening on http:\/\/127\.0\.0\.1:\d+/.test(stdout), 30_000, `the server to listen (stderr: ${stderr}; stdout: ${stdout})`);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
    // 60 words at 250 ms each: 15 s of streaming, far beyond the grace period.
    llm.behaviour = { kind: 'answer', text: 'slow '.repeat(60), tokenDelayMs: 250 };
    const before = rows(dataDir).length;
    const res = await fetch(`${url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ message: 'What is OrbiSync?', stream: true }) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/event: token/);
    const t0 = Date.now();
    child.kill('SIGTERM');
    // Drain whatever the server still sends until it ends the stream.
    for (;;) {
      const chunk = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (chunk.done) break;
    }
    expect(await exited).toBe(0);
    const tookMs = Date.now() - t0;
    expect(tookMs, stderr).toBeLessThan(5000);
    const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
    try {
      const all = db.prepare('SELECT status, answer FROM responses ORDER BY seq').all() as Array<{ status: string; answer: string | null }>;
      expect(all.length).toBe(before + 1);
      const last = all[all.length - 1]!;
      expect(last.status).toBe('cancelled');
      expect(last.answer).toMatch(/^slow/);
    } finally {
      db.close();
    }
  }, 60_000);

  it('mneme serve on a busy port says so and exits 1, without a stack trace', async () => {
    const busy = await new Promise<import('node:net').Server>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => resolve(s));
    });
    const port = (busy.address() as import('node:net').AddressInfo).port;
    try {
      const r = spawnSync(process.execPath, [path.join(REPO, 'bin/mneme.js'), 'serve', '--port', String(port), '--host', '127.0.0.1'], {
        cwd: REPO,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, MNEME_LLM: 'extractive' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain(`port ${port} is in use (--port or MNEME_PORT)`);
      expect(r.stderr).not.toMatch(/EADDRINUSE|unexpected error|\n\s+at /);
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    }
  }, 60_000);
});
