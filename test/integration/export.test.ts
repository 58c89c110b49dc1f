/**
 * `mneme export` end to end: a real data dir with a realistic prediction log, the real command, and
 * the output read back with an independent parser (split lines + JSON.parse + hand-written checks,
 * not the zod schemas the exporter validates with).
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { COMMANDS, main } from '../../src/cli.ts';
import { exportCommand } from '../../src/commands/export.ts';
import type { CommandIo } from '../../src/commands/types.ts';
import { CancelledError, MnemeError, ValidationError } from '../../src/core/errors.ts';
import { ExportOutputError, runExport } from '../../src/export/run.ts';
import type { ExportManifest } from '../../src/export/run.ts';
import { DEFAULT_BACKEND, DEFAULT_MODEL_ID, LogFixture, SOURCES, checkPreferenceLine, checkSftLine, readJsonl, renderSystemMessage, renderUserMessage } from '../unit/export/log-fixture.ts';
import type { Logged } from '../unit/export/log-fixture.ts';

// The lead registers the command in src/cli.ts; until then, run it through the real dispatcher here.
if (!COMMANDS.includes(exportCommand)) COMMANDS.push(exportCommand);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function capture(): { io: CommandIo; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let o = '';
  let e = '';
  stdout.on('data', (d: Buffer) => (o += d.toString()));
  stderr.on('data', (d: Buffer) => (e += d.toString()));
  return { io: { stdout, stderr, env: {}, isTty: false }, out: () => o, err: () => e };
}

async function cli(...args: string[]): Promise<Run> {
  const c = capture();
  const code = await main(['export', ...args, '--data-dir', fx.dataDir], c.io);
  await new Promise((r) => setImmediate(r));
  return { code, stdout: c.out(), stderr: c.err() };
}

async function exportJson(...args: string[]): Promise<Manifest> {
  const r = await cli(...args, '--json');
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] as string) as Manifest;
}

/** Type only: the manifest is read with JSON.parse, never through the exporter's code. */
type Manifest = ExportManifest;

let fx: LogFixture;
let out: string;

beforeEach(() => {
  fx = LogFixture.create();
  out = path.join(fx.dataDir, 'exports', 'sft.jsonl');
  fs.mkdirSync(path.dirname(out));
});
afterEach(() => fx.remove());

const lastContent = (msgs: Array<{ content: string }>): string => msgs[msgs.length - 1]?.content ?? '';
const sha256File = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
/** Files in the export directory (to prove no temp file is left behind). */
const exportDirListing = (): string[] => fs.readdirSync(path.dirname(out)).sort();

/** Two conversations, three turns, a correction, an unrated and a rated-up answer. */
function basicLog(layout: 'embedded' | 'messages' = 'embedded'): Record<string, Logged> {
  const a = fx.conversation('ann');
  const b = fx.conversation('bob');
  const r: Record<string, Logged> = {};
  const notes = 'Preferred answer length: short (about 40 words).';
  r.a1 = fx.respond({ conversation: a, layout, query: 'How do I reset the Halcyon X3?', answer: 'Hold the recessed button for ten seconds [1].', personalization: notes });
  r.a2 = fx.respond({ conversation: a, layout, query: 'What does E-417 mean?', answer: 'Something about a pump.', sources: [SOURCES.e417!], personalization: notes });
  r.a3 = fx.respond({ conversation: a, layout, query: 'How do I fix it?', answer: 'Check the pump seal [1].', sources: [SOURCES.e417!], personalization: notes });
  r.b1 = fx.respond({ conversation: b, layout, query: 'When does the Tidewater ferry leave in winter?', answer: 'At 07:15 and 16:40 on weekdays [1].', sources: [SOURCES.ferry!], collection: 'timetables' });
  fx.feedback(r.a1, 1);
  fx.feedback(r.a2, -1, 'E-417 means the coolant loop pressure dropped below 1.8 bar [1].');
  return r;
}

describe('mneme export --format sft', () => {
  it('writes one example per logged response: the exact rendered prompt + the answer, or the correction', async () => {
    const r = basicLog();
    const m = await exportJson('--format', 'sft', '--out', out);
    const lines = readJsonl(out).map((v, i) => checkSftLine(v, `line ${i + 1}`));
    expect(lines).toHaveLength(4);
    const byTarget = (text: string) => lines.find((msgs) => lastContent(msgs) === text);

    // Every example is the logged prompt verbatim (system with personalization; user with history,
    // context passages and question) plus the assistant turn.
    const first = byTarget('Hold the recessed button for ten seconds [1].');
    expect(first?.slice(0, -1)).toEqual(r.a1!.messages);
    expect(first?.[0]?.content).toBe(renderSystemMessage('Preferred answer length: short (about 40 words).'));
    expect(first?.[1]?.content).toBe(renderUserMessage('How do I reset the Halcyon X3?', [SOURCES.halcyon!]));

    // Turn 2 was corrected: the correction is the assistant turn, the logged answer is gone.
    const second = byTarget('E-417 means the coolant loop pressure dropped below 1.8 bar [1].');
    expect(second?.slice(0, -1)).toEqual(r.a2!.messages);
    expect(lines.some((msgs) => lastContent(msgs) === 'Something about a pump.')).toBe(false);

    // Turn 3 keeps the earlier turns exactly as the model saw them (the original turn-2 answer).
    const third = byTarget('Check the pump seal [1].');
    expect(third?.slice(0, -1)).toEqual(r.a3!.messages);
    expect(third?.[1]?.content).toContain(
      'Conversation so far:\nUser: How do I reset the Halcyon X3?\nAssistant: Hold the recessed button for ten seconds.\nUser: What does E-417 mean?\nAssistant: Something about a pump.\n\nContext passages:',
    );

    expect(m.counts).toMatchObject({ rows_read: 4, examples: 4, train: 4, val: 0, corrections_used: 1, malformed: 0 });
    expect(m.counts.ratings).toEqual({ up: 1, down: 1, unrated: 2 });
    expect(m.files).toHaveLength(1);
    expect(m.files[0]).toMatchObject({ split: 'train', name: 'sft.jsonl', examples: 4, bytes: fs.statSync(out).size, sha256: sha256File(out) });
    expect(m.log).toEqual({ snapshot_seq: r.b1!.seq, example_seq_min: r.a1!.seq, example_seq_max: r.b1!.seq });
    expect(m.models).toEqual([{ backend: DEFAULT_BACKEND, model_id: DEFAULT_MODEL_ID, examples: 4 }]);
    expect(m.prompts.map((p) => p.name)).toEqual(['answer']);
    // The manifest beside the file is the one printed.
    expect(JSON.parse(fs.readFileSync(`${out}.manifest.json`, 'utf8'))).toEqual(m);
    expect(exportDirListing()).toEqual(['sft.jsonl', 'sft.jsonl.manifest.json']);
  });

  it('keeps earlier turns sent as separate messages, with weight 0 so each answer is trained once', async () => {
    const r = basicLog('messages');
    await exportJson('--format', 'sft', '--out', out);
    const lines = readJsonl(out).map((v, i) => checkSftLine(v, `line ${i + 1}`));
    const third = lines.find((msgs) => lastContent(msgs) === 'Check the pump seal [1].');
    expect(third?.map((x) => x.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
    expect(third?.[2]).toEqual({ role: 'assistant', content: 'Hold the recessed button for ten seconds [1].', weight: 0 });
    // The earlier answer as the model saw it, not the later correction.
    expect(third?.[4]).toEqual({ role: 'assistant', content: 'Something about a pump.', weight: 0 });
    expect(third?.slice(0, -1).map(({ role, content }) => ({ role, content }))).toEqual(r.a3!.messages);
    const second = lines.find((msgs) => lastContent(msgs) === 'E-417 means the coolant loop pressure dropped below 1.8 bar [1].');
    expect(second?.filter((x) => x.role === 'assistant' && !('weight' in x))).toHaveLength(1);
  });

  it('applies each filter', async () => {
    const a = fx.conversation('ann');
    const r = {
      early: fx.respond({ conversation: a, query: 'early question', answer: 'early answer', createdAt: '2025-01-10T08:00:00.000Z' }),
      cli: fx.respond({ conversation: a, query: 'cli question', answer: 'cli answer', collection: 'cli', createdAt: '2025-02-10T08:00:00.000Z' }),
      qwen: fx.respond({ conversation: a, query: 'qwen question', answer: 'qwen answer', modelBackend: 'openai', modelId: 'qwen2.5-7b', createdAt: '2025-03-10T08:00:00.000Z' }),
      v2: fx.respond({ conversation: a, query: 'v2 question', answer: 'v2 answer', promptName: 'answer-v2', createdAt: '2025-04-10T08:00:00.000Z' }),
      down: fx.respond({ conversation: a, query: 'down question', answer: 'down answer', createdAt: '2025-05-10T08:00:00.000Z' }),
    };
    fx.feedback(r.qwen, 1);
    fx.feedback(r.down, -1);
    const targets = async (...args: string[]): Promise<string[]> => {
      fs.rmSync(out, { force: true });
      const res = await cli('--format', 'sft', '--out', out, ...args);
      expect(res.code, res.stderr).toBe(0);
      return fs.existsSync(out) ? readJsonl(out).map((v) => lastContent(checkSftLine(v, 'line'))) : [];
    };
    expect(await targets('--since', '2025-03-01', '--until', '2025-04-10T08:00:00Z')).toEqual(['qwen answer']);
    // A rated-down answer without a correction is never a target unless asked for with --min-rating -1.
    expect(await targets('--since', '2025-04-10T08:00:00.000Z')).toEqual(['v2 answer']);
    expect(await targets('--since', '2025-04-10T08:00:00.000Z', '--min-rating=-1')).toEqual(['v2 answer', 'down answer']);
    expect(await targets('--collection', 'cli')).toEqual(['cli answer']);
    expect(await targets('--model', 'qwen2.5-7b')).toEqual(['qwen answer']);
    expect(await targets('--prompt', 'answer-v2')).toEqual(['v2 answer']);
    const v2Hash = fx.db.prepare('SELECT prompt_sha256 FROM responses WHERE id = ?').pluck().get(r.v2.id) as string;
    expect(await targets('--prompt', v2Hash.slice(0, 12))).toEqual(['v2 answer']);
    expect(await targets('--min-rating', '1')).toEqual(['qwen answer']);
    expect(await targets('--min-rating', '0')).toEqual(['early answer', 'cli answer', 'qwen answer', 'v2 answer']);
    const m = await exportJson('--format', 'sft', '--out', out, '--collection', 'cli', '--since', '2025-01-01');
    expect(m.filters).toMatchObject({ collection: 'cli', since: '2025-01-01T00:00:00.000Z', include_errors: false });
  });

  it('excludes errored and cancelled responses unless --include-errors', async () => {
    const a = fx.conversation('ann');
    fx.respond({ conversation: a, query: 'fine question', answer: 'fine answer' });
    fx.respond({ conversation: a, query: 'boom question', answer: null, status: 'error' });
    fx.respond({ conversation: a, query: 'stopped question', answer: 'partial ans', status: 'cancelled' });
    const errored = fx.respond({ conversation: a, query: 'fixed question', answer: null, status: 'error' });
    fx.feedback(errored, -1, 'the corrected answer');
    let m = await exportJson('--format', 'sft', '--out', out);
    expect(readJsonl(out).map((v) => lastContent(checkSftLine(v, 'l')))).toEqual(['fine answer']);
    expect(m.counts.excluded_status).toEqual({ error: 2, cancelled: 1 });
    m = await exportJson('--format', 'sft', '--out', out, '--include-errors');
    expect(readJsonl(out).map((v) => lastContent(checkSftLine(v, 'l')))).toEqual(['fine answer', 'partial ans', 'the corrected answer']);
    expect(m.counts).toMatchObject({ no_target: 1, examples: 3 });
    expect(m.counts.excluded_status).toEqual({ error: 0, cancelled: 0 });
  });

  it('by default trains only on good targets: no rated-down answer without a correction, no extractive placeholder', async () => {
    // One conversation each, so no answer reaches another example's prompt as history.
    let n = 0;
    const conv = (): string => fx.conversation(`user${n++}`);
    const note = 'Extractive answer (no language model is configured): the passages below are quoted from your documents.';
    const placeholder = `${note}\n\n> Hold the recessed button for ten seconds until the status lamp blinks amber three times.`;
    const placeholder2 = `${note}\n\n> Error E-417 means the coolant loop pressure dropped below 1.8 bar; check the pump seal.`;
    const placeholder3 = `${note}\n\n> kestrelctl flash --recovery writes the previous firmware image to the standby bank.`;
    fx.respond({ conversation: conv(), query: 'good question', answer: 'good answer' });
    fx.feedback(fx.respond({ conversation: conv(), query: 'bad question', answer: 'bad answer' }), -1);
    fx.feedback(fx.respond({ conversation: conv(), query: 'fixed question', answer: 'wrong answer' }), -1, 'the corrected answer');
    fx.respond({ conversation: conv(), query: 'extractive question', answer: placeholder, modelBackend: 'extractive', modelId: 'extractive' });
    // An extractive answer the user corrected: the target is the correction, not the placeholder.
    fx.feedback(fx.respond({ conversation: conv(), query: 'extractive fixed', answer: placeholder2, modelBackend: 'extractive', modelId: 'extractive' }), -1, 'the user-written answer');
    fx.feedback(fx.respond({ conversation: conv(), query: 'both bad', answer: placeholder3, modelBackend: 'extractive', modelId: 'extractive' }), -1);
    fx.respond({ conversation: conv(), query: 'boom', answer: null, status: 'error' });
    const targetsOf = (): string[] => readJsonl(out).map((v) => lastContent(checkSftLine(v, 'l')));

    let m = await exportJson('--format', 'sft', '--out', out);
    expect(targetsOf()).toEqual(['good answer', 'the corrected answer', 'the user-written answer']);
    expect(fs.readFileSync(out, 'utf8')).not.toContain('Extractive answer (no language model');
    expect(m.counts.excluded).toEqual({ rated_down_uncorrected: 2, extractive: 1, errored: 1, cancelled: 0 });
    expect(m.counts).toMatchObject({ rows_matched: 7, rows_read: 6, examples: 3, corrections_used: 2 });
    expect(m.filters).toMatchObject({ min_rating: null, include_extractive: false });

    m = await exportJson('--format', 'sft', '--out', out, '--include-extractive');
    expect(targetsOf()).toEqual(['good answer', 'the corrected answer', placeholder, 'the user-written answer']);
    expect(m.counts.excluded).toEqual({ rated_down_uncorrected: 2, extractive: 0, errored: 1, cancelled: 0 });
    expect(m.filters.include_extractive).toBe(true);

    m = await exportJson('--format', 'sft', '--out', out, '--min-rating=-1', '--include-extractive');
    expect(targetsOf()).toEqual(['good answer', 'bad answer', 'the corrected answer', placeholder, 'the user-written answer', placeholder3]);
    expect(m.counts.excluded).toEqual({ rated_down_uncorrected: 0, extractive: 0, errored: 1, cancelled: 0 });

    // The human report names the exclusions.
    const res = await cli('--format', 'sft', '--out', out);
    expect(res.stdout).toMatch(/excluded: 2 rated down without a correction \(--min-rating=-1 keeps them\), 1 extractive \(--include-extractive\), 1 errored/);
  });

  it('scrubs the user\'s words and the answers but not the retrieved passages, unless --scrub-context', async () => {
    const a = fx.conversation('ann');
    const manual = { title: 'Network guide', heading: 'Static addresses', file: 'net.md', text: "Set inet '192.168.7.20' on eth0; INSERT INTO staff VALUES ('Alice','555-201-3344'); Part 555-201-3344 is the bracket." };
    const r = fx.respond({ conversation: a, query: 'My laptop 10.1.2.3 cannot reach the gateway, call me on (555) 201-3344', answer: 'Use 192.168.7.20 as in the guide [1].', sources: [manual] });
    fx.feedback(r, -1, 'Ask admin@example.com to set 192.168.7.20 [1].');
    let m = await exportJson('--format', 'sft', '--out', out);
    let line = checkSftLine(readJsonl(out)[0], 'l');
    const userMsg = line[1]!.content;
    expect(userMsg).toContain(manual.text);
    expect(userMsg).toContain('Question: My laptop [IP_ADDRESS] cannot reach the gateway, call me on [PHONE]');
    expect(lastContent(line)).toBe('Ask [EMAIL] to set [IP_ADDRESS] [1].');
    expect(m.scrub).toMatchObject({ ipv4: 2, phone: 1, email: 1, total: 4, context: false });
    expect(m.scrub.by_field.prompt_user).toMatchObject({ ipv4: 1, phone: 1, total: 2 });
    expect(m.scrub.by_field.correction).toMatchObject({ ipv4: 1, email: 1, total: 2 });
    expect(m.scrub.by_field.prompt_context.total).toBe(0);

    m = await exportJson('--format', 'sft', '--out', out, '--scrub-context');
    line = checkSftLine(readJsonl(out)[0], 'l');
    expect(line[1]!.content).toContain("Set inet '[IP_ADDRESS]' on eth0");
    // A quoted or labelled part number is not a phone number, even in scrubbed context.
    expect(line[1]!.content).toContain("('Alice','555-201-3344'); Part 555-201-3344 is the bracket.");
    expect(m.scrub).toMatchObject({ ipv4: 3, total: 5, context: true });
    expect(m.scrub.by_field.prompt_context).toMatchObject({ ipv4: 1, total: 1 });
  });

  it('removes exact and near duplicates, keeping the first', async () => {
    const a = fx.conversation('ann');
    const b = fx.conversation('bob');
    const c = fx.conversation('cat');
    const q = 'How do I reset the Halcyon X3?';
    const ans = 'Hold the recessed button for ten seconds until the lamp blinks amber [1].';
    fx.respond({ conversation: a, query: q, answer: ans });
    // Exact: another conversation, identical prompt and answer.
    fx.respond({ conversation: b, query: q, answer: ans });
    // Near: same question and answer up to case/punctuation, but other sources in the prompt.
    fx.respond({ conversation: c, query: 'how do i reset the halcyon x3', answer: `${ans.toUpperCase()} `, sources: [SOURCES.halcyon!, SOURCES.kestrel!] });
    // Different question, same sources: kept.
    fx.respond({ conversation: c, query: 'Which lamp colour means reset?', answer: 'Amber, blinking three times [1].' });
    const m = await exportJson('--format', 'sft', '--out', out);
    const lines = readJsonl(out).map((v) => checkSftLine(v, 'l'));
    expect(lines.map(lastContent)).toEqual([ans, 'Amber, blinking three times [1].']);
    expect(m.counts).toMatchObject({ duplicates_exact: 1, duplicates_near: 1, examples: 2 });
  });

  it('scrubs PII and secrets from every message and counts each kind in the manifest', async () => {
    const a = fx.conversation('ann');
    fx.respond({
      conversation: a,
      query: 'My email is ann@example.com and my phone +1 415 555 0100; the server is 10.20.30.40. Why does my key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z fail?',
      answer: 'Rotate sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z and mail ops@example.org; IPv6 2001:db8::7334:1 is fine.',
    });
    // An exact duplicate in another conversation is dropped, and so are its scrub counts.
    const b = fx.conversation('bob');
    fx.respond({
      conversation: b,
      query: 'My email is ann@example.com and my phone +1 415 555 0100; the server is 10.20.30.40. Why does my key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z fail?',
      answer: 'Rotate sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z and mail ops@example.org; IPv6 2001:db8::7334:1 is fine.',
    });
    const m = await exportJson('--format', 'sft', '--out', out);
    expect(m.counts).toMatchObject({ examples: 1, duplicates_exact: 1 });
    const text = fs.readFileSync(out, 'utf8');
    for (const secret of ['ann@example.com', 'ops@example.org', '555 0100', '10.20.30.40', 'sk-proj-Ab3', '2001:db8::7334:1']) expect(text).not.toContain(secret);
    expect(text).toContain('[EMAIL]');
    // The query appears once in the user message; the answer once as the target.
    expect(m.scrub).toMatchObject({ email: 2, phone: 1, ipv4: 1, ipv6: 1, api_key: 2, total: 7 });
  });

  it('splits by conversation deterministically, with no conversation in both files', async () => {
    const convs: string[] = [];
    const convOfTarget = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const c = fx.conversation(`user${i % 5}`);
      convs.push(c);
      for (let t = 0; t < 3; t++) {
        const answer = `Answer ${t} in conversation ${i}: the lamp blinks ${t + 2} times.`;
        fx.respond({ conversation: c, query: `Question ${t} of conversation ${i} about item ${i * 7 + t}?`, answer });
        convOfTarget.set(answer, c);
      }
    }
    const m1 = await exportJson('--format', 'sft', '--out', out, '--val-fraction', '0.3');
    const valFile = path.join(path.dirname(out), 'sft.val.jsonl');
    const first = { train: fs.readFileSync(out, 'utf8'), val: fs.readFileSync(valFile, 'utf8') };
    const trainConvs = new Set(readJsonl(out).map((v) => convOfTarget.get(lastContent(checkSftLine(v, 't')))));
    const valConvs = new Set(readJsonl(valFile).map((v) => convOfTarget.get(lastContent(checkSftLine(v, 'v')))));
    expect(trainConvs.has(undefined) || valConvs.has(undefined)).toBe(false);
    expect([...trainConvs].filter((c) => valConvs.has(c))).toEqual([]);
    expect(trainConvs.size + valConvs.size).toBe(40);
    expect(valConvs.size).toBeGreaterThan(3);
    expect(valConvs.size).toBeLessThan(25);
    expect(m1.counts).toMatchObject({ train: trainConvs.size * 3, val: valConvs.size * 3 });
    expect(m1.files.map((f) => [f.split, f.name, f.sha256])).toEqual([
      ['train', 'sft.jsonl', sha256File(out)],
      ['val', 'sft.val.jsonl', sha256File(valFile)],
    ]);
    // Run again: byte-identical files.
    const m2 = await exportJson('--format', 'sft', '--out', out, '--val-fraction', '0.3');
    expect(fs.readFileSync(out, 'utf8')).toBe(first.train);
    expect(fs.readFileSync(valFile, 'utf8')).toBe(first.val);
    expect(m2.files.map((f) => f.sha256)).toEqual(m1.files.map((f) => f.sha256));
  });

  it('skips malformed rows, counts them and names them in the manifest', async () => {
    const a = fx.conversation('ann');
    fx.respond({ conversation: a, query: 'good one', answer: 'good answer' });
    const bad = [
      fx.respond({ conversation: a, query: 'q1', answer: 'a1', renderedPromptJson: '{"truncated": [' }),
      fx.respond({ conversation: a, query: 'q2', answer: 'a2', renderedPromptJson: '{"role":"user","content":"not an array"}' }),
      fx.respond({ conversation: a, query: 'q3', answer: 'a3', renderedPromptJson: '[{"role":"user","content":7}]' }),
      fx.respond({ conversation: a, query: 'q4', answer: 'a4', renderedPromptJson: '[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]' }),
    ];
    const res = await cli('--format', 'sft', '--out', out);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('malformed 4');
    const m = JSON.parse(fs.readFileSync(`${out}.manifest.json`, 'utf8')) as Manifest;
    expect(m.counts.malformed).toBe(4);
    expect(m.malformed_rows.map((r) => [r.seq, r.id, r.reason])).toEqual([
      [bad[0]!.seq, bad[0]!.id, 'rendered_prompt_not_json'],
      [bad[1]!.seq, bad[1]!.id, 'rendered_prompt_not_messages'],
      [bad[2]!.seq, bad[2]!.id, 'rendered_prompt_not_messages'],
      [bad[3]!.seq, bad[3]!.id, 'rendered_prompt_last_not_user'],
    ]);
    expect(readJsonl(out).map((v) => lastContent(checkSftLine(v, 'l')))).toEqual(['good answer']);
  });

  it('an empty selection prints a clear message, exits 0 and writes no file', async () => {
    basicLog();
    const res = await cli('--format', 'sft', '--out', out, '--collection', 'nothing-here');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/nothing to export: 0 logged responses matched the filters; no file written/);
    expect(exportDirListing()).toEqual([]);
    const json = await cli('--format', 'sft', '--out', out, '--collection', 'nothing-here', '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout.trim()).files).toEqual([]);
    expect(json.stderr).toMatch(/nothing to export/);
    expect(exportDirListing()).toEqual([]);
  });

  it('an interrupted export leaves no file at --out and no temp file behind', async () => {
    for (let i = 0; i < 30; i++) {
      const c = fx.conversation(`u${i}`);
      fx.respond({ conversation: c, query: `question number ${i} about the lamp`, answer: `answer number ${i}: blink ${i} times` });
    }
    // A previous good export must survive a failed one untouched.
    fs.writeFileSync(out, 'previous export\n');
    const store = fx.store;
    {
      await expect(
        runExport({
          store,
          format: 'sft',
          out,
          valFraction: 0.5,
          pageRows: 4,
          onProgress: (p) => {
            if (p.rowsRead === 17) throw new Error('injected failure mid-stream');
          },
        }),
      ).rejects.toThrow('injected failure mid-stream');
      expect(exportDirListing()).toEqual(['sft.jsonl']);
      expect(fs.readFileSync(out, 'utf8')).toBe('previous export\n');

      // A temp file from a killed export (its process is gone) is cleaned up by the next run; one of a
      // live export (this process) is left alone.
      const dead = spawnSync(process.execPath, ['-e', '0']).pid as number;
      const stale = path.join(path.dirname(out), `.sft.jsonl.tmp-${dead}-0badc0de`);
      const live = path.join(path.dirname(out), `.sft.jsonl.tmp-${process.pid}-0000beef`);
      fs.writeFileSync(stale, 'half a line');
      fs.writeFileSync(live, 'in progress');
      const controller = new AbortController();
      const run = runExport({ store, format: 'sft', out, signal: controller.signal, onProgress: (p) => p.rowsRead === 3 && controller.abort() });
      await expect(run).rejects.toBeInstanceOf(CancelledError);
      expect(exportDirListing()).toEqual(['.sft.jsonl.tmp-' + process.pid + '-0000beef', 'sft.jsonl']);
      fs.rmSync(live);
    }
  });

  it('rejects bad usage with exit 2 and an unwritable output with exit 1', async () => {
    basicLog();
    const unknown = await cli('--format', 'csv', '--out', out);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--format: expected sft or preference/);
    await expect(exportCommand.run(['--format', 'csv', '--out', out, '--data-dir', fx.dataDir], capture().io)).rejects.toBeInstanceOf(ValidationError);
    expect((await cli('--format', 'sft')).code).toBe(2);
    expect((await cli('--format', 'sft', '--out', out, '--val-fraction', '1')).code).toBe(2);
    expect((await cli('--format', 'sft', '--out', out, '--min-rating', '2')).code).toBe(2);
    expect((await cli('--format', 'sft', '--out', out, '--since', 'last tuesday')).code).toBe(2);
    expect((await cli('--format', 'preference', '--out', out, '--min-rating', '1')).code).toBe(2);

    const missingDir = await cli('--format', 'sft', '--out', path.join(fx.dataDir, 'no', 'such', 'dir', 'x.jsonl'));
    expect(missingDir.code).toBe(1);
    expect(missingDir.stderr).toMatch(/cannot write .*x\.jsonl: directory .* does not exist/);
    const isDir = await cli('--format', 'sft', '--out', path.dirname(out));
    expect(isDir.code).toBe(1);
    expect(isDir.stderr).toMatch(/it is a directory/);
    const err = await exportCommand.run(['--format', 'sft', '--out', path.join(fx.dataDir, 'nope', 'x.jsonl'), '--data-dir', fx.dataDir], capture().io).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExportOutputError);
    expect(err).toBeInstanceOf(MnemeError);
    expect(err).not.toBeInstanceOf(ValidationError);
    const noDb = capture();
    expect(await main(['export', '--format', 'sft', '--out', out, '--data-dir', path.join(fx.dataDir, 'empty')], noDb.io)).toBe(1);
  });
});

describe('mneme export --format preference', () => {
  it('builds pairs from corrections and from two answers to the same prompt rated differently', async () => {
    const a = fx.conversation('ann');
    const b = fx.conversation('bob');
    const c = fx.conversation('cat');
    const corrected = fx.respond({ conversation: a, query: 'What does E-417 mean?', answer: 'A pump thing.', sources: [SOURCES.e417!] });
    fx.feedback(corrected, -1, 'E-417 means the coolant loop pressure dropped below 1.8 bar [1].');
    // The same rendered prompt in two conversations (first turn, same sources, no personalization).
    const good = fx.respond({ conversation: b, query: 'When does the ferry leave?', answer: 'At 07:15 and 16:40 on weekdays [1].', sources: [SOURCES.ferry!] });
    const bad = fx.respond({ conversation: c, query: 'When does the ferry leave?', answer: 'I could not find that.', sources: [SOURCES.ferry!] });
    fx.feedback(good, 1);
    fx.feedback(bad, -1);
    // Rated down without correction or partner: nothing to pair.
    const lonely = fx.respond({ conversation: a, query: 'And the pump seal?', answer: 'No idea.' });
    fx.feedback(lonely, -1);
    const prefOut = path.join(path.dirname(out), 'pref.jsonl');
    const m = await exportJson('--format', 'preference', '--out', prefOut);
    const pairs = readJsonl(prefOut).map((v, i) => checkPreferenceLine(v, `line ${i + 1}`));
    expect(pairs.map((p) => [p.preferred, p.nonPreferred])).toEqual([
      ['E-417 means the coolant loop pressure dropped below 1.8 bar [1].', 'A pump thing.'],
      ['At 07:15 and 16:40 on weekdays [1].', 'I could not find that.'],
    ]);
    expect(pairs[0]?.input).toEqual(corrected.messages);
    expect(pairs[1]?.input).toEqual(bad.messages);
    expect(m.counts).toMatchObject({ pairs_from_corrections: 1, pairs_from_ratings: 1, unpaired: 1, examples: 2 });
    expect(m.counts.ratings).toEqual({ up: 1, down: 3, unrated: 0 });
    expect(m.files[0]).toMatchObject({ name: 'pref.jsonl', examples: 2, sha256: sha256File(prefOut) });
  });

  it('writes the OpenAI DPO shape by default and TRL conversational prompt/chosen/rejected with --preference-format trl', async () => {
    const Msg = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }).strict();
    const Reply = z.tuple([z.object({ role: z.literal('assistant'), content: z.string().trim().min(1) }).strict()]);
    const Hash = z.string().regex(/^[0-9a-f]{32}$/);
    const endsWithUser = (m: Array<{ role: string }>): boolean => m[m.length - 1]?.role === 'user';
    const OpenAiDpoLine = z
      .object({ input: z.object({ messages: z.array(Msg).min(1).refine(endsWithUser) }).strict(), preferred_output: Reply, non_preferred_output: Reply, user: Hash, preferred_user: Hash })
      .strict();
    const TrlLine = z.object({ prompt: z.array(Msg).min(1).refine(endsWithUser), chosen: Reply, rejected: Reply, user: Hash, preferred_user: Hash }).strict();

    const [a, b, c, d, e] = ['ann', 'bob', 'cat', 'dan', 'eve'].map((n) => fx.conversation(n)) as [string, string, string, string, string];
    fx.feedback(fx.respond({ conversation: a, query: 'What does E-417 mean?', answer: 'A pump thing.', sources: [SOURCES.e417!] }), -1, 'Coolant pressure below 1.8 bar [1].');
    fx.feedback(fx.respond({ conversation: b, query: 'When does the ferry leave?', answer: 'At 07:15 and 16:40 [1].', sources: [SOURCES.ferry!] }), 1);
    fx.feedback(fx.respond({ conversation: c, query: 'When does the ferry leave?', answer: 'I could not find that.', sources: [SOURCES.ferry!] }), -1);
    // The rated-up side is an extractive placeholder: not a preferred output unless --include-extractive.
    fx.feedback(fx.respond({ conversation: d, query: 'How do I flash?', answer: 'Extractive answer (no language model is configured): > kestrelctl flash', sources: [SOURCES.kestrel!], modelBackend: 'extractive', modelId: 'extractive' }), 1);
    fx.feedback(fx.respond({ conversation: e, query: 'How do I flash?', answer: 'No idea.', sources: [SOURCES.kestrel!] }), -1);

    const prefOut = path.join(path.dirname(out), 'pref.jsonl');
    const openai = await exportJson('--format', 'preference', '--out', prefOut);
    const dpo = readJsonl(prefOut).map((v) => OpenAiDpoLine.parse(v));
    expect(dpo.map((l) => [l.preferred_output[0].content, l.non_preferred_output[0].content])).toEqual([
      ['Coolant pressure below 1.8 bar [1].', 'A pump thing.'],
      ['At 07:15 and 16:40 [1].', 'I could not find that.'],
    ]);
    expect(openai.preference_format).toBe('openai');
    expect(openai.counts.excluded.extractive).toBe(1);

    const trl = await exportJson('--format', 'preference', '--out', prefOut, '--preference-format', 'trl');
    const lines = readJsonl(prefOut).map((v) => TrlLine.parse(v));
    expect(lines.map((l) => ({ prompt: l.prompt, chosen: l.chosen, rejected: l.rejected, user: l.user, preferred_user: l.preferred_user }))).toEqual(
      dpo.map((l) => ({ prompt: l.input.messages, chosen: l.preferred_output, rejected: l.non_preferred_output, user: l.user, preferred_user: l.preferred_user })),
    );
    expect(() => OpenAiDpoLine.parse(readJsonl(prefOut)[0])).toThrow();
    expect(trl.preference_format).toBe('trl');
    expect(JSON.parse(fs.readFileSync(`${prefOut}.manifest.json`, 'utf8')).preference_format).toBe('trl');

    await exportJson('--format', 'preference', '--out', prefOut, '--preference-format', 'trl', '--include-extractive');
    expect(readJsonl(prefOut).map((v) => TrlLine.parse(v).chosen[0].content)).toContain('Extractive answer (no language model is configured): > kestrelctl flash');

    expect((await cli('--format', 'preference', '--out', prefOut, '--preference-format', 'csv')).code).toBe(2);
    const sft = await cli('--format', 'sft', '--out', out, '--preference-format', 'trl');
    expect(sft.code).toBe(2);
    expect(sft.stderr).toMatch(/--preference-format applies to --format preference/);
    const sftManifest = await exportJson('--format', 'sft', '--out', out);
    expect(sftManifest.preference_format).toBeNull();
  });

  it('drops a rating pair whose two conversations fall in different splits', async () => {
    // Many conversations asking the identical first question: some pairs straddle the split.
    const prompts: Logged[] = [];
    for (let i = 0; i < 24; i++) {
      const c = fx.conversation(`u${i}`);
      const r = fx.respond({ conversation: c, query: 'When does the ferry leave?', answer: i % 2 ? `Bad answer ${i}.` : `At 07:15 [1] (variant ${i}).`, sources: [SOURCES.ferry!] });
      fx.feedback(r, i % 2 ? -1 : 1);
      prompts.push(r);
    }
    const prefOut = path.join(path.dirname(out), 'pref.jsonl');
    const m = await exportJson('--format', 'preference', '--out', prefOut, '--val-fraction', '0.4');
    expect(m.counts.pairs_from_ratings + m.counts.pairs_dropped_cross_split).toBe(12);
    expect(m.counts.pairs_dropped_cross_split).toBeGreaterThan(0);
    const seen = new Map<string, string>();
    for (const f of m.files) {
      for (const v of readJsonl(f.path)) {
        const p = checkPreferenceLine(v, f.name);
        for (const text of [p.preferred, p.nonPreferred]) {
          expect(seen.get(text) ?? f.split).toBe(f.split);
          seen.set(text, f.split);
        }
      }
    }
  });

  it('says so and writes nothing when there is nothing to pair', async () => {
    basicLog();
    const prefOut = path.join(path.dirname(out), 'pref.jsonl');
    fx.db.prepare('DELETE FROM feedback').run();
    const res = await cli('--format', 'preference', '--out', prefOut);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/nothing to export: 0 rated responses matched the filters/);
    expect(exportDirListing()).toEqual([]);
  });
});

describe('pseudonymous user hashes', () => {
  const hashOf = async (name: string): Promise<string> => fx.store.exports.userHash(fx.userRef(name));

  it('every SFT line carries its user hash: keyed per data dir, stable across exports, listed in the manifest', async () => {
    basicLog();
    const m = await exportJson('--format', 'sft', '--out', out);
    const ann = await hashOf('ann');
    const bob = await hashOf('bob');
    expect(ann).toMatch(/^[0-9a-f]{32}$/);
    expect(ann).not.toBe(bob);
    // Not a plain hash of the id: guessing ids does not reveal it.
    const ref = fx.userRef('ann');
    for (const guess of [String(ref.id), `mneme-user:${ref.id}`, `mneme-user:${ref.id}:${ref.createdAt}`]) {
      expect(crypto.createHash('sha256').update(guess).digest('hex').slice(0, 32)).not.toBe(ann);
    }
    const lines = readJsonl(out) as Array<{ user: string; messages: Array<{ content: string }> }>;
    lines.forEach((l, i) => checkSftLine(l, `line ${i + 1}`));
    expect(lines.map((l) => l.user)).toEqual([ann, ann, ann, bob]);
    expect(m.users).toEqual([ann, bob].sort());
    // Stable: a second export (another file) gives the same hashes.
    const again = path.join(path.dirname(out), 'again.jsonl');
    await exportJson('--format', 'sft', '--out', again);
    expect((readJsonl(again) as Array<{ user: string }>).map((l) => l.user)).toEqual([ann, ann, ann, bob]);
    // Another data dir has another key: the same user id hashes differently there.
    const other = LogFixture.create();
    try {
      other.user('ann');
      expect(other.userId('ann')).toBe(fx.userId('ann'));
      expect(await other.store.exports.userHash(fx.userRef('ann'))).not.toBe(ann);
    } finally {
      other.remove();
    }
    // The key is stored in the database, never in the export.
    expect(fs.readFileSync(out, 'utf8')).not.toMatch(/user_hash_key/);
  });

  it('a preference pair names the user of each side', async () => {
    const b = fx.conversation('bob');
    const c = fx.conversation('cat');
    const good = fx.respond({ conversation: b, query: 'When does the ferry leave?', answer: 'At 07:15 and 16:40 on weekdays [1].', sources: [SOURCES.ferry!] });
    const bad = fx.respond({ conversation: c, query: 'When does the ferry leave?', answer: 'I could not find that.', sources: [SOURCES.ferry!] });
    fx.feedback(good, 1);
    fx.feedback(bad, -1);
    const prefOut = path.join(path.dirname(out), 'pref.jsonl');
    const m = await exportJson('--format', 'preference', '--out', prefOut);
    const [pair] = readJsonl(prefOut).map((v, i) => checkPreferenceLine(v, `line ${i + 1}`));
    expect(pair).toMatchObject({ user: await hashOf('cat'), preferredUser: await hashOf('bob') });
    expect(m.users).toEqual([await hashOf('bob'), await hashOf('cat')].sort());
  });

  it('users delete names the existing export manifests that hold the user, and only those', async () => {
    basicLog();
    const dir = path.dirname(out);
    const both = path.join(dir, 'both.jsonl');
    const gone = path.join(dir, 'gone.jsonl');
    const bobOnly = path.join(dir, 'bob.jsonl');
    const replaced = path.join(dir, 'replaced.jsonl');
    await exportJson('--format', 'sft', '--out', both);
    await exportJson('--format', 'sft', '--out', gone);
    await exportJson('--format', 'sft', '--out', bobOnly, '--collection', 'timetables');
    // Exported with ann, then overwritten by an export without her.
    await exportJson('--format', 'sft', '--out', replaced);
    await exportJson('--format', 'sft', '--out', replaced, '--collection', 'timetables');
    fs.rmSync(`${gone}.manifest.json`);
    const annHash = await hashOf('ann');
    const bobHash = await hashOf('bob');
    const erasedIds = [fx.userRef('ann').id, fx.userRef('bob').id];
    expect(await fx.store.exports.manifestsContainingUser(fx.userRef('ann'))).toEqual(
      expect.arrayContaining([`${both}.manifest.json`, `${gone}.manifest.json`, `${replaced}.manifest.json`]),
    );

    const c = capture();
    const code = await main(['users', 'delete', '--name', 'ann', '--data-dir', fx.dataDir, '--json'], c.io);
    expect(code, c.err()).toBe(0);
    const res = JSON.parse(c.out().trim().split('\n').pop()!) as { user_hash: string; export_manifests: string[] };
    expect(res.user_hash).toBe(annHash);
    expect(res.export_manifests).toEqual([`${both}.manifest.json`]);
    // The text form prints them too.
    const bob = capture();
    expect(await main(['users', 'delete', '--name', 'bob', '--data-dir', fx.dataDir], bob.io)).toBe(0);
    expect(bob.out()).toContain(bobHash);
    for (const f of [both, bobOnly, replaced]) expect(bob.out()).toContain(`${f}.manifest.json`);
    expect(bob.out()).not.toContain(`${gone}.manifest.json`);
    // A new user who gets an erased user's id (SQLite reuses ids above the largest left) is someone
    // else: another hash, no exports.
    expect(await main(['users', 'create', '--name', 'cy', '--data-dir', fx.dataDir], capture().io)).toBe(0);
    const cy = fx.userRef('cy');
    expect(erasedIds).toContain(cy.id);
    expect([annHash, bobHash]).not.toContain(await fx.store.exports.userHash(cy));
    expect(await fx.store.exports.manifestsContainingUser(cy)).toEqual([]);
  });
});
