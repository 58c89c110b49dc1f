/**
 * `mneme users create --name NAME [--admin] [--key-name K] [--json]` prints the new API key once (it
 * is stored only as a hash); `users delete --name NAME [--json]` erases the user with their
 * conversations, logs, feedback, features and keys (every row of theirs, in one transaction, then a
 * WAL checkpoint: no copy left in the database file or its log); `users list [--json]`.
 *
 * Named keys (a user may hold several, e.g. one per client):
 * - `users keys list --name NAME [--json]`: every key of the user (revoked ones too), never the key.
 * - `users keys create --name NAME --key-name K [--json]`: a new key, printed once.
 * - `users keys rotate --name NAME --key-id ID [--json]`: a new key with the old one's name, printed
 *   once; the old one is revoked.
 * - `users keys revoke --name NAME --key-id ID [--json]`.
 */
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { withStore } from '../core/deps.ts';
import { ValidationError } from '../core/errors.ts';
import { RedisOnlineFeatureStore, closeRedis, openRedis } from '../core/store/redis/index.ts';
import type { ApiKeyRecord } from '../chat/users.ts';
import { createUser, deleteUserByName, findUserByName, issueApiKey, listUsers, revokeApiKey, rotateApiKey, userNameSchema } from '../chat/users.ts';
import type { Store } from '../core/store/index.ts';
import { NotFoundError } from '../core/errors.ts';
import type { CommandIo } from './types.ts';
import { exportsContainingUser } from '../export/manifests.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command } from './types.ts';

const SUBCOMMANDS = ['create', 'delete', 'list', 'keys'] as const;
const KEY_SUBCOMMANDS = ['list', 'create', 'rotate', 'revoke'] as const;
type KeySubcommand = (typeof KEY_SUBCOMMANDS)[number];

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  name: userNameSchema.optional(),
  admin: z.boolean().default(false),
  'key-name': z.string().optional(),
  'key-id': z.coerce.number().int().positive().optional(),
});

/** The option table of `mneme users` (parsing and --help). */
export const USERS_SPEC: CommandSpec = {
  name: 'users',
  summary: 'create a user (prints the API key once), delete one with all their data, list them, or manage their named keys',
  positionals: 'create|delete|list|keys [list|create|rotate|revoke]',
  options: [
    { name: 'name', type: 'string', value: 'NAME', description: 'user name (required by create, delete and keys)' },
    { name: 'admin', type: 'boolean', default: false, description: 'create: the user may call the admin routes (/metrics, /v1/admin/...)' },
    { name: 'key-name', type: 'string', value: 'K', description: 'create: name of the first key (default "default"); keys create: name of the new key' },
    { name: 'key-id', type: 'string', value: 'ID', description: 'keys rotate|revoke: the key id (from `users keys list`)' },
  ],
  examples: [
    'users create --name alice --admin',
    'users delete --name bob --json',
    'users list',
    'users keys create --name alice --key-name laptop',
    'users keys list --name alice --json',
    'users keys rotate --name alice --key-id 3',
    'users keys revoke --name alice --key-id 3',
  ],
};

export const usersCommand: Command = {
  name: 'users',
  usage: synopsis(USERS_SPEC),
  specs: [USERS_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(USERS_SPEC, args, schema);
    const [sub, ...extra] = opts.positionals;
    if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub) || extra.length > (sub === 'keys' ? 1 : 0)) {
      throw new ValidationError(`users: expected one of ${SUBCOMMANDS.join(', ')}`);
    }
    const keySub = sub === 'keys' ? (extra[0] ?? 'list') : null;
    if (keySub !== null && !(KEY_SUBCOMMANDS as readonly string[]).includes(keySub)) {
      throw new ValidationError(`users keys: expected one of ${KEY_SUBCOMMANDS.join(', ')}`);
    }
    if (keySub === 'create' && !opts['key-name']) throw new ValidationError('users keys create: --key-name is required');
    if ((keySub === 'rotate' || keySub === 'revoke') && opts['key-id'] === undefined) throw new ValidationError(`users keys ${keySub}: --key-id is required`);
    if (sub !== 'list' && !opts.name) throw new ValidationError(`users ${sub}: --name is required`);
    if (sub !== 'create' && opts.admin) throw new ValidationError(`users ${sub}: --admin only applies to create`);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    return withStore(config, async (store) => {
      if (keySub !== null) return await keysCommand(store, io, keySub as KeySubcommand, { name: opts.name!, keyName: opts['key-name'], keyId: opts['key-id'], json: opts.json });
      if (sub === 'create') {
        const { user, apiKey } = await createUser(store, { name: opts.name!, admin: opts.admin, keyName: opts['key-name'] });
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
    });
  },
};

function keyJson(k: ApiKeyRecord): Record<string, unknown> {
  return { id: k.id, name: k.name, prefix: k.keyPrefix, created_at: k.createdAt, last_used_at: k.lastUsedAt, revoked_at: k.revokedAt };
}

/** `users keys list|create|rotate|revoke` for the user `o.name`. @throws NotFoundError for no such user or key. */
async function keysCommand(
  store: Store,
  io: CommandIo,
  sub: KeySubcommand,
  o: { name: string; keyName: string | undefined; keyId: number | undefined; json: boolean },
): Promise<number> {
  const user = await findUserByName(store, o.name);
  if (!user) throw new NotFoundError(`no user named "${o.name}"`);
  if (sub === 'list') {
    const keys = await store.users.keys(user.id);
    if (o.json) printJson(io.stdout, keys.map(keyJson));
    else {
      for (const k of keys) {
        const state = k.revokedAt ? `revoked ${k.revokedAt}` : `last used ${k.lastUsedAt ?? 'never'}`;
        io.stdout.write(`${k.id}  ${k.name}  ${k.keyPrefix}…  created ${k.createdAt}  ${state}\n`);
      }
    }
    return 0;
  }
  if (sub === 'revoke') {
    await revokeApiKey(store, user.id, o.keyId!);
    if (o.json) printJson(io.stdout, { name: user.name, key: o.keyId, revoked: true });
    else io.stdout.write(`revoked key ${o.keyId} of ${user.name}\n`);
    return 0;
  }
  const issued = sub === 'create' ? await issueApiKey(store, user.id, o.keyName) : await rotateApiKey(store, user.id, o.keyId!);
  if (o.json) printJson(io.stdout, { name: user.name, key: keyJson(issued.key), api_key: issued.apiKey });
  else {
    io.stdout.write(`${sub === 'create' ? 'created' : 'rotated'} key "${issued.key.name}" (id ${issued.key.id}) of ${user.name}\n`);
    io.stdout.write(`API key (shown once, store it now): ${issued.apiKey}\n`);
  }
  return 0;
}
