/** Test helpers: temp data dirs and running the real `mneme` CLI as a child process. */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO, 'bin/mneme.js');
export const TINY_BERT = path.join(REPO, 'test/fixtures/models/tiny-bert');
export const FIXTURE_DOCS = path.join(REPO, 'test/fixtures/docs');

export function tempDir(prefix = 'mneme-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Environment for a CLI run: only MNEME_* we choose, plus PATH/HOME. */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? os.tmpdir(),
    MNEME_OFFLINE: '1',
    MNEME_EMBED_MODEL: TINY_BERT,
    ...extra,
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Parsed last stdout line, when it is JSON. */
  json: unknown;
}

function lastJson(stdout: string): unknown {
  const last = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last);
  } catch {
    return undefined;
  }
}

export function runCli(args: string[], env: Record<string, string> = cliEnv(), cwd = REPO): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, cwd, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json: lastJson(r.stdout) };
}

export function runCliAsync(args: string[], env: Record<string, string> = cliEnv(), cwd = REPO): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, json: lastJson(stdout) }));
  });
}
