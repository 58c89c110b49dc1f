/**
 * `mneme collections` (issue 14, item 4): who may read and write which collection.
 * - `collections create NAME [--public]`: an access row for NAME, private (admins and granted users)
 *   unless `--public`. NAME may already hold documents (they follow the setting from the next
 *   request on); run again on an existing row, it sets the visibility.
 * - `collections grant NAME --user U [--write]`: U may read NAME (and with --write upload into it
 *   and delete its documents). A collection with documents and no row gets a public row first.
 *   `--group G` instead of `--user`: every member of group G (`mneme groups`) holds the grant.
 * - `collections revoke NAME --user U | --group G`: removes the grant (effective on the next request,
 *   on every running server: the access is read per request).
 * - `collections list [--json]`: every collection (with documents or a row), its visibility, counts
 *   and grants.
 * Collections never configured (every existing one, those made by `mneme ingest --collection`) are
 * public: nothing changes for current users until someone runs `create`.
 */
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { withStore } from '../core/deps.ts';
import { ValidationError } from '../core/errors.ts';
import { collectionAdminJson, grantCollection, listCollectionsForAdmin, revokeCollection, setCollectionAccess } from '../chat/access.ts';
import type { CollectionAdminView } from '../chat/access.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';
import type { Store } from '../core/store/index.ts';

const SUBCOMMANDS = ['create', 'grant', 'revoke', 'list'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  public: z.boolean().default(false),
  user: z.string().min(1).optional(),
  group: z.string().min(1).optional(),
  write: z.boolean().default(false),
});

/** The option table of `mneme collections` (parsing and --help). */
export const COLLECTIONS_SPEC: CommandSpec = {
  name: 'collections',
  summary: 'make a collection private or public, grant or revoke a user\'s access, list collections with their access',
  positionals: 'create|grant|revoke NAME | list',
  options: [
    { name: 'public', type: 'boolean', default: false, description: 'create: readable by every user (default: private, admins and granted users only)' },
    { name: 'user', type: 'string', value: 'U', description: 'grant|revoke: the user name' },
    { name: 'group', type: 'string', value: 'G', description: 'grant|revoke: a group name instead of a user (every member holds the grant; see mneme groups)' },
    { name: 'write', type: 'boolean', default: false, description: 'grant: the user may also upload into the collection and delete its documents' },
  ],
  examples: [
    'collections create handbook',
    'collections create faq --public',
    'collections grant handbook --user bob --write',
    'collections grant handbook --group support',
    'collections revoke handbook --user bob',
    'collections list --json',
  ],
};

type Opts = z.infer<typeof schema>;

/** Checks the positionals and options of one invocation. @throws ValidationError */
function checkUsage(sub: string | undefined, name: string | undefined, extra: string[], o: Opts): Subcommand {
  if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) throw new ValidationError(`collections: expected one of ${SUBCOMMANDS.join(', ')}`);
  const s = sub as Subcommand;
  if (s === 'list' ? name !== undefined : name === undefined || extra.length > 0) throw new ValidationError(s === 'list' ? 'collections list takes no NAME' : `collections ${s}: exactly one NAME`);
  if ((s === 'grant' || s === 'revoke') && !o.user === !o.group) throw new ValidationError(`collections ${s}: exactly one of --user and --group is required`);
  if (s !== 'grant' && s !== 'revoke' && (o.user || o.group)) throw new ValidationError(`collections ${s}: --user and --group only apply to grant and revoke`);
  if (s !== 'grant' && o.write) throw new ValidationError(`collections ${s}: --write only applies to grant`);
  if (s !== 'create' && o.public) throw new ValidationError(`collections ${s}: --public only applies to create`);
  return s;
}

function describe(v: CollectionAdminView): string {
  const grants = [...v.grants.map((g) => `${g.user}${g.canWrite ? ' (write)' : ''}`), ...v.groupGrants.map((g) => `group ${g.group}${g.canWrite ? ' (write)' : ''}`)].join(', ');
  const access = v.configured ? v.visibility : 'public (default)';
  return `${v.name}  ${access}  ${v.documents} documents, ${v.chunks} chunks${grants ? `  granted: ${grants}` : ''}\n`;
}

async function runSub(store: Store, io: CommandIo, sub: Subcommand, name: string | undefined, o: Opts): Promise<number> {
  if (sub === 'list') {
    const all = await listCollectionsForAdmin(store);
    if (o.json) printJson(io.stdout, all.map(collectionAdminJson));
    else if (all.length === 0) io.stdout.write('no collections (ingest documents with `mneme ingest --collection NAME`)\n');
    else for (const v of all) io.stdout.write(describe(v));
    return 0;
  }
  const n = name!;
  if (sub === 'create') {
    const visibility = o.public ? 'public' : 'private';
    const { created } = await setCollectionAccess(store, n, visibility, null);
    if (o.json) printJson(io.stdout, { name: n, visibility, created });
    else io.stdout.write(`${created ? 'created' : 'updated'} collection ${n}: ${visibility}\n`);
    return 0;
  }
  const who = o.group !== undefined ? { group: o.group } : { user: o.user! };
  const label = 'group' in who ? `group ${who.group}` : who.user;
  if (sub === 'grant') {
    await grantCollection(store, n, who, o.write);
    if (o.json) printJson(io.stdout, { name: n, ...who, write: o.write, granted: true });
    else io.stdout.write(`granted ${label} ${o.write ? 'read and write' : 'read'} access to ${n}\n`);
    return 0;
  }
  await revokeCollection(store, n, who);
  if (o.json) printJson(io.stdout, { name: n, ...who, revoked: true });
  else io.stdout.write(`revoked ${label}'s access to ${n}\n`);
  return 0;
}

export const collectionsCommand: Command = {
  name: 'collections',
  usage: synopsis(COLLECTIONS_SPEC),
  specs: [COLLECTIONS_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(COLLECTIONS_SPEC, args, schema);
    const [sub, name, ...extra] = opts.positionals;
    const s = checkUsage(sub, name, extra, opts);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    return withStore(config, (store) => runSub(store, io, s, name, opts));
  },
};
