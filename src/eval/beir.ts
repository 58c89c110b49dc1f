/**
 * Loads a dataset in the BEIR layout:
 *   DIR/corpus.jsonl         {"_id", "title"?, "text"} per line
 *   DIR/queries.jsonl        {"_id", "text"} per line
 *   DIR/qrels/<split>.tsv    header "query-id<TAB>corpus-id<TAB>score", then one judgment per line
 * Every line is validated (zod); errors name the file and line. Files are streamed line by line.
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { z } from 'zod';
import { ValidationError } from '../core/errors.ts';

export interface BeirPassage {
  id: string;
  title: string;
  text: string;
}

export interface BeirDataset {
  dir: string;
  corpus: BeirPassage[];
  /** query id → text, only the queries judged in the qrels split. */
  queries: Map<string, string>;
  /** query id → (corpus id → grade). */
  qrels: Map<string, Map<string, number>>;
  /** Non-fatal oddities (judged queries missing from queries.jsonl, judged ids missing from the corpus). */
  warnings: string[];
}

// BEIR ids are strings, but a few exports write numeric ids: accept both, keep them as strings.
const id = z.union([z.string().min(1), z.number().int().transform(String)]);
const passageSchema = z.object({ _id: id, title: z.string().nullish(), text: z.string().nullish() });
const querySchema = z.object({ _id: id, text: z.string().min(1) });
const qrelSchema = z.object({ queryId: z.string().min(1), corpusId: z.string().min(1), score: z.coerce.number().int() });

async function* lines(file: string): AsyncGenerator<{ line: string; n: number }> {
  const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    yield { line, n };
  }
}

function zodMessage(err: z.ZodError): string {
  const issue = err.issues[0];
  return issue ? `${issue.path.join('.') || 'value'}: ${issue.message}` : 'invalid';
}

async function readJsonl<T>(file: string, schema: z.ZodType<T>, onRow: (row: T, n: number) => void): Promise<void> {
  for await (const { line, n } of lines(file)) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (cause) {
      throw new ValidationError(`${file} line ${n}: invalid JSON: ${(cause as Error).message}`, { cause });
    }
    const res = schema.safeParse(value);
    if (!res.success) throw new ValidationError(`${file} line ${n}: ${zodMessage(res.error)}`, { cause: res.error });
    onRow(res.data, n);
  }
}

function requireFile(file: string, what: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new ValidationError(`not a BEIR dataset: ${file} is missing (${what})`);
  }
  if (!st.isFile()) throw new ValidationError(`not a BEIR dataset: ${file} is not a file (${what})`);
}

/**
 * Reads and validates a BEIR dataset directory.
 * @param split qrels file name without `.tsv` (default "test").
 * @throws ValidationError naming the file (and line) that is missing, malformed or inconsistent
 *         (duplicate ids, empty corpus, no judged query).
 */
export async function loadBeirDataset(dir: string, split = 'test'): Promise<BeirDataset> {
  const root = path.resolve(dir);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new ValidationError(`dataset directory ${root} does not exist`);
  const corpusFile = path.join(root, 'corpus.jsonl');
  const queriesFile = path.join(root, 'queries.jsonl');
  const qrelsFile = path.join(root, 'qrels', `${split}.tsv`);
  requireFile(corpusFile, 'one {"_id","title","text"} object per line');
  requireFile(queriesFile, 'one {"_id","text"} object per line');
  requireFile(qrelsFile, 'tab-separated query-id, corpus-id, score with a header line');

  const warnings: string[] = [];
  const corpus: BeirPassage[] = [];
  const corpusIds = new Set<string>();
  await readJsonl(corpusFile, passageSchema, (row, n) => {
    if (corpusIds.has(row._id)) throw new ValidationError(`${corpusFile} line ${n}: duplicate _id ${JSON.stringify(row._id)}`);
    corpusIds.add(row._id);
    corpus.push({ id: row._id, title: (row.title ?? '').trim(), text: (row.text ?? '').trim() });
  });
  if (corpus.length === 0) throw new ValidationError(`${corpusFile} has no passages`);

  const allQueries = new Map<string, string>();
  await readJsonl(queriesFile, querySchema, (row, n) => {
    if (allQueries.has(row._id)) throw new ValidationError(`${queriesFile} line ${n}: duplicate _id ${JSON.stringify(row._id)}`);
    allQueries.set(row._id, row.text);
  });

  const qrels = new Map<string, Map<string, number>>();
  let sawHeader = false;
  let missingDocs = 0;
  for await (const { line, n } of lines(qrelsFile)) {
    if (line.trim() === '') continue;
    const cols = line.split('\t').map((c) => c.trim());
    if (!sawHeader) {
      sawHeader = true;
      // BEIR writes a header; tolerate a headerless file whose first line is already a judgment.
      if (cols[0] === 'query-id' || cols[0] === 'query_id' || cols[0] === 'qid') continue;
    }
    if (cols.length < 3) throw new ValidationError(`${qrelsFile} line ${n}: expected 3 tab-separated columns (query-id, corpus-id, score), got ${cols.length}`);
    const res = qrelSchema.safeParse({ queryId: cols[0], corpusId: cols[1], score: cols[2] });
    if (!res.success) throw new ValidationError(`${qrelsFile} line ${n}: ${zodMessage(res.error)}`, { cause: res.error });
    const { queryId, corpusId, score } = res.data;
    if (!corpusIds.has(corpusId)) missingDocs++;
    let judged = qrels.get(queryId);
    if (!judged) qrels.set(queryId, (judged = new Map()));
    judged.set(corpusId, score);
  }
  if (missingDocs > 0) warnings.push(`${missingDocs} judgment(s) in ${qrelsFile} name passages missing from corpus.jsonl (they count as relevant but can never be found)`);

  const queries = new Map<string, string>();
  let missingQueries = 0;
  for (const qid of [...qrels.keys()]) {
    const text = allQueries.get(qid);
    if (text === undefined) {
      missingQueries++;
      qrels.delete(qid);
    } else queries.set(qid, text);
  }
  if (missingQueries > 0) warnings.push(`${missingQueries} judged query id(s) are missing from queries.jsonl and were skipped`);
  if (queries.size === 0) throw new ValidationError(`${qrelsFile} judges no query of ${queriesFile}`);
  return { dir: root, corpus, queries, qrels, warnings };
}
