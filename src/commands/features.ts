/**
 * `mneme features materialize [--rebuild] [--json]`: folds new log rows into the user feature store.
 * `mneme features show --user NAME`: prints `{"user": NAME, "features": {name: value}}` (online values).
 * `mneme features list [--json]`: the feature definitions (name, type, source, freshness, description).
 */
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { openStore } from '../core/deps.ts';
import { NotFoundError, ValidationError } from '../core/errors.ts';
import { FEATURE_DEFINITIONS } from '../features/definitions.ts';
import { materializeFeatures } from '../features/materialize.ts';
import { OnlineFeatureSync } from '../features/online.ts';
import { RedisOnlineFeatureStore, closeRedis, openRedis } from '../core/store/redis/index.ts';
import { FeatureStore } from '../features/store.ts';
import { parseCommandArgs, printJson } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

/** The option tables of the `mneme features` subcommands (parsing and --help). */
const MATERIALIZE_SPEC: CommandSpec = {
  name: 'features materialize',
  summary: 'fold new prediction-log and feedback rows into the user feature store (incremental)',
  options: [{ name: 'rebuild', type: 'boolean', default: false, description: 'recompute every feature from the whole log instead of from the last materialized row' }],
  examples: ['features materialize', 'features materialize --rebuild --json'],
};
const SHOW_SPEC: CommandSpec = {
  name: 'features show',
  summary: 'print {"user": NAME, "features": {name: value}} (the online values)',
  options: [{ name: 'user', type: 'string', value: 'NAME', description: 'user name; required' }],
  examples: ['features show --user alice'],
};
const LIST_SPEC: CommandSpec = {
  name: 'features list',
  summary: 'the feature definitions: name, type, source, freshness, description',
  options: [],
  examples: ['features list', 'features list --json'],
};
const USAGE = 'features materialize|show|list [options]';

const materializeSchema = z.object({ 'data-dir': z.string().optional(), json: z.boolean(), rebuild: z.boolean().default(false) });
const showSchema = z.object({ 'data-dir': z.string().optional(), json: z.boolean(), user: z.string().min(1, 'required') });
const listSchema = z.object({ 'data-dir': z.string().optional(), json: z.boolean() });

async function materialize(args: string[], io: CommandIo): Promise<number> {
  const opts = parseCommandArgs(MATERIALIZE_SPEC, args, materializeSchema);
  const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
  const store = await openStore(config);
  // With Redis, each changed user's online vector is copied there after its SQL commit.
  const redis = config.redis ? openRedis(config.redis.url) : null;
  const online = redis && config.redis ? new OnlineFeatureSync(new RedisOnlineFeatureStore({ client: redis, prefix: config.redis.prefix }), store) : undefined;
  try {
    const s = await materializeFeatures(store, { rebuild: opts.rebuild, online });
    if (opts.json) printJson(io.stdout, s);
    else {
      io.stdout.write(
        `${s.rebuilt ? 'rebuilt from the whole log: ' : ''}${s.responses} responses and ${s.feedback} feedback rows for ${s.users} users → ${s.historyRows} feature values changed (${s.seconds.toFixed(2)} s)\n`,
      );
    }
    return 0;
  } finally {
    if (redis) await closeRedis(redis);
    await store.close();
  }
}

async function show(args: string[], io: CommandIo): Promise<number> {
  // --user is validated by the schema; an absent flag reaches zod as undefined.
  const opts = parseCommandArgs(SHOW_SPEC, args, showSchema);
  const store = await openStore(loadConfig(io.env, { dataDir: opts['data-dir'] }));
  try {
    const user = await store.users.findByName(opts.user);
    if (!user) throw new NotFoundError(`no user named ${JSON.stringify(opts.user)}`);
    printJson(io.stdout, { user: user.name, features: await new FeatureStore({ store }).getOnlineFeatures(user.id) });
    return 0;
  } finally {
    await store.close();
  }
}

async function list(args: string[], io: CommandIo): Promise<number> {
  const opts = parseCommandArgs(LIST_SPEC, args, listSchema);
  const rows = FEATURE_DEFINITIONS.map(({ name, type, nullable, source, freshness, description }) => ({ name, type, nullable, source, freshness, description }));
  if (opts.json) printJson(io.stdout, rows);
  else for (const r of rows) io.stdout.write(`${r.name.padEnd(32)} ${`${r.type}${r.nullable ? '?' : ''}`.padEnd(14)} ${r.source.padEnd(10)} ${r.description}\n`);
  return 0;
}

export const featuresCommand: Command = {
  name: 'features',
  usage: USAGE,
  specs: [MATERIALIZE_SPEC, SHOW_SPEC, LIST_SPEC],
  async run(args, io) {
    const [sub, ...rest] = args;
    switch (sub) {
      case 'materialize':
        return materialize(rest, io);
      case 'show':
        return show(rest, io);
      case 'list':
        return list(rest, io);
      default:
        throw new ValidationError(`features: expected a subcommand (materialize, show or list), got ${sub === undefined ? 'nothing' : JSON.stringify(sub)}`);
    }
  },
};
