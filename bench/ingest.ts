/**
 * Ingestion benchmark: mneme vs LangChain's own path on a real corpus, same model, same run.
 *
 *   node --import tsx bench/ingest.ts [--corpus DIR] [--model DIR] [--limit N] [--skip-langchain] [--langchain-batch N]
 *
 * Defaults: corpus bench/.work/pgdoc (postgresql-doc-15 HTML: `apt-get download postgresql-doc-15 &&
 * dpkg-deb -x postgresql-doc-15_*.deb bench/.work/pgdoc`), model ../shared/models/minilm-l6-shape-random
 * (all-MiniLM-L6-v2 shape, random weights: valid for speed only). Each phase runs in its own child
 * process so peak RSS is per phase. The LangChain baseline needs its own install (it is not a project
 * dependency): see bench/README.md. `--langchain-batch N` is the `batchSize` of LangChain's embeddings
 * (texts per model call; its default 512).
 *
 * The two sides make different chunks (mneme's token-budget chunker vs RecursiveCharacterTextSplitter),
 * so besides chunks/s each side reports the tokens its model embedded (each chunk's token count with
 * the model's tokenizer, special tokens included, capped where that side truncates: mneme at the
 * embedder's max tokens, LangChain at the tokenizer's model_max_length) and embedded tokens/s. Tokens
 * are counted after the timed part, from the texts each side actually sent to its model.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    corpus: { type: 'string', default: path.join(here, '.work/pgdoc') },
    model: { type: 'string', default: path.resolve(here, '../../shared/models/minilm-l6-shape-random') },
    limit: { type: 'string' },
    'skip-langchain': { type: 'boolean', default: false },
    'langchain-batch': { type: 'string', default: '512' },
    phase: { type: 'string' },
    'data-dir': { type: 'string' },
    files: { type: 'string' },
  },
});

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
}

/**
 * CPU seconds used by this process's main thread (the event loop: parsing, chunking, SQLite, HNSW),
 * from /proc; null elsewhere. On 2 cores every second of it is taken from the embedding worker.
 */
function mainThreadCpuSeconds(): number | null {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticksPerSecond = 100;
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return null;
  }
}

function listFiles(root: string, limit: number | undefined): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(html?|md|txt)$/.test(e.name)) out.push(p);
    }
  };
  walk(root);
  return limit ? out.slice(0, limit) : out;
}

async function phaseMneme(dataDir: string, filesDir: string): Promise<Record<string, number>> {
  const { loadConfig } = await import('../src/core/config.ts');
  const { openStore, openVectorStack } = await import('../src/core/deps.ts');
  const { runIngest } = await import('../ingest/pipeline.ts');
  type Stack = Awaited<ReturnType<typeof openVectorStack>>;
  const t0 = performance.now();
  const config = loadConfig({ MNEME_EMBED_MODEL: values.model, MNEME_OFFLINE: '1', MNEME_DATA_DIR: dataDir });
  const store = await openStore(config);
  // Every text sent to the model, kept (a reference per chunk) to count its tokens after the clock stops.
  const embedded: string[][] = [];
  let stack: Promise<Stack> | null = null;
  const vectors = () =>
    (stack ??= openVectorStack(store, config).then((v) => {
      const e = v.embedder;
      if (e) {
        const embed = e.embed.bind(e);
        e.embed = (texts: string[]) => {
          embedded.push(texts);
          return embed(texts);
        };
      }
      return v;
    }));
  const tOpen = performance.now();
  const s = await runIngest({
    store, dataDir, paths: [filesDir], collection: 'default', prune: false, maxFileBytes: config.maxFileBytes, vectors, configuredModel: config.embed.model,
  });
  const mainCpu = mainThreadCpuSeconds() ?? Number.NaN;
  const opened = stack as Promise<Stack> | null;
  const embedder = opened ? (await opened).embedder : null;
  // Counting is not part of the run: its time is taken off the total.
  const tCount = performance.now();
  let tokens = 0;
  if (embedder) for (const batch of embedded) for (const t of batch) tokens += Math.min(embedder.countTokens(t), embedder.info.maxTokens);
  const countMs = performance.now() - tCount;
  await embedder?.close();
  await store.close();
  const total = (performance.now() - t0 - countMs) / 1000;
  const rss = peakRssMb();
  return {
    seconds_total: total, seconds_open: (tOpen - t0) / 1000, seconds_ingest: s.seconds,
    documents: s.documents_added + s.documents_updated, unchanged: s.documents_unchanged, chunks: s.chunks_added,
    embedded: s.chunks_embedded, failed: s.documents_failed,
    chunks_per_s: s.chunks_added / total, docs_per_s: (s.documents_added + s.documents_updated) / total,
    embedded_tokens: tokens, embedded_tokens_per_s: tokens / total, peak_rss_mb: rss,
    main_thread_cpu_s: mainCpu,
  };
}

/**
 * LangChain's own path: RecursiveCharacterTextSplitter + HNSWLib vector store + transformers.js
 * embeddings, adding in batches and saving after each. Text extraction uses mneme's loader so both
 * sides embed the same text.
 */
async function phaseLangchain(dataDir: string, filesDir: string): Promise<Record<string, number>> {
  const lc = path.join(here, '.work/lc/node_modules');
  const imp = (p: string) => import(path.join(lc, p));
  const { RecursiveCharacterTextSplitter } = await imp('@langchain/textsplitters/dist/index.js');
  const { HNSWLib } = await imp('@langchain/community/dist/vectorstores/hnswlib.js');
  const { HuggingFaceTransformersEmbeddings } = await imp('@langchain/community/dist/embeddings/huggingface_transformers.js');
  const { loadDocument } = await import('../ingest/loaders.ts');
  const t0 = performance.now();
  // dtype is a from_pretrained option (pipelineOptions go to each model call, where it is ignored).
  const embeddings = new HuggingFaceTransformersEmbeddings({ model: values.model, pretrainedOptions: { dtype: 'fp32' }, batchSize: Number(values['langchain-batch']) });
  const splitter = new RecursiveCharacterTextSplitter({ chunkSize: 1000, chunkOverlap: 150 });
  let store: { addDocuments(d: unknown[]): Promise<void>; save(dir: string): Promise<void> } | null = null;
  const files = listFiles(filesDir, undefined);
  const BATCH_FILES = 50;
  let chunks = 0;
  // The chunk texts embedded, to count their tokens after the clock stops.
  const texts: string[][] = [];
  for (let i = 0; i < files.length; i += BATCH_FILES) {
    const docs: Array<{ pageContent: string; metadata: Record<string, unknown> }> = [];
    for (const f of files.slice(i, i + BATCH_FILES)) {
      try {
        const loaded = await loadDocument(fs.readFileSync(f), path.basename(f));
        docs.push({ pageContent: loaded.sections.map((s) => s.text).join('\n\n'), metadata: { source: f } });
      } catch {
        /* same failures as mneme: skipped */
      }
    }
    const split = await splitter.splitDocuments(docs);
    chunks += split.length;
    texts.push(split.map((d: { pageContent: string }) => d.pageContent));
    if (!store) store = await HNSWLib.fromDocuments(split, embeddings);
    else await store.addDocuments(split);
    await store!.save(dataDir);
  }
  const total = (performance.now() - t0) / 1000;
  const rss = peakRssMb();
  const tokens = await countTokens(texts.flat());
  return {
    seconds_total: total, documents: files.length, chunks, chunks_per_s: chunks / total, docs_per_s: files.length / total,
    embedded_tokens: tokens, embedded_tokens_per_s: tokens / total, batch_size: Number(values['langchain-batch']), peak_rss_mb: rss,
  };
}

/**
 * Tokens the LangChain side's model saw for `texts`: the model's tokenizer (special tokens included),
 * each text capped at the tokenizer's model_max_length, where transformers.js' pipeline truncates.
 */
async function countTokens(texts: string[]): Promise<number> {
  const { AutoTokenizer, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  const tokenizer = await AutoTokenizer.from_pretrained(values.model!);
  const cap = Number(tokenizer.model_max_length) || Number.POSITIVE_INFINITY;
  let total = 0;
  for (const t of texts) total += Math.min(tokenizer.encode(t).length, cap);
  return total;
}

async function main(): Promise<void> {
  if (values.phase) {
    const dataDir = values['data-dir']!;
    const filesDir = values.files!;
    const r = values.phase === 'langchain' ? await phaseLangchain(dataDir, filesDir) : await phaseMneme(dataDir, filesDir);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const limit = values.limit ? Number(values.limit) : undefined;
  // Copy the (possibly limited) corpus into a flat work dir so both sides read exactly the same files.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-ingest-'));
  const filesDir = path.join(work, 'corpus');
  fs.mkdirSync(filesDir);
  const files = listFiles(values.corpus!, limit);
  files.forEach((f, i) => fs.copyFileSync(f, path.join(filesDir, `${String(i).padStart(5, '0')}-${path.basename(f)}`)));
  const run = (phase: string, dataDir: string) =>
    JSON.parse(
      execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--phase', phase, '--data-dir', dataDir, '--files', filesDir, '--model', values.model!, '--langchain-batch', values['langchain-batch']!], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
      }).trim().split('\n').pop()!,
    ) as Record<string, number>;
  const mnemeDir = path.join(work, 'mneme-data');
  const first = run('mneme', mnemeDir);
  const again = run('mneme', mnemeDir);
  const result: Record<string, unknown> = {
    corpus: values.corpus, files: files.length, model: values.model, cores: os.availableParallelism(),
    mneme_first: first, mneme_unchanged: again,
    unchanged_ratio_total: again.seconds_total! / first.seconds_total!,
    unchanged_ratio_ingest: again.seconds_ingest! / first.seconds_ingest!,
  };
  if (!values['skip-langchain']) {
    const lc = run('langchain', path.join(work, 'lc-data'));
    result.langchain = lc;
    result.speedup_vs_langchain = lc.seconds_total! / first.seconds_total!;
    // The sides chunk differently: compare the model work done per second too.
    result.embedded_tokens_per_s_ratio = first.embedded_tokens_per_s! / lc.embedded_tokens_per_s!;
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  fs.rmSync(work, { recursive: true, force: true });
}

await main();
