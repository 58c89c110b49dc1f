/**
 * `mneme models [--json]`: the configured embedding and chat models, where they are (or must be
 * copied to), their size and whether every file is there, so a user of an offline machine knows what
 * to copy where. Read-only: never loads or downloads a model. Exit code 1 when a configured local
 * model is missing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Config } from '../core/config.ts';
import { loadConfig } from '../core/config.ts';
import type { ModelFile } from '../core/model-files.ts';
import { statSize, transformersModelFiles } from '../core/model-files.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command } from './types.ts';

export type { ModelFile } from '../core/model-files.ts';

export interface ModelReport {
  role: 'embedding' | 'chat';
  /** transformers | gguf | openai | extractive | none */
  backend: string;
  /** Hub id, path, server model name, or null when there is no model. */
  id: string | null;
  /** Where the files are read from: a directory, a file, a server URL, or null. */
  location: string | null;
  /** True when every required file is there; null when not checkable here (remote server). */
  present: boolean | null;
  /** Bytes under `location` (the whole directory for a model directory). */
  bytes: number;
  files: ModelFile[];
  /** Where to get it / what to do, for a human. */
  note: string;
}

function dirBytes(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSize(p) ?? 0;
  }
  return total;
}

/** A transformers.js model directory: a local one, or `<modelsDir>/<hub id>/` (cache and hand-copied both). */
function transformersModel(role: 'embedding' | 'chat', ref: string, modelsDir: string, dtype: string, offline: boolean): ModelReport {
  const { dir, local, files, missing } = transformersModelFiles(ref, modelsDir, dtype, role);
  const present = missing.length === 0;
  let note: string;
  if (present) note = local ? 'local model directory' : `cached hub model (${dtype})`;
  else if (local) note = `missing ${missing.join(', ')} in ${dir}`;
  else {
    note =
      `copy ${missing.join(', ')} from https://huggingface.co/${ref} into ${dir}/` +
      (offline ? '' : ' (or let mneme download them: MNEME_OFFLINE is off)');
  }
  return { role, backend: 'transformers', id: ref, location: dir, present, bytes: fs.existsSync(dir) ? dirBytes(dir) : 0, files, note };
}

function ggufModel(file: string): ModelReport {
  const abs = path.resolve(file);
  const size = statSize(abs);
  let isGguf = false;
  if (size !== null && size >= 4) {
    const head = Buffer.alloc(4);
    const fd = fs.openSync(abs, 'r');
    try {
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
    isGguf = head.toString('latin1') === 'GGUF';
  }
  const note = size === null ? `copy the .gguf file to ${abs}` : isGguf ? 'GGUF file' : `${abs} is not a GGUF file (bad magic bytes)`;
  return {
    role: 'chat',
    backend: 'gguf',
    id: abs,
    location: abs,
    present: isGguf,
    bytes: size ?? 0,
    files: [{ file: '', present: size !== null, bytes: size ?? 0, optional: false }],
    note,
  };
}

/**
 * Describes the configured models from the filesystem alone.
 * @param chatDtype ONNX dtype of a transformers chat model (default fp32, as the backend loads it).
 */
export function describeModels(config: Config, chatDtype = 'fp32'): ModelReport[] {
  const out: ModelReport[] = [];
  if (config.embed.model === null) {
    out.push({ role: 'embedding', backend: 'none', id: null, location: null, present: true, bytes: 0, files: [], note: 'embeddings disabled (MNEME_EMBED_MODEL=none): BM25 only' });
  } else if (config.embed.server) {
    out.push({
      role: 'embedding', backend: 'openai', id: config.embed.server.modelName, location: `${config.embed.server.apiBase}/embeddings`, present: null, bytes: 0, files: [],
      note: `served by an OpenAI-compatible embedding server (not checked here; \`mneme doctor\` probes it), ${config.embed.server.concurrency} requests in flight`,
    });
  } else {
    out.push(transformersModel('embedding', config.embed.model, config.modelsDir, config.embed.dtype, config.offline));
  }
  const spec = config.llm.spec;
  const colon = spec.indexOf(':');
  const kind = colon === -1 ? spec : spec.slice(0, colon);
  const target = colon === -1 ? '' : spec.slice(colon + 1);
  if (kind === 'gguf') out.push(ggufModel(target));
  else if (kind === 'transformers') {
    const ref = target.startsWith('.') || target.startsWith('/') ? path.resolve(target) : target;
    out.push(transformersModel('chat', ref, config.modelsDir, chatDtype, config.offline));
  } else if (kind === 'openai') {
    out.push({
      role: 'chat', backend: 'openai', id: config.llm.model ?? null, location: target, present: null, bytes: 0, files: [],
      note: 'served by an OpenAI-compatible server (not checked here)',
    });
  } else {
    out.push({ role: 'chat', backend: 'extractive', id: null, location: null, present: true, bytes: 0, files: [], note: 'no language model: extractive answers' });
  }
  return out;
}

/** "1.4 GB" style sizes (powers of 1024, one decimal). */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Human-readable listing (pure). */
export function formatModels(reports: ModelReport[], modelsDir: string): string {
  const lines = [`models dir: ${modelsDir}`];
  for (const r of reports) {
    const state = r.present === null ? 'remote' : r.present ? 'present' : 'MISSING';
    lines.push('', `${r.role}: ${r.backend}${r.id ? ` ${r.id}` : ''}`, `  status:   ${state}${r.bytes ? ` (${formatBytes(r.bytes)})` : ''}`);
    if (r.location) lines.push(`  location: ${r.location}`);
    for (const f of r.files) {
      if (!f.file) continue;
      lines.push(`    ${f.present ? 'ok     ' : f.optional ? 'absent ' : 'missing'} ${f.file}${f.present ? ` ${formatBytes(f.bytes)}` : ''}`);
    }
    lines.push(`  ${r.note}`);
  }
  return `${lines.join('\n')}\n`;
}

const schema = z.object({ 'data-dir': z.string().optional(), json: z.boolean() });

/** The option table of `mneme models` (parsing and --help). */
export const MODELS_SPEC: CommandSpec = {
  name: 'models',
  summary: 'show the configured embedding and chat models: location, size, present (exit 1 if one is missing)',
  options: [],
  examples: ['models', 'models --json'],
};

export const modelsCommand: Command = {
  name: 'models',
  usage: synopsis(MODELS_SPEC),
  specs: [MODELS_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(MODELS_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    const reports = describeModels(config);
    if (opts.json) printJson(io.stdout, { models_dir: config.modelsDir, offline: config.offline, models: reports });
    else io.stdout.write(formatModels(reports, config.modelsDir));
    return reports.some((r) => r.present === false) ? 1 : 0;
  },
};
