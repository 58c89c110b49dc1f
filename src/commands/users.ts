/**
 * `mneme users create --name NAME [--admin] [--json]` prints the new API key once (it is stored only
 * as a hash); `users delete --name NAME [--json]` erases the user with their conversations, logs,
 * feedback and features (every row of theirs, in one transaction, then a WAL checkpoint: no copy left
 * in the database file or its log); `users list [--json]`.
 */
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { openStore } from '../core/deps.ts';
import { ValidationError } from '../core/errors.ts';
import { RedisOnlineFeatureStore, closeRedis, openRedis } from '../core/store/redis/index.ts';
import { createUser, deleteUserByName, listUsers, userNameSchema } from '../chat/users.ts';
import { exportsContainingUser } from '../export/manifests.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command } from './types.ts';

const SUBCOMMANDS = ['create', 'delete', 'list'] as const;

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  name: userNameSchema.optional(),
  admin: z.boolean().default(false),
});

/** The option table of `mneme users` (parsing and --help). */
export const USERS_SPEC: CommandSpec = {
  name: 'users',
  summary: 'create a user (prints the API key once), delete one with all their data, or list them',
  positionals: 'create|delete|list',
  options: [
    { name: 'name', type: 'string', value: 'NAME', description: 'user name (required by create and delete)' },
    { name: 'admin', type: 'boolean', default: false, description: 'create: the user may call the admin routes (/metrics, /v1/admin/...)' },
  ],
  examples: ['users create --name alice --admin', 'users delete --name bob --json', 'users list'],
};

export const usersCommand: Command = {
  name: 'users',
  usage: synopsis(USERS_SPEC),
  specs: [USERS_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(USERS_SPEC, args, schema);
    const [sub, ...extra] = opts.positionals;
    if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub) || extra.length > 0) {
      throw new ValidationError(`users: expected one of ${SUBCOMMANDS.join(', ')}`);
    }
    if (sub !== 'list' && !opts.name) throw new ValidationError(`users ${sub}: --name is required`);
    if (sub !== 'create' && opts.admin) throw new ValidationError(`users ${sub}: --admin only applies to create`);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    const store = await openStore(config);
    try {
      if (sub === 'create') {
        const { user, apiKey } = await createUser(store, { name: opts.name!, admin: opts.admin });
        if (opts.json) printJson(io.stdout, { name: user.name, api_key: apiKey, admin: user.isAdmin });
        else {
          io.stdout.write(`created ${user.isAdmin ? 'admin ' : ''}user ${user.name}\n`);
          io.stdout.write(`API key (shown once, store it now): ${apiKey}\n`);
        }
        return 0;
      }
      if (sub === 'delete') {
        // With Redis, the user's online features there go too (before the SQL rows; see eraseUser).
        const redis = config.redis ? openRedis(config.redis.url) : null;
        const online = redis && config.redis ? new RedisOnlineFeatureStore({ client: redis, prefix: config.redis.prefix }) : undefined;
        const { user, erased } = await deleteUserByName(store, opts.name!, online).finally(() => (redis ? closeRedis(redis) : undefined));
        // Exports made before the erasure still hold their lines: name them so it can be propagated.
        const exported = await exportsContainingUser(store, user);
        if (opts.json) printJson(io.stdout, { name: user.name, deleted: true, erased, user_hash: exported.userHash, export_manifests: exported.manifests });
        else {
          const parts = Object.entries(erased)
            .filter(([, n]) => n > 0)
            .map(([t, n]) => `${n} ${t}`);
          io.stdout.write(`deleted user ${user.name}${parts.length ? ` (erased ${parts.join(', ')})` : ''}\n`);
          if (exported.manifests.length) io.stdout.write(`their data is in these exports (lines with "user" or "preferred_user" ${exported.userHash}):\n${exported.manifests.map((m) => `  ${m}\n`).join('')}`);
        }
        return 0;
      }
      const users = await listUsers(store);
      if (opts.json) {
        printJson(
          io.stdout,
          users.map((u) => ({ name: u.name, admin: u.isAdmin, key_prefix: u.keyPrefix, created_at: u.createdAt })),
        );
      } else if (users.length === 0) io.stdout.write('no users (create one with `mneme users create --name NAME`)\n');
      else for (const u of users) io.stdout.write(`${u.name}${u.isAdmin ? ' (admin)' : ''}  key ${u.keyPrefix}…  created ${u.createdAt}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
};
