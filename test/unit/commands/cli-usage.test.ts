/**
 * The CLI explains itself: `--help` of every command is generated from its option table (every option
 * with a description, plus examples that parse), and usage errors are exit 2 while "nothing to do"
 * states are exit 1 with a message.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { COMMANDS, main } from '../../../src/cli.ts';
import { COMMON_OPTION_DEFS, toParseArgsOptions } from '../../../src/commands/args.ts';
import type { CommandIo } from '../../../src/commands/types.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-cli-'));
  dirs.push(d);
  return d;
}

function io(env: Record<string, string> = {}): CommandIo & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  return { stdout, stderr, env: { MNEME_EMBED_MODEL: 'none', MNEME_OFFLINE: '1', ...env }, isTty: false, out: () => out, err: () => err };
}

describe('mneme <command> --help', () => {
  it.each(COMMANDS.map((c) => [c.name, c] as const))('%s: lists every option with a description, and examples', async (name, command) => {
    const t = io();
    expect(await main([name, '--help'], t)).toBe(0);
    const help = t.out();
    const lines = help.split('\n');
    for (const spec of command.specs) {
      expect(help).toContain(`usage: mneme ${spec.name}`);
      for (const opt of [...spec.options, ...COMMON_OPTION_DEFS]) {
        // One line per option: the flag, then its description.
        const line = lines.find((l) => new RegExp(`^\\s+(-\\w, )?--${opt.name}\\b`).test(l));
        expect(line, `--${opt.name} of ${spec.name}`).toBeDefined();
        expect(line).toContain(opt.description);
        expect(opt.description.length).toBeGreaterThan(10);
      }
      expect(spec.examples.length).toBeGreaterThan(0);
      for (const example of spec.examples) {
        expect(help).toContain(`  mneme ${example}\n`);
        // The example only uses options the parser accepts.
        const argv = example.slice(spec.name.length).trim().split(/\s+/).filter(Boolean);
        expect(() => parseArgs({ args: argv, options: toParseArgsOptions(spec.options), allowPositionals: spec.positionals !== undefined, strict: true })).not.toThrow();
      }
    }
  });

  it('the parser accepts exactly the options of the table', async () => {
    const t = io();
    expect(await main(['doctor', '--bogus'], t)).toBe(2);
    expect(t.err()).toMatch(/Unknown option '--bogus'/);
  });
});

describe('usage errors vs nothing to do', () => {
  it('ingest of a path that does not exist is a usage error (exit 2) naming it', async () => {
    const dataDir = tempDir();
    const missing = path.join(dataDir, 'no-such-dir');
    const t = io();
    expect(await main(['ingest', missing, '--data-dir', dataDir], t)).toBe(2);
    expect(t.err()).toContain(`no such file or directory: ${missing}`);
    expect(fs.readdirSync(dataDir)).toEqual([]); // nothing was opened or locked
  });

  it('reindex with no vector index says there is nothing to reindex (exit 1), without the usage line', async () => {
    const dataDir = tempDir();
    const t = io();
    expect(await main(['reindex', '--data-dir', dataDir], t)).toBe(1);
    expect(t.err()).toMatch(/nothing to reindex/);
    expect(t.err()).not.toMatch(/usage:/);
  });
});
