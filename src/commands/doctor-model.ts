/**
 * `mneme doctor`'s embedding-model check: the configured model must be loadable, or doctor says what
 * to copy where. Never downloads: a hub model that is not cached yet is a warning when downloads are
 * allowed (the next ingest/serve fetches it) and a problem under MNEME_OFFLINE=1.
 */
import type { Config } from '../core/config.ts';
import { TransformersEmbedder } from '../core/embedder.ts';
import { missingEmbeddingModelMessage, transformersModelFiles } from '../core/model-files.ts';

/** The part of a doctor report this check adds to. */
export interface ModelCheckTarget {
  ok: boolean;
  problems: string[];
  warnings: string[];
}

/** Text embedded once to prove the loaded model runs end to end. */
const PROBE_TEXT = 'mneme doctor';

/**
 * Checks the configured embedding model and adds a problem (ok = false) or a warning to `report`.
 * With every file present, it loads the model in one worker thread and embeds one string.
 */
export async function checkEmbeddingModel(report: ModelCheckTarget, config: Config): Promise<void> {
  const modelRef = config.embed.model;
  if (modelRef === null) return; // MNEME_EMBED_MODEL=none: BM25 only on purpose
  if (config.embed.server) return checkEmbeddingServer(report, config);
  const loc = { modelRef, modelsDir: config.modelsDir, dtype: config.embed.dtype, offline: config.offline };
  const files = transformersModelFiles(modelRef, config.modelsDir, config.embed.dtype);
  if (files.missing.length > 0) {
    if (!files.local && !config.offline) {
      report.warnings.push(
        `embedding model ${modelRef} is not downloaded yet: the next ingest or serve downloads it from huggingface.co into ${files.dir}/ ` +
          '(without internet access, copy it there and set MNEME_OFFLINE=1)',
      );
      return;
    }
    report.problems.push(missingEmbeddingModelMessage(loc) ?? `embedding model ${modelRef} is incomplete`);
    report.ok = false;
    return;
  }
  let embedder: TransformersEmbedder | null = null;
  try {
    embedder = await TransformersEmbedder.load({ ...loc, threads: 1, workers: 1, maxTokens: config.embed.maxTokens });
    await embedder.embed([PROBE_TEXT]);
  } catch (err) {
    report.problems.push(`${(err as Error).message} (corrupt or incompatible files? copy the model into ${files.dir}/ again, or set MNEME_EMBED_MODEL)`);
    report.ok = false;
  } finally {
    await embedder?.close();
  }
}

/** `openai:` embedding server: it must answer a one-string request (OpenAIEmbedder.load probes it). */
async function checkEmbeddingServer(report: ModelCheckTarget, config: Config): Promise<void> {
  const { OpenAIEmbedder, openAIEmbedderOptions } = await import('../core/embedder-openai.ts');
  try {
    const embedder = await OpenAIEmbedder.load(openAIEmbedderOptions(config.embed.server!, config.embed.maxTokens));
    await embedder.close();
  } catch (err) {
    report.problems.push(`${(err as Error).message} (is the embedding server running? check MNEME_EMBED_MODEL and MNEME_EMBED_MODEL_NAME)`);
    report.ok = false;
  }
}
