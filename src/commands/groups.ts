/**
 * `mneme groups` (issue 14, item 4): groups of users, so a collection can be granted to a team at
 * once (`mneme collections grant NAME --group G`); every member holds the group's grants.
 * - `groups create G`: a new, empty group (again on an existing group: nothing changes).
 * - `groups add G --user U` / `groups remove G --user U`: membership, effective on U's next request
 *   on every running server (the access is read per request).
 * - `groups delete G`: the group, its memberships and its collection grants.
 * - `groups list [--json]`: every group with its members and the collections it holds grants on.
 * Erasing a user (`users delete`, `DELETE /v1/me`) erases their memberships.
 */
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { withStore } from '../core/deps.ts';
import { ValidationError } from '../core/errors.ts';
import { addGroupMember, createGroup, deleteGroup, groupAdminJson, listGroupsForAdmin, removeGroupMember } from '../chat/access.ts';
import type { GroupAdminView } from '../chat/access.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';
import type { Store } from '../core/store/index.ts';

const SUBCOMMANDS = ['create', 'add', 'remove', 'delete', 'list'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  user: z.string().min(1).optional(),
});

/** The option table of `mneme groups` (parsing and --help). */
export const GROUPS_SPEC: CommandSpec = {
  name: 'groups',
  summary: 'groups of users: create or delete a group, add or remove members, list groups (grant a group a collection with mneme collections grant NAME --group G)',
  positionals: 'create|add|remove|delete G | list',
  options: [{ name: 'user', type: 'string', value: 'U', description: 'add|remove: the user name' }],
  examples: ['groups create support', 'groups add support --user bob', 'groups remove support --user bob', 'groups delete support', 'groups list --json'],
};

type Opts = z.infer<typeof schema>;

/** Checks the positionals and options of one invocation. @throws ValidationError */
function checkUsage(sub: string | undefined, name: string | undefined, extra: string[], o: Opts): Subcommand {
  if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) throw new ValidationError(`groups: expected one of ${SUBCOMMANDS.join(', ')}`);
  const s = sub as Subcommand;
  if (s === 'list' ? name !== undefined : name === undefined || extra.length > 0) throw new ValidationError(s === 'list' ? 'groups list takes no G' : `groups ${s}: exactly one group name G`);
  if ((s === 'add' || s === 'remove') && !o.user) throw new ValidationError(`groups ${s}: --user is required`);
  if (s !== 'add' && s !== 'remove' && o.user) throw new ValidationError(`groups ${s}: --user only applies to add and remove`);
  return s;
}

function describe(g: GroupAdminView): string {
  const members = g.members.length > 0 ? g.members.join(', ') : 'no members';
  const grants = g.grants.map((x) => `${x.collection}${x.canWrite ? ' (write)' : ''}`).join(', ');
  return `${g.name}  ${members}${grants ? `  collections: ${grants}` : ''}\n`;
}

async function runSub(store: Store, io: CommandIo, sub: Subcommand, name: string | undefined, o: Opts): Promise<number> {
  const say = (json: Record<string, unknown>, text: string) => (o.json ? printJson(io.stdout, json) : io.stdout.write(`${text}\n`));
  if (sub === 'list') {
    const all = await listGroupsForAdmin(store);
    if (o.json) printJson(io.stdout, all.map(groupAdminJson));
    else if (all.length === 0) io.stdout.write('no groups (create one with `mneme groups create G`)\n');
    else for (const g of all) io.stdout.write(describe(g));
    return 0;
  }
  const g = name!;
  if (sub === 'create') {
    const { created } = await createGroup(store, g);
    say({ name: g, created }, created ? `created group ${g}` : `group ${g} exists`);
  } else if (sub === 'delete') {
    await deleteGroup(store, g);
    say({ name: g, deleted: true }, `deleted group ${g} (its memberships and collection grants too)`);
  } else if (sub === 'add') {
    await addGroupMember(store, g, o.user!);
    say({ name: g, user: o.user, added: true }, `added ${o.user} to group ${g}`);
  } else {
    await removeGroupMember(store, g, o.user!);
    say({ name: g, user: o.user, removed: true }, `removed ${o.user} from group ${g}`);
  }
  return 0;
}

export const groupsCommand: Command = {
  name: 'groups',
  usage: synopsis(GROUPS_SPEC),
  specs: [GROUPS_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(GROUPS_SPEC, args, schema);
    const [sub, name, ...extra] = opts.positionals;
    const s = checkUsage(sub, name, extra, opts);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    return withStore(config, (store) => runSub(store, io, s, name, opts));
  },
};
