/**
 * Which files a transformers.js model needs and whether they are on disk, read from the filesystem
 * alone (never loads or downloads). Used by `mneme models`, `mneme doctor` and the embedder's
 * "model missing" message, so all three name the same directory and the same files.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isLocalModelRef } from './config.ts';

/** transformers.js file name suffix of each ONNX dtype (utils/dtypes.js DEFAULT_DTYPE_SUFFIX_MAPPING). */
const DTYPE_SUFFIX: Record<string, string> = {
  fp32: '', fp16: '_fp16', int8: '_int8', uint8: '_uint8', q8: '_quantized', q4: '_q4', q4f16: '_q4f16', bnb4: '_bnb4',
};

export interface ModelFile {
  /** Path relative to the model location ('' for a single-file model). */
  file: string;
  present: boolean;
  bytes: number;
  /** Optional files are used when there but not required (generation_config.json). */
  optional: boolean;
}

export interface TransformersModelFiles {
  /** The directory the files are read from: a local model directory, or `<modelsDir>/<hub id>`. */
  dir: string;
  /** True when `ref` is a local directory (never downloaded). */
  local: boolean;
  files: ModelFile[];
  /** Required files that are not there (empty when the model is complete). */
  missing: string[];
}

export function statSize(p: string): number | null {
  try {
    const st = fs.statSync(p);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/**
 * The files of transformers.js model `ref` (hub id or absolute directory) for ONNX `dtype`.
 * @param role 'chat' also lists the optional generation_config.json.
 */
export function transformersModelFiles(ref: string, modelsDir: string, dtype: string, role: 'embedding' | 'chat' = 'embedding'): TransformersModelFiles {
  const local = isLocalModelRef(ref);
  const dir = local ? ref : path.join(modelsDir, ...ref.split('/'));
  const onnx = `onnx/model${DTYPE_SUFFIX[dtype] ?? `_${dtype}`}.onnx`;
  const required = ['config.json', 'tokenizer.json', 'tokenizer_config.json', onnx];
  const optional = role === 'chat' ? ['generation_config.json'] : [];
  const files: ModelFile[] = [...required.map((f) => [f, false] as const), ...optional.map((f) => [f, true] as const)].map(([f, opt]) => {
    const size = statSize(path.join(dir, f));
    return { file: f, present: size !== null, bytes: size ?? 0, optional: opt };
  });
  // Large models keep weights beside the graph (model.onnx_data, model.onnx_data_1, ...).
  try {
    for (const name of fs.readdirSync(path.join(dir, 'onnx'))) {
      if (name.startsWith(`${path.basename(onnx)}_data`)) {
        files.push({ file: `onnx/${name}`, present: true, bytes: statSize(path.join(dir, 'onnx', name)) ?? 0, optional: false });
      }
    }
  } catch {
    // no onnx/ directory: the required file above is already reported missing
  }
  return { dir, local, files, missing: files.filter((f) => !f.present && !f.optional).map((f) => f.file) };
}

/** What the embedding-model messages need to know about the configuration. */
export interface EmbeddingModelLocation {
  /** Hub id or absolute directory. */
  modelRef: string;
  modelsDir: string;
  /** ONNX dtype (MNEME_EMBED_DTYPE). */
  dtype: string;
  /** MNEME_OFFLINE. */
  offline: boolean;
}

/**
 * One message for an embedding model whose files are not all there: which files are missing, the
 * directory to copy them into, and the alternatives. `cause` is the download/load error, if any.
 * Returns null when every required file is present (the failure is something else: corrupt files).
 */
export function missingEmbeddingModelMessage(loc: EmbeddingModelLocation, cause?: string): string | null {
  const m = transformersModelFiles(loc.modelRef, loc.modelsDir, loc.dtype);
  if (m.missing.length === 0) return null;
  const files = m.missing.join(', ');
  if (m.local) {
    return `embedding model directory ${m.dir} is missing ${files}: copy the model there, or set MNEME_EMBED_MODEL to another model (none: BM25 only)`;
  }
  const why = loc.offline
    ? 'and MNEME_OFFLINE=1 forbids downloading it'
    : `and downloading it from huggingface.co failed${cause ? ` (${cause})` : ''}`;
  return (
    `embedding model ${loc.modelRef} is not in ${m.dir}/ (missing ${files}) ${why}: ` +
    `copy those files from https://huggingface.co/${loc.modelRef} into ${m.dir}/, ` +
    'or set MNEME_EMBED_MODEL to a local model directory (none: BM25 only)'
  );
}
