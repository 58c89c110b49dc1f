/**
 * Shared transformers.js set-up for every thread that loads a model: where models are cached, whether
 * the hub may be contacted, and how a local directory is addressed.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { env as TransformersEnv } from '@huggingface/transformers';
import { isLocalModelRef } from './config.ts';

export interface ModelLocation {
  /** Hub id or absolute local directory. */
  modelRef: string;
  /** Cache dir for hub models; also searched first for `<modelsDir>/<hub id>/` copied by hand. */
  modelsDir: string;
  offline: boolean;
}

/**
 * Points transformers.js at the right place and returns the id to pass to `from_pretrained`.
 * A local directory is passed as its absolute path; a hub id is
 * looked up in `modelsDir` first, then (unless offline) downloaded into it.
 */
export function configureTransformersEnv(env: typeof TransformersEnv, loc: ModelLocation): string {
  env.allowLocalModels = true;
  env.cacheDir = loc.modelsDir;
  if (isLocalModelRef(loc.modelRef)) {
    if (!fs.existsSync(path.join(loc.modelRef, 'config.json'))) {
      throw new Error(`model directory ${loc.modelRef} has no config.json`);
    }
    // An absolute path is not a hub id, so transformers.js reads it as a directory and never
    // downloads; its file cache is bypassed so a stale cached copy cannot shadow the directory.
    env.allowRemoteModels = false;
    env.useFSCache = false;
    return loc.modelRef;
  }
  env.allowRemoteModels = !loc.offline;
  env.useFSCache = true;
  env.localModelPath = `${loc.modelsDir}${path.sep}`;
  return loc.modelRef;
}

export interface SentenceTransformersConfig {
  maxSeqLength?: number;
  pooling?: 'mean' | 'cls';
  normalize?: boolean;
}

/** Reads sentence-transformers' side files of a local model dir (absent files → empty fields). */
export function readSentenceTransformersConfig(modelRef: string): SentenceTransformersConfig {
  if (!isLocalModelRef(modelRef)) return {};
  const read = (f: string): unknown => {
    try {
      return JSON.parse(fs.readFileSync(path.join(modelRef, f), 'utf8'));
    } catch {
      return undefined;
    }
  };
  const out: SentenceTransformersConfig = {};
  const sbert = read('sentence_bert_config.json') as { max_seq_length?: number } | undefined;
  if (typeof sbert?.max_seq_length === 'number') out.maxSeqLength = sbert.max_seq_length;
  const pool = read('1_Pooling/config.json') as { pooling_mode_cls_token?: boolean; pooling_mode_mean_tokens?: boolean } | undefined;
  if (pool) out.pooling = pool.pooling_mode_cls_token && !pool.pooling_mode_mean_tokens ? 'cls' : 'mean';
  const modules = read('modules.json') as Array<{ type?: string }> | undefined;
  if (Array.isArray(modules)) out.normalize = modules.some((m) => m.type?.endsWith('Normalize'));
  return out;
}
