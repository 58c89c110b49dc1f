/**
 * The export pipeline: selected log rows → exclusions (select.ts: rated down without a correction,
 * extractive placeholders) → examples (format.ts) → PII scrub (scrub.ts: user text and answers; the
 * retrieved passages only with `scrubContext`) → duplicate removal (dedupe.ts) → train/val by
 * conversation (split.ts) → JSONL files (SFT, OpenAI DPO or TRL preference lines) + a manifest.
 *
 * Files (see split.ts): the train set at `out`, the validation set (when `valFraction` > 0) at `out`
 * with `.val` before its last extension, and `out.manifest.json`. Each is written to a temp file in
 * the same directory (`.<name>.tmp-<pid>-<random>`), fsynced, and renamed into place only when the
 * whole export succeeded — data files first, the manifest last — so an interrupted export (error,
 * Ctrl-C, injected failure) leaves neither a half-written file at `out` nor a temp file behind (a
 * SIGKILL can leave a temp file, never a partial `out`, and the next export of that path deletes it).
 * An export that selects nothing writes nothing (an existing `out` is left as it was).
 *
 * Memory is flat in the log size: rows stream one at a time, lines are written through a 1 MiB buffer,
 * and what grows is the duplicate index (≈ 35-60 bytes per exported example, see dedupe.ts) plus the
 * capped lists in the manifest.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CancelledError, InternalError, MnemeError, ValidationError } from '../core/errors.ts';
import { pseudonymousUserHash } from '../core/store/exports.ts';
import type { Store } from '../core/store/index.ts';
import { Deduper, NEAR_DUP_MAX_HAMMING } from './dedupe.ts';
import type { DedupeVerdict } from './dedupe.ts';
import {
  DEFAULT_PREFERENCE_FORMAT,
  EXAMPLE_SCHEMAS,
  PREFERENCE_FORMATS,
  UserHashSchema,
  correctionPair,
  isBlank,
  parseRenderedPrompt,
  preferenceDedupeTexts,
  ratingPair,
  sftDedupeTexts,
  sftExample,
  targetOf,
  toTrl,
} from './format.ts';
import type {
  ChatMessage,
  ExportFormat,
  FormatResult,
  LoggedResponse,
  MalformedReason,
  PreferenceExample,
  PreferenceFormat,
  PreferenceLine,
  SftExample,
  SftLine,
  SftMessage,
  Skip,
  TrlPreferenceLine,
} from './format.ts';
import { SCRUB_FIELDS, SCRUB_KINDS, ScrubCache, addScrubCounts, emptyScrubCounts, scrubPromptMessages } from './scrub.ts';
import type { ScrubCounts, ScrubField } from './scrub.ts';
import { logSnapshot, pairExclusion, planPreference, selectResponses, sftExclusion } from './select.ts';
import type { Exclusion, ExclusionPolicy, ExportFilters, SelectionStats } from './select.ts';
import { SPLIT_SEED, manifestPathFor, splitOf, valPathFor } from './split.ts';
import type { Split } from './split.ts';

/** Bytes buffered before a write(2). */
export const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Rows processed between yields to the event loop (lets Ctrl-C / an abort signal through). */
export const YIELD_EVERY_ROWS = 256;
/** Most entries listed in each manifest list (malformed rows, models, prompts); counts stay exact. */
export const MANIFEST_MAX_LISTED = 1000;

/** The output path cannot be written (missing directory, a directory, no permission...). */
export class ExportOutputError extends MnemeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('export_output_unwritable', 500, message, options);
  }
}

export interface ExportProgress {
  rowsRead: number;
  examplesWritten: number;
}

export interface RunExportOptions {
  /** Read (log snapshot, selection) and written (the user-hash key on first use, the run record). */
  store: Store;
  format: ExportFormat;
  /** Train file path (the others are derived from it). */
  out: string;
  filters?: ExportFilters;
  /**
   * Also train on extractive answers (`model_backend = 'extractive'`: passages quoted when no
   * language model is configured). Default false: they are placeholders, not answers to learn.
   * A rated-down answer without a correction is excluded too unless `filters.minRating` is -1.
   */
  includeExtractive?: boolean;
  /**
   * Also scrub the retrieved passages inside the rendered prompt (the corpus's own text). Default
   * false: user-authored text (questions, earlier turns, corrections) and answers are scrubbed, the
   * documents are kept as the model saw them.
   */
  scrubContext?: boolean;
  /** Shape of preference lines (default 'openai'); only with format 'preference'. */
  preferenceFormat?: PreferenceFormat;
  /** Share of conversations in the validation file, 0 ≤ f < 1. Default 0 (no validation file). */
  valFraction?: number;
  /** Split seed (default SPLIT_SEED). */
  splitSeed?: string;
  /** Aborting stops the export at the next yield point with CancelledError; nothing is left behind. */
  signal?: AbortSignal;
  /** Called after every row; a throw aborts the export like any failure (tests inject failures here). */
  onProgress?: (p: ExportProgress) => void;
  /** Clock for `created_at` (default: now). */
  now?: () => Date;
  /** Rows per select page (default: the engine's page size). */
  pageRows?: number;
}

export interface ManifestFile {
  split: Split;
  /** File name, relative to the manifest's directory. */
  name: string;
  path: string;
  examples: number;
  bytes: number;
  sha256: string;
}

/** Scrub replacements per kind, and their total. */
export type ScrubTally = ScrubCounts & { total: number };

export interface ExportManifest {
  manifest_version: 1;
  format: ExportFormat;
  /** How preference pairs were written; null for SFT. */
  preference_format: PreferenceFormat | null;
  created_at: string;
  files: ManifestFile[];
  filters: {
    since: string | null;
    until: string | null;
    min_rating: number | null;
    collection: string | null;
    model: string | null;
    prompt: string | null;
    /** `--release`: only answers of this release (issue 15). */
    release: string | null;
    include_errors: boolean;
    include_extractive: boolean;
  };
  split: { val_fraction: number; seed: string; by: 'conversation' };
  log: {
    /** Largest log id when the export started; rows after it were not read. */
    snapshot_seq: number;
    /** Smallest and largest log id among the written examples (null when none). */
    example_seq_min: number | null;
    example_seq_max: number | null;
  };
  counts: {
    /** Responses matching the filters (status aside). */
    rows_matched: number;
    /** Rows turned into (or tried as) examples. */
    rows_read: number;
    excluded_status: { error: number; cancelled: number };
    /**
     * Matched rows (SFT) or pairs (preference) left out, per reason: errored / cancelled (status,
     * as in excluded_status), rated down without a correction (SFT, unless --min-rating -1) and
     * extractive answers (unless --include-extractive). Each row counts under its first reason.
     */
    excluded: { rated_down_uncorrected: number; extractive: number; errored: number; cancelled: number };
    malformed: number;
    /** Rows with nothing to train on (no correction, blank answer). */
    no_target: number;
    /** Preference pairs whose two sides were the same text. */
    same_output: number;
    duplicates_exact: number;
    duplicates_near: number;
    /** Rated-down responses with neither a correction nor a rated-up answer to the same prompt. */
    unpaired: number;
    /** Pairs dropped because their two responses' conversations fall in different splits. */
    pairs_dropped_cross_split: number;
    pairs_from_corrections: number;
    pairs_from_ratings: number;
    /** SFT examples whose assistant turn is the user's correction. */
    corrections_used: number;
    /** Current ratings of the rows read (SFT) or of the rated responses considered (preference). */
    ratings: { up: number; down: number; unrated: number };
    examples: number;
    train: number;
    val: number;
  };
  models: Array<{ backend: string; model_id: string; examples: number }>;
  models_truncated: boolean;
  prompts: Array<{ name: string; sha256: string; examples: number }>;
  prompts_truncated: boolean;
  /** The releases that answered the exported rows (null: rows logged without releases). */
  releases: Array<{ name: string | null; examples: number }>;
  releases_truncated: boolean;
  /**
   * Replacements per kind in the written files (duplicates dropped are not counted), per field
   * (prompt_system, prompt_user, prompt_context, prompt_assistant, answer, correction), and whether
   * the retrieved passages were scrubbed (`--scrub-context`; otherwise prompt_context stays 0).
   */
  scrub: ScrubTally & { context: boolean; by_field: Record<ScrubField, ScrubTally> };
  malformed_rows: Array<{ seq: number; id: string; reason: MalformedReason; detail: string }>;
  malformed_rows_truncated: boolean;
  /**
   * Every distinct pseudonymous user hash in the files (`user` and `preferred_user` of the lines),
   * sorted; never truncated, so an erasure can be propagated from the manifest alone.
   */
  users: string[];
  user_hash: 'hmac-sha256 of the user id, keyed per data dir, first 32 hex digits';
  dedupe: { exact: 'normalized-text 64-bit hash'; near: 'simhash-64 lsh'; near_max_hamming: number; index_bytes: number };
}

export interface ExportResult {
  /** False when nothing was selected: no file was written. */
  written: boolean;
  manifest: ExportManifest;
  /** One human-readable line saying what happened. */
  message: string;
  warnings: string[];
}

/** A JSONL file written to a temp name and renamed into place on commit. */
class AtomicJsonl {
  readonly tempPath: string;
  private fd: number | null;
  private buffer: string[] = [];
  private buffered = 0;
  private readonly hash = crypto.createHash('sha256');
  lines = 0;
  bytes = 0;

  constructor(readonly finalPath: string) {
    this.tempPath = tempPathFor(finalPath);
    try {
      // Owner-only: exports hold user questions and answers.
      this.fd = fs.openSync(this.tempPath, 'wx', 0o600);
    } catch (cause) {
      throw new ExportOutputError(`cannot write ${finalPath}: ${(cause as Error).message}`, { cause });
    }
  }

  writeLine(line: string): void {
    this.buffer.push(line, '\n');
    // Length in UTF-16 units: close enough to bytes for a flush threshold.
    this.buffered += line.length + 1;
    this.lines++;
    if (this.buffered >= WRITE_BUFFER_BYTES) this.flush();
  }

  private flush(): void {
    if (this.buffered === 0 || this.fd === null) return;
    const chunk = Buffer.from(this.buffer.join(''), 'utf8');
    this.buffer = [];
    this.buffered = 0;
    this.hash.update(chunk);
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off);
    this.bytes += chunk.length;
  }

  /** Flushes, fsyncs and closes the temp file; returns its sha256. Rename with `publish`. */
  finish(): string {
    this.flush();
    if (this.fd !== null) {
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = null;
    }
    return this.hash.digest('hex');
  }

  publish(): void {
    fs.renameSync(this.tempPath, this.finalPath);
  }

  /** Closes and deletes the temp file; safe to call twice. */
  discard(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // Already closed by a failed finish(): the unlink below is what matters.
      }
      this.fd = null;
    }
    fs.rmSync(this.tempPath, { force: true });
  }
}

function tempPathFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes temp files a killed export (SIGKILL, power loss) left beside `finalPath`: only names of
 * our exact pattern whose writer process is gone, so a concurrent export's temp file is kept.
 * Returns the paths removed.
 */
export function removeStaleTemps(finalPath: string): string[] {
  const dir = path.dirname(finalPath);
  const prefix = `.${path.basename(finalPath)}.tmp-`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-[0-9a-f]{8}$/.exec(name.slice(prefix.length));
    if (!m || processAlive(Number(m[1]))) continue;
    fs.rmSync(path.join(dir, name), { force: true });
    removed.push(path.join(dir, name));
  }
  return removed;
}

/** @throws ExportOutputError when `out` cannot be a file we write. */
function checkOutput(out: string): void {
  const dir = path.dirname(out);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (cause) {
    throw new ExportOutputError(`cannot write ${out}: directory ${dir} does not exist`, { cause });
  }
  if (!st.isDirectory()) throw new ExportOutputError(`cannot write ${out}: ${dir} is not a directory`);
  const existing = fs.statSync(out, { throwIfNoEntry: false });
  if (existing?.isDirectory()) throw new ExportOutputError(`cannot write ${out}: it is a directory`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (cause) {
    throw new ExportOutputError(`cannot write ${out}: directory ${dir} is not writable`, { cause });
  }
}

/** Counts keyed entries, keeping at most MANIFEST_MAX_LISTED distinct keys. */
class CappedCounter<K> {
  readonly entries = new Map<string, { key: K; n: number }>();
  truncated = false;
  add(id: string, key: K): void {
    const e = this.entries.get(id);
    if (e) e.n++;
    else if (this.entries.size < MANIFEST_MAX_LISTED) this.entries.set(id, { key, n: 1 });
    else this.truncated = true;
  }
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

type Example = SftExample | PreferenceExample;

/** Candidate pairs of one rated-down row: from its correction, and from a rated-up partner. */
interface PairCandidate {
  kind: 'correction' | 'rating';
  result: FormatResult<PreferenceExample>;
  sources: LoggedResponse[];
}

/** The state of one export: open files, counters, the duplicate index and the manifest being built. */
class ExportRun {
  readonly manifest: ExportManifest;
  readonly warnings: string[] = [];
  readonly files: Partial<Record<Split, AtomicJsonl>> = {};
  private readonly c: ExportManifest['counts'];
  private readonly scrubByField = emptyFieldCounts();
  private readonly scrubber = new ScrubCache();
  private readonly deduper = new Deduper();
  private readonly models = new CappedCounter<{ backend: string; model_id: string }>();
  private readonly prompts = new CappedCounter<{ name: string; sha256: string }>();
  private readonly releases = new CappedCounter<{ name: string | null }>();
  private readonly userHashes = new Map<number, string>();
  private readonly usersWritten = new Set<string>();
  private readonly progress: ExportProgress = { rowsRead: 0, examplesWritten: 0 };
  /** Scrub counts of the example being built; added to the manifest's only if it is written. */
  private pending = emptyFieldCounts();
  private key: Uint8Array | null = null;
  private readonly policy: ExclusionPolicy;
  private readonly scrubContext: boolean;
  private readonly preferenceFormat: PreferenceFormat;

  constructor(
    private readonly options: RunExportOptions,
    private readonly filters: ExportFilters,
    private readonly valFraction: number,
    private readonly seed: string,
  ) {
    this.policy = { keepRatedDown: filters.minRating === -1, includeExtractive: options.includeExtractive ?? false };
    this.scrubContext = options.scrubContext ?? false;
    this.preferenceFormat = options.preferenceFormat ?? DEFAULT_PREFERENCE_FORMAT;
    this.manifest = emptyManifest(options, filters, valFraction, seed, (options.now ?? (() => new Date()))().toISOString());
    this.c = this.manifest.counts;
  }

  /** The user hash of a row's user (cached per user: one export never sees two users with one id). */
  private userHash(row: LoggedResponse): string {
    let h = this.userHashes.get(row.userId);
    if (h === undefined) {
      if (!this.key) throw new InternalError('the user-hash key was not loaded');
      h = pseudonymousUserHash(this.key, { id: row.userId, createdAt: row.userCreatedAt });
      if (!UserHashSchema.safeParse(h).success) throw new InternalError(`bad user hash for user ${row.userId}`);
      this.userHashes.set(row.userId, h);
    }
    return h;
  }

  private skip(row: LoggedResponse, s: Skip): void {
    const c = this.c;
    if (s.kind === 'malformed') {
      c.malformed++;
      if (this.manifest.malformed_rows.length < MANIFEST_MAX_LISTED) this.manifest.malformed_rows.push({ seq: row.seq, id: row.id, reason: s.reason, detail: s.detail });
      else this.manifest.malformed_rows_truncated = true;
    } else if (s.kind === 'no_target') c.no_target++;
    else c.same_output++;
  }

  private unique(v: DedupeVerdict): boolean {
    if (v === 'exact') this.c.duplicates_exact++;
    else if (v === 'near') this.c.duplicates_near++;
    return v === 'unique';
  }

  private scrub(text: string, field: ScrubField): string {
    return this.scrubber.scrub(text, this.pending[field]);
  }

  /** The rendered prompt scrubbed (passages only with scrubContext), counted per field. */
  private scrubPrompt<M extends ChatMessage>(messages: readonly M[], query: string): M[] {
    return scrubPromptMessages(messages, query, { scrubContext: this.scrubContext }, (text, field) => this.scrub(text, field));
  }

  private exclude(reason: Exclusion): void {
    this.c.excluded[reason]++;
  }

  /** The line as written: the example in the output shape with its user hashes. */
  private line(example: Example, sources: LoggedResponse[]): SftLine | PreferenceLine | TrlPreferenceLine {
    const first = sources[0];
    if (!first) throw new InternalError('an example without a source row');
    const user = this.userHash(first);
    if (this.options.format === 'sft') return { ...(example as SftExample), user };
    const preferred_user = this.userHash(sources[1] ?? first);
    const pair = example as PreferenceExample;
    return this.preferenceFormat === 'trl' ? { ...toTrl(pair), user, preferred_user } : { ...pair, user, preferred_user };
  }

  /** Validates and writes one line (the example with its user hashes); counts it in the manifest. */
  private write(example: Example, split: Split, sources: LoggedResponse[]): void {
    const shape = this.options.format === 'sft' ? 'sft' : this.preferenceFormat === 'trl' ? 'trl' : 'preference';
    const line = this.line(example, sources);
    const { user: _u, preferred_user: _p, ...body } = line as SftLine & { preferred_user?: string };
    const valid = EXAMPLE_SCHEMAS[shape].safeParse(body);
    if (!valid.success) {
      throw new InternalError(`export produced an invalid ${shape} example from log id ${sources[0]?.seq}: ${valid.error.issues[0]?.message}`, { cause: valid.error });
    }
    const file = this.files[split];
    if (!file) throw new InternalError(`no ${split} file open`);
    file.writeLine(JSON.stringify(line));
    for (const f of SCRUB_FIELDS) addScrubCounts(this.scrubByField[f], this.pending[f]);
    this.c.examples++;
    this.c[split]++;
    this.progress.examplesWritten++;
    const seen = new Set<string>();
    const log = this.manifest.log;
    for (const s of sources) {
      this.usersWritten.add(this.userHash(s));
      log.example_seq_min = Math.min(log.example_seq_min ?? s.seq, s.seq);
      log.example_seq_max = Math.max(log.example_seq_max ?? s.seq, s.seq);
      const m = `${s.modelBackend}\u0000${s.modelId}`;
      if (!seen.has(m)) this.models.add(m, { backend: s.modelBackend, model_id: s.modelId });
      const p = `${s.promptName}\u0000${s.promptSha256}`;
      if (!seen.has(p)) this.prompts.add(p, { name: s.promptName, sha256: s.promptSha256 });
      const r = `release\u0000${s.release ?? ''}`;
      if (!seen.has(r)) this.releases.add(r, { name: s.release ?? null });
      seen.add(m).add(p).add(r);
    }
  }

  private async tick(): Promise<void> {
    this.progress.rowsRead++;
    this.options.onProgress?.(this.progress);
    if (this.progress.rowsRead % YIELD_EVERY_ROWS === 0) await yieldToLoop();
    if (this.options.signal?.aborted) throw new CancelledError('export cancelled');
  }

  /** Reads the snapshot and the key, then streams and writes every example. */
  async run(): Promise<void> {
    const store = this.options.store;
    this.key = await store.exports.userHashKey();
    const { snapshotSeq } = await logSnapshot(store);
    this.manifest.log.snapshot_seq = snapshotSeq;
    if (this.options.format === 'sft') await this.sft(snapshotSeq);
    else await this.preference(snapshotSeq);
    if (this.options.signal?.aborted) throw new CancelledError('export cancelled');
    const m = this.manifest;
    m.models = [...this.models.entries.values()].map((e) => ({ ...e.key, examples: e.n }));
    m.models_truncated = this.models.truncated;
    m.prompts = [...this.prompts.entries.values()].map((e) => ({ ...e.key, examples: e.n }));
    m.prompts_truncated = this.prompts.truncated;
    m.releases = [...this.releases.entries.values()].map((e) => ({ ...e.key, examples: e.n }));
    m.releases_truncated = this.releases.truncated;
    m.scrub = scrubSummary(this.scrubByField, this.scrubContext);
    m.dedupe.index_bytes = this.deduper.bytes;
    m.users = [...this.usersWritten].sort();
  }

  private async sft(snapshotSeq: number): Promise<void> {
    const c = this.c;
    const stats: SelectionStats = { matched: 0, excludedByStatus: { error: 0, cancelled: 0 } };
    for await (const row of selectResponses(this.options.store, { filters: this.filters, snapshotSeq, pageRows: this.options.pageRows }, stats)) {
      c.rows_read++;
      countRating(c.ratings, row.rating);
      const excluded = sftExclusion(row, this.policy);
      const ex = sftExample(row);
      if (excluded) this.exclude(excluded);
      else if (!ex.ok) this.skip(row, ex.skip);
      else {
        this.pending = emptyFieldCounts();
        const prompt = ex.value.messages.slice(0, -1);
        const target = ex.value.messages[ex.value.messages.length - 1] as SftMessage;
        const field: ScrubField = targetOf(row)?.source ?? 'answer';
        const example: SftExample = { messages: [...this.scrubPrompt(prompt, row.query), { ...target, content: this.scrub(target.content, field) }] };
        if (this.unique(this.deduper.check(sftDedupeTexts(example, row.query)))) {
          if (targetOf(row)?.source === 'correction') c.corrections_used++;
          this.write(example, splitOf(row.conversationId, this.valFraction, this.seed), [row]);
        }
      }
      await this.tick();
    }
    c.rows_matched = stats.matched;
    c.excluded_status = stats.excludedByStatus;
    c.excluded.errored = stats.excludedByStatus.error;
    c.excluded.cancelled = stats.excludedByStatus.cancelled;
  }

  private async preference(snapshotSeq: number): Promise<void> {
    const c = this.c;
    const selection = await planPreference(this.options.store, { filters: this.filters, snapshotSeq });
    try {
      const plan = selection.plan;
      c.rows_matched = plan.rated + plan.excludedByStatus.error + plan.excludedByStatus.cancelled;
      c.excluded_status = plan.excludedByStatus;
      c.excluded.errored = plan.excludedByStatus.error;
      c.excluded.cancelled = plan.excludedByStatus.cancelled;
      c.ratings.up += plan.ratings.up;
      c.ratings.down += plan.ratings.down;
      for await (const { down, up } of selection.rows({ pageRows: this.options.pageRows })) {
        c.rows_read++;
        const prompt = parseRenderedPrompt(down.renderedPromptJson);
        if (!prompt.ok) this.skip(down, prompt.skip);
        else if (down.rating === -1) this.pairs(down, up, prompt.value);
        await this.tick();
      }
    } finally {
      await selection.close();
    }
  }

  /** Writes the correction pair and the rating pair of one rated-down row (when they qualify). */
  private pairs(down: LoggedResponse, up: LoggedResponse | null, prompt: ChatMessage[]): void {
    const candidates: PairCandidate[] = [];
    if (!isBlank(down.correction)) candidates.push({ kind: 'correction', result: correctionPair(down, prompt), sources: [down] });
    if (up) candidates.push({ kind: 'rating', result: ratingPair(down, prompt, up), sources: [down, up] });
    if (candidates.length === 0) this.c.unpaired++;
    for (const cand of candidates) {
      const excluded = pairExclusion(down, cand.kind === 'rating' ? up : null, this.policy);
      if (excluded) {
        this.exclude(excluded);
        continue;
      }
      if (!cand.result.ok) {
        this.skip(down, cand.result.skip);
        continue;
      }
      const split = splitOf(down.conversationId, this.valFraction, this.seed);
      if (up && cand.kind === 'rating' && splitOf(up.conversationId, this.valFraction, this.seed) !== split) {
        this.c.pairs_dropped_cross_split++;
        continue;
      }
      const ex = cand.result.value;
      this.pending = emptyFieldCounts();
      const preferredField: ScrubField = cand.kind === 'correction' ? 'correction' : (up && targetOf(up)?.source) || 'answer';
      const example: PreferenceExample = {
        input: { messages: this.scrubPrompt(ex.input.messages, down.query) },
        preferred_output: [{ role: 'assistant', content: this.scrub(ex.preferred_output[0].content, preferredField) }],
        non_preferred_output: [{ role: 'assistant', content: this.scrub(ex.non_preferred_output[0].content, 'answer') }],
      };
      if (!this.unique(this.deduper.check(preferenceDedupeTexts(example, down.query)))) continue;
      if (cand.kind === 'correction') this.c.pairs_from_corrections++;
      else this.c.pairs_from_ratings++;
      this.write(example, split, cand.sources);
    }
  }
}

/**
 * Finishes the data files (an empty split is dropped with a warning), writes the manifest, records
 * the run in the store, then publishes data files and manifest (renames). A failure before the
 * renames leaves nothing behind; the run record of a failed publish is forgotten again.
 */
async function publish(run: ExportRun, store: Store, paths: { out: string; valPath: string; manifestPath: string }, valFraction: number): Promise<void> {
  const { manifest, files, warnings } = run;
  const finished: AtomicJsonl[] = [];
  for (const split of ['train', 'val'] as const) {
    const f = files[split];
    if (!f) continue;
    if (f.lines === 0) {
      f.discard();
      delete files[split];
      warnings.push(`the ${split} split is empty (${split === 'val' ? `--val-fraction ${valFraction} selected none of the conversations` : 'every conversation went to validation'}); no ${split} file written`);
      continue;
    }
    const sha256 = f.finish();
    finished.push(f);
    manifest.files.push({ split, name: path.basename(f.finalPath), path: f.finalPath, examples: f.lines, bytes: f.bytes, sha256 });
  }
  if (!files.val && fs.existsSync(paths.valPath)) warnings.push(`${paths.valPath} is left from an earlier export and is not part of this one`);
  if (!files.train && fs.existsSync(paths.out)) warnings.push(`${paths.out} is left from an earlier export and is not part of this one`);

  const manifestFile = new AtomicJsonl(paths.manifestPath);
  try {
    manifestFile.writeLine(JSON.stringify(manifest, null, 2));
    manifestFile.finish();
    // Recorded before anything is published: a manifest naming a user is always findable by `users delete`.
    const runId = await store.exports.recordRun({
      manifestPath: paths.manifestPath,
      format: manifest.format,
      examples: manifest.counts.examples,
      createdAt: manifest.created_at,
      userHashes: manifest.users,
    });
    try {
      for (const f of finished) f.publish();
      manifestFile.publish();
    } catch (err) {
      await store.exports.forgetRun(runId).catch(() => undefined);
      throw err;
    }
  } catch (err) {
    manifestFile.discard();
    throw err;
  }
  fsyncDir(path.dirname(paths.out));
}

/**
 * Runs one export.
 * @throws ValidationError for bad options (format, fraction, a min rating with preference pairs).
 * @throws ExportOutputError when `out` cannot be written.
 * @throws CancelledError when `signal` aborts; InternalError if an example fails its schema (a bug).
 */
export async function runExport(options: RunExportOptions): Promise<ExportResult> {
  const { format } = options;
  const filters = options.filters ?? {};
  const valFraction = options.valFraction ?? 0;
  const seed = options.splitSeed ?? SPLIT_SEED;
  if (format !== 'sft' && format !== 'preference') throw new ValidationError(`unknown export format "${String(format)}" (expected sft or preference)`);
  if (!(valFraction >= 0 && valFraction < 1)) throw new ValidationError(`val fraction must be in [0, 1), got ${valFraction}`);
  if (format === 'preference' && filters.minRating !== undefined) {
    throw new ValidationError('--min-rating applies to --format sft only: a preference pair always sets a better-rated answer against a worse one');
  }
  if (format === 'sft' && options.preferenceFormat !== undefined) throw new ValidationError('--preference-format applies to --format preference only');
  if (options.preferenceFormat !== undefined && !(PREFERENCE_FORMATS as readonly string[]).includes(options.preferenceFormat)) {
    throw new ValidationError(`unknown preference format "${String(options.preferenceFormat)}" (expected ${PREFERENCE_FORMATS.join(' or ')})`);
  }
  const out = path.resolve(options.out);
  const paths = { out, valPath: valPathFor(out), manifestPath: manifestPathFor(out) };
  checkOutput(out);
  for (const p of [paths.out, paths.valPath, paths.manifestPath]) removeStaleTemps(p);

  const run = new ExportRun(options, filters, valFraction, seed);
  run.files.train = new AtomicJsonl(out);
  try {
    if (valFraction > 0) run.files.val = new AtomicJsonl(paths.valPath);
    await run.run();
    if (run.manifest.counts.examples === 0) {
      for (const f of Object.values(run.files)) f.discard();
      return { written: false, manifest: run.manifest, message: emptyMessage(run.manifest), warnings: run.warnings };
    }
    await publish(run, options.store, paths, valFraction);
    return { written: true, manifest: run.manifest, message: writtenMessage(run.manifest, paths.manifestPath), warnings: run.warnings };
  } catch (err) {
    for (const f of Object.values(run.files)) f.discard();
    throw err;
  }
}

function fsyncDir(dir: string): void {
  // Makes the renames durable; not every platform lets a directory be opened, so failure is ignored.
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Durability of the rename is best-effort where directories cannot be fsynced.
  }
}

function countRating(r: ExportManifest['counts']['ratings'], rating: 1 | -1 | null): void {
  if (rating === 1) r.up++;
  else if (rating === -1) r.down++;
  else r.unrated++;
}

function emptyFieldCounts(): Record<ScrubField, ScrubCounts> {
  return Object.fromEntries(SCRUB_FIELDS.map((f) => [f, emptyScrubCounts()])) as Record<ScrubField, ScrubCounts>;
}

function tally(c: Readonly<ScrubCounts>): ScrubTally {
  return { ...c, total: SCRUB_KINDS.reduce((n, k) => n + c[k], 0) };
}

function scrubSummary(byField: Readonly<Record<ScrubField, ScrubCounts>>, context: boolean): ExportManifest['scrub'] {
  const all = emptyScrubCounts();
  for (const f of SCRUB_FIELDS) addScrubCounts(all, byField[f]);
  const by_field = Object.fromEntries(SCRUB_FIELDS.map((f) => [f, tally(byField[f])])) as Record<ScrubField, ScrubTally>;
  return { ...tally(all), context, by_field };
}

function emptyManifest(options: RunExportOptions, f: ExportFilters, valFraction: number, seed: string, createdAt: string): ExportManifest {
  const format = options.format;
  return {
    manifest_version: 1,
    format,
    preference_format: format === 'preference' ? (options.preferenceFormat ?? DEFAULT_PREFERENCE_FORMAT) : null,
    created_at: createdAt,
    files: [],
    filters: {
      since: f.since ?? null,
      until: f.until ?? null,
      min_rating: f.minRating ?? null,
      collection: f.collection ?? null,
      model: f.model ?? null,
      prompt: f.prompt ?? null,
      release: f.release ?? null,
      include_errors: f.includeErrors ?? false,
      include_extractive: options.includeExtractive ?? false,
    },
    split: { val_fraction: valFraction, seed, by: 'conversation' },
    log: { snapshot_seq: 0, example_seq_min: null, example_seq_max: null },
    counts: {
      rows_matched: 0,
      rows_read: 0,
      excluded_status: { error: 0, cancelled: 0 },
      excluded: { rated_down_uncorrected: 0, extractive: 0, errored: 0, cancelled: 0 },
      malformed: 0,
      no_target: 0,
      same_output: 0,
      duplicates_exact: 0,
      duplicates_near: 0,
      unpaired: 0,
      pairs_dropped_cross_split: 0,
      pairs_from_corrections: 0,
      pairs_from_ratings: 0,
      corrections_used: 0,
      ratings: { up: 0, down: 0, unrated: 0 },
      examples: 0,
      train: 0,
      val: 0,
    },
    models: [],
    models_truncated: false,
    prompts: [],
    prompts_truncated: false,
    releases: [],
    releases_truncated: false,
    scrub: scrubSummary(emptyFieldCounts(), options.scrubContext ?? false),
    malformed_rows: [],
    malformed_rows_truncated: false,
    users: [],
    user_hash: 'hmac-sha256 of the user id, keyed per data dir, first 32 hex digits',
    dedupe: { exact: 'normalized-text 64-bit hash', near: 'simhash-64 lsh', near_max_hamming: NEAR_DUP_MAX_HAMMING, index_bytes: 0 },
  };
}

function emptyMessage(m: ExportManifest): string {
  const c = m.counts;
  const why: string[] = [];
  if (c.excluded_status.error + c.excluded_status.cancelled > 0) {
    why.push(`${c.excluded_status.error + c.excluded_status.cancelled} errored/cancelled excluded (--include-errors to keep them)`);
  }
  if (c.excluded.rated_down_uncorrected > 0) why.push(`${c.excluded.rated_down_uncorrected} rated down without a correction (--min-rating=-1 keeps them)`);
  if (c.excluded.extractive > 0) why.push(`${c.excluded.extractive} extractive (--include-extractive keeps them)`);
  if (c.malformed > 0) why.push(`${c.malformed} malformed`);
  if (c.no_target > 0) why.push(`${c.no_target} without an answer or correction`);
  if (c.same_output > 0) why.push(`${c.same_output} pairs with identical sides`);
  if (c.duplicates_exact + c.duplicates_near > 0) why.push(`${c.duplicates_exact + c.duplicates_near} duplicates`);
  if (c.unpaired > 0) why.push(`${c.unpaired} rated-down answers with no correction and no rated-up answer to the same prompt`);
  if (c.pairs_dropped_cross_split > 0) why.push(`${c.pairs_dropped_cross_split} pairs across splits`);
  const what = m.format === 'sft' ? `${c.rows_matched} logged responses matched the filters` : `${c.rows_matched} rated responses matched the filters`;
  return `nothing to export: ${what}${why.length ? ` (${why.join(', ')})` : ''}; no file written`;
}

function writtenMessage(m: ExportManifest, manifestPath: string): string {
  const parts = m.files.map((f) => `${f.path} (${f.split}, ${f.examples})`);
  return `wrote ${m.counts.examples} ${m.format} examples to ${parts.join(' and ')}; manifest ${manifestPath}`;
}
