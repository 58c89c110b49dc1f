/**
 * `mneme releases create|list|show|diff|canary|promote|rollback|stop|report` (issue 15): versioned
 * answer configurations, A/B experiments, the green button (promote, behind the regression gate
 * unless --force) and the red button (rollback). Changes are audit rows naming `cli:<OS user>`; a
 * running server serves them within RELEASE_REFRESH_INTERVAL_MS, without a restart.
 */
import os from 'node:os';
import { z } from 'zod';
import { HybridRetriever } from '../chat/retrieve.ts';
import type { GateReport } from '../chat/regression.ts';
import { gateDecision, loadRegressionSet, scoreRelease } from '../chat/regression.ts';
import { diffParts, releaseNameSchema } from '../chat/release-parts.ts';
import type { PromotionGate } from '../chat/releases.ts';
import { canaryRelease, createRelease, eventJson, promoteRelease, releaseJson, releaseReport, rollbackRelease, stopCanary } from '../chat/releases.ts';
import type { Config } from '../core/config.ts';
import { loadConfig } from '../core/config.ts';
import { openVectorStack, withStore } from '../core/deps.ts';
import { NotFoundError, ValidationError } from '../core/errors.ts';
import type { Store } from '../core/store/index.ts';
import type { ReleaseRecord } from '../core/store/releases.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

const SUBCOMMANDS = ['create', 'list', 'show', 'diff', 'canary', 'promote', 'rollback', 'stop', 'report'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  name: releaseNameSchema.optional(),
  from: z.string().min(1).optional(),
  prompt: z.string().min(1).optional(),
  llm: z.string().min(1).optional(),
  set: z.array(z.string()).default([]),
  share: z.coerce.number().min(0, 'a percentage from 0 to 100').max(100, 'a percentage from 0 to 100').optional(),
  force: z.boolean().default(false),
  reason: z.string().max(500).optional(),
});

/** The option table of `mneme releases` (parsing and --help). */
export const RELEASES_SPEC: CommandSpec = {
  name: 'releases',
  summary: 'versioned answer configurations: create, list, show, diff, canary (A/B share), promote (green button), rollback (red button), stop, report (per-arm metrics)',
  positionals: 'create|list|show NAME|diff A B|canary NAME|promote [NAME]|rollback|stop|report',
  options: [
    { name: 'name', type: 'string', value: 'NAME', description: 'create: the new release name (letters, digits, "_", "-", ".")' },
    { name: 'from', type: 'string', value: 'live|current|NAME', description: 'create: start from the live release (default; the configuration when none is live), the current configuration, or a release' },
    { name: 'prompt', type: 'string', value: 'FILE', description: 'create: answer prompt template file (its text is stored in the release)' },
    { name: 'llm', type: 'string', value: 'SPEC', description: 'create: chat model, MNEME_LLM syntax (extractive, gguf:PATH, transformers:ID_OR_DIR, openai:BASE_URL)' },
    { name: 'set', type: 'string', multiple: true, value: 'KEY=VALUE', description: 'create: llm.model|max_tokens|temperature|top_p|seed|context_tokens, retrieval.mode|top_k|rrf_k|bm25_weight|dense_weight, personalization.weight' },
    { name: 'share', type: 'string', value: 'PCT', description: 'canary: percent of users (sticky per user) answered by the candidate; required' },
    { name: 'force', type: 'boolean', default: false, description: 'promote: even when the regression gate refuses (recorded in the audit row)' },
    { name: 'reason', type: 'string', value: 'TEXT', description: 'why (kept in the audit row)' },
  ],
  examples: [
    'releases create --name v2 --set retrieval.top_k=8 --prompt prompts/answer.md',
    'releases canary v2 --share 10',
    'releases report --json',
    'releases promote --reason "better thumbs-up rate"',
    'releases rollback --reason "answers got worse"',
    'releases diff initial v2',
  ],
};

/** Audit actor of CLI changes. */
function cliActor(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/**
 * Runs `fn` with a retriever over the data dir's corpus (the configured embedding model loaded when
 * there is one), closed afterwards. Used to score releases on the regression set.
 */
export async function withRegressionRetriever<T>(store: Store, config: Config, fn: (r: HybridRetriever) => Promise<T>): Promise<T> {
  const stack = await openVectorStack(store, config);
  try {
    return await fn(new HybridRetriever({ store, embedder: stack.embedder, index: stack.index, syncIntervalMs: 0 }));
  } finally {
    await stack.embedder?.close();
  }
}

/** The CLI's gate: scores both releases on the log's regression set (models load only when the set is not empty). */
function cliGate(store: Store, config: Config): PromotionGate {
  return async (live, target): Promise<GateReport> => {
    const cases = await loadRegressionSet(store);
    const empty = { 'hit@5': 0, 'mrr@10': 0, queries: 0 };
    if (cases.length === 0) return gateDecision({ release: live.name, ...empty }, { release: target.name, ...empty }, config.releaseGateMargin);
    return withRegressionRetriever(store, config, async (retriever) => {
      const a = await scoreRelease(retriever, live.parts, cases);
      const b = await scoreRelease(retriever, target.parts, cases);
      return gateDecision({ release: live.name, ...a }, { release: target.name, ...b }, config.releaseGateMargin);
    });
  };
}

function describe(r: ReleaseRecord): string {
  const p = r.parts;
  return [
    `${r.name}  v${r.version}  ${r.state}${r.state === 'candidate' ? ` (${r.share}% of users)` : ''}  created ${r.createdAt} by ${r.createdBy}`,
    `  prompt     ${p.prompt.name} v${p.prompt.version} sha256 ${p.prompt.sha256.slice(0, 12)}…`,
    `  llm        ${p.llm.spec}${p.llm.model ? ` (${p.llm.model})` : ''}  max_tokens ${p.llm.max_tokens} temperature ${p.llm.temperature} top_p ${p.llm.top_p} seed ${p.llm.seed}`,
    `  embedding  ${p.embedding.model ?? 'none (BM25 only)'}${p.embedding.generation ? ` generation ${p.embedding.generation}` : ''}`,
    `  retrieval  ${p.retrieval.mode} top_k ${p.retrieval.top_k} rrf_k ${p.retrieval.rrf_k} weights bm25 ${p.retrieval.bm25_weight} dense ${p.retrieval.dense_weight}`,
    `  personalization weight ${p.personalization.weight}`,
    '',
  ].join('\n');
}

async function mustGet(store: Store, name: string | undefined, what: string): Promise<ReleaseRecord> {
  if (!name) throw new ValidationError(`releases: ${what}: give a release name`);
  const r = await store.releases.get(name);
  if (!r) throw new NotFoundError(`no release named ${JSON.stringify(name)}`);
  return r;
}

type Opts = z.infer<typeof schema> & { positionals: string[] };

async function runSub(sub: Sub, args: string[], opts: Opts, store: Store, config: Config, io: CommandIo): Promise<number> {
  const out = (json: unknown, text: string) => (opts.json ? printJson(io.stdout, json) : io.stdout.write(text));
  const change = { actor: cliActor(), reason: opts.reason ?? null };
  switch (sub) {
    case 'create': {
      if (!opts.name) throw new ValidationError('releases create: --name is required');
      const r = await createRelease(store, config, { name: opts.name, from: opts.from, promptFile: opts.prompt, llm: opts.llm, sets: opts.set, actor: change.actor });
      out(releaseJson(r), `created release ${r.name} (v${r.version}, draft)\n${describe(r)}`);
      return 0;
    }
    case 'list': {
      const all = await store.releases.list();
      out(all.map(releaseJson), all.length === 0 ? 'no releases yet (the server creates "initial" on its first start)\n' : all.map(describe).join(''));
      return 0;
    }
    case 'show': {
      const r = await mustGet(store, args[0], 'show');
      out(releaseJson(r), describe(r));
      return 0;
    }
    case 'diff': {
      const a = await mustGet(store, args[0], 'diff A B');
      const b = await mustGet(store, args[1], 'diff A B');
      const d = diffParts(a.parts, b.parts);
      out({ a: a.name, b: b.name, differences: d }, d.length === 0 ? `${a.name} and ${b.name} have the same parts\n` : d.map((x) => `${x.key}: ${JSON.stringify(x.a)} → ${JSON.stringify(x.b)}\n`).join(''));
      return 0;
    }
    case 'canary': {
      if (opts.share === undefined) throw new ValidationError('releases canary: --share PCT is required');
      const e = await canaryRelease(store, (await mustGet(store, args[0], 'canary NAME')).name, opts.share, change);
      out(eventJson(e), `${e.to} is the candidate for ${opts.share}% of users (sticky per user)\n`);
      return 0;
    }
    case 'promote': {
      const r = await promoteRelease(store, { ...change, name: args[0], force: opts.force, gate: cliGate(store, config) });
      out({ ...eventJson(r.event), gate: r.gate }, `${r.event.to} is live (was ${r.event.from ?? 'none'})${r.event.forced ? ' — FORCED past the gate' : ''}\n${r.gate ? `gate: ${r.gate.reason}\n` : ''}`);
      return 0;
    }
    case 'rollback': {
      const e = await rollbackRelease(store, change);
      out(eventJson(e), `rolled back: ${e.to} is live again (${e.from} retired)\n`);
      return 0;
    }
    case 'stop': {
      const e = await stopCanary(store, change);
      out(eventJson(e), `experiment stopped: ${e.from} is a draft again; every user gets ${e.to}\n`);
      return 0;
    }
    case 'report': {
      const rep = await releaseReport(store);
      const lines = rep.arms.map(
        (a) =>
          `${a.arm.padEnd(9)} ${a.release}: ${a.answers} answers, 👍 ${a.thumbs_up} 👎 ${a.thumbs_down}, up rate ${a.up_rate ?? 'n/a'} [${a.up_rate_ci?.join(', ') ?? 'n/a'}], ` +
          `errors ${a.errors}, p50 ${a.p50_ms ?? 'n/a'} ms, p99 ${a.p99_ms ?? 'n/a'} ms\n`,
      );
      out(rep, `since ${rep.from}\n${lines.join('')}${rep.test.method}: ${rep.test.message}\n`);
      return 0;
    }
  }
}

export const releasesCommand: Command = {
  name: 'releases',
  usage: synopsis(RELEASES_SPEC),
  specs: [RELEASES_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(RELEASES_SPEC, args, schema);
    const [sub, ...rest] = opts.positionals;
    if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) throw new ValidationError(`releases: expected one of ${SUBCOMMANDS.join(', ')}`);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    return withStore(config, (store) => runSub(sub as Sub, rest, opts, store, config, io));
  },
};

/**
 * `mneme eval --regression`: scores `names` (default: the live release and the candidate) on the
 * regression set of the prediction log.
 * @throws NotFoundError for an unknown release.
 */
export async function runRegressionEval(config: Config, names: readonly string[], json: boolean, io: CommandIo): Promise<number> {
  return withStore(config, async (store) => {
    const all = await store.releases.list();
    const picked = names.length > 0 ? names.map((n) => all.find((r) => r.name === n) ?? null) : all.filter((r) => r.state === 'live' || r.state === 'candidate');
    const missing = names.filter((_, i) => picked[i] === null);
    if (missing.length > 0) throw new NotFoundError(`no release named ${missing.map((m) => JSON.stringify(m)).join(', ')}`);
    const releases = picked as ReleaseRecord[];
    const cases = await loadRegressionSet(store);
    const scored =
      cases.length === 0
        ? releases.map((r) => ({ release: r.name, 'hit@5': 0, 'mrr@10': 0, queries: 0 }))
        : await withRegressionRetriever(store, config, async (retriever) => {
            const out = [];
            for (const r of releases) out.push({ release: r.name, ...(await scoreRelease(retriever, r.parts, cases)) });
            return out;
          });
    const sources = { thumbs_up: cases.filter((c) => c.source === 'thumbs_up').length, correction: cases.filter((c) => c.source === 'correction').length };
    if (json) printJson(io.stdout, { queries: cases.length, sources, releases: scored });
    else {
      io.stdout.write(`regression set: ${cases.length} logged questions (${sources.thumbs_up} thumbs-up, ${sources.correction} corrected)\n`);
      for (const s of scored) io.stdout.write(`${s.release.padEnd(20)} hit@5 ${s['hit@5'].toFixed(4)}  MRR@10 ${s['mrr@10'].toFixed(4)}\n`);
    }
    return 0;
  });
}
