/**
 * npm runs without warnings in the project, and onnxruntime-node's postinstall (which downloads CUDA
 * files from nuget.org and fails without internet) is skipped by package.json's allowScripts policy
 * rather than by an `.npmrc` key npm does not know.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/cli.ts';

const NPM_TIMEOUT_MS = 60_000;

function npm(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('npm', args, { cwd: REPO, encoding: 'utf8', timeout: NPM_TIMEOUT_MS, env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('npm in this project', () => {
  it('prints no "Unknown project config" warning (what every `npx mneme …` printed)', () => {
    const r = npm(['pkg', 'get', 'name']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('"mneme"');
    expect(r.stderr).not.toMatch(/Unknown project config/);
  });

  it("denies onnxruntime-node's install script, which npm then reports as covered by the policy", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    expect(pkg.allowScripts?.['onnxruntime-node']).toBe(false);
    // The denial matters: the installed onnxruntime-node has a postinstall that downloads.
    const ort = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { scripts?: Record<string, string> };
    expect(ort.scripts?.postinstall).toBeDefined();
    const ls = npm(['install-scripts', 'ls']);
    expect(`${ls.stdout}${ls.stderr}`).not.toMatch(/onnxruntime-node@/);
  });
});
