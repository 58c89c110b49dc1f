/**
 * The Collections section of /admin (issue 14, item 4): every collection with its visibility
 * (public: every user; private: admins and granted users), live document and chunk counts and its
 * grants; create a collection (private or public; for an existing name, its visibility is set);
 * grant a user or a group read or write access; revoke a grant. Below it, the groups: create or
 * delete one, add or remove members. Routes: /v1/admin/collections…, /v1/admin/groups…
 * (src/chat/http/routes/collections.ts). Changes apply to the user's next request. All server text
 * goes in as text nodes.
 */
import { ApiError, apiDelete, apiJson, describeError } from './api.ts';
import { h, replaceChildren } from './dom.ts';
import { formatNumber, relativeTime } from './format.ts';

/** A collection as GET /v1/admin/collections returns it. */
interface CollectionItem {
  name: string;
  visibility: 'public' | 'private';
  /** False: no access row yet (public by default). */
  configured: boolean;
  documents: number;
  chunks: number;
  created_at: string | null;
  grants: Array<{ user: string; write: boolean; granted_at: string }>;
  group_grants: Array<{ group: string; write: boolean; granted_at: string }>;
}

/** A group as GET /v1/admin/groups returns it. */
interface GroupItem {
  name: string;
  created_at: string;
  members: string[];
  grants: Array<{ collection: string; write: boolean }>;
}

export interface CollectionsPanel {
  /** Reloads the list (re-rendered only when something changed, so typing is not interrupted). */
  refresh(): Promise<void>;
}

const enc = encodeURIComponent;
/** As the server's COLLECTION_NAME_PATTERN (src/chat/access.ts): checked again there. */
const NAME_PATTERN = '[A-Za-z0-9_.\\-]{1,64}';

/** A sentence for a failed call; 404 bodies name the missing user or collection. */
function failure(err: unknown): string {
  return err instanceof ApiError && (err.status === 404 || err.status === 400) ? err.message : describeError(err);
}

/** Builds the panel inside `root`; `key()` is the signed-in admin key (null when signed out). */
export function collectionsPanel(root: HTMLElement, key: () => string | null): CollectionsPanel {
  const name = h('input', { id: 'collection-name', type: 'text', maxlength: '64', pattern: NAME_PATTERN, placeholder: 'new collection name', 'aria-label': 'Collection name' });
  const visibility = h('select', { id: 'collection-visibility', 'aria-label': 'Visibility' },
    h('option', { value: 'private' }, 'private (admins and granted users)'),
    h('option', { value: 'public' }, 'public (every user)'));
  const create = h('button', { type: 'submit', id: 'btn-collection-create', class: 'btn btn-primary' }, 'Create collection');
  const form = h('form', { class: 'people-create collections-create', 'aria-label': 'Create a collection' }, name, visibility, create);
  const status = h('p', { id: 'collections-status', class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const error = h('p', { id: 'collections-error', class: 'error', role: 'alert' });
  const users = h('datalist', { id: 'collection-user-names' });
  const groupNames = h('datalist', { id: 'collection-group-names' });
  const table = h('div', { id: 'collections-table', class: 'table-wrap' });
  const groupName = h('input', { id: 'group-name', type: 'text', maxlength: '64', pattern: NAME_PATTERN, placeholder: 'new group name', 'aria-label': 'Group name' });
  const groupForm = h('form', { class: 'people-create groups-create', 'aria-label': 'Create a group' }, groupName,
    h('button', { type: 'submit', id: 'btn-group-create', class: 'btn btn-primary' }, 'Create group'));
  const groupsTable = h('div', { id: 'groups-table', class: 'table-wrap' });
  replaceChildren(root, form, status, error, users, groupNames, table,
    h('h3', { class: 'subsection' }, 'Groups'),
    h('p', { class: 'muted small' }, 'A collection granted to a group is readable (or writable) by each of its members.'),
    groupForm, groupsTable);

  let shown = '';
  const call = async (what: () => Promise<unknown>, done: string): Promise<boolean> => {
    error.textContent = '';
    try {
      await what();
      status.textContent = done;
      await panel.refresh();
      return true;
    } catch (err) {
      error.textContent = failure(err);
      return false;
    }
  };

  const grantForm = (c: CollectionItem): HTMLFormElement => {
    const kind = h('select', { class: 'grant-kind', 'aria-label': `Grant ${c.name} to a user or a group` }, h('option', { value: 'user' }, 'user'), h('option', { value: 'group' }, 'group'));
    const user = h('input', { type: 'text', class: 'grant-user', list: 'collection-user-names', maxlength: '128', placeholder: 'user name', 'aria-label': `User to grant access to ${c.name}` });
    kind.addEventListener('change', () => {
      const group = kind.value === 'group';
      user.setAttribute('list', group ? 'collection-group-names' : 'collection-user-names');
      user.setAttribute('aria-label', `${group ? 'Group' : 'User'} to grant access to ${c.name}`);
      user.placeholder = group ? 'group name' : 'user name';
    });
    const write = h('input', { type: 'checkbox', class: 'grant-write', 'aria-label': `Also write (upload, delete) in ${c.name}` });
    const f = h('form', { class: 'key-add grant-form' }, kind, user, h('label', { class: 'inline-field small' }, write, ' write'), h('button', { type: 'submit', class: 'btn btn-grant' }, 'Grant'));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const who = user.value.trim();
      const k = key();
      if (!who || !k) return;
      const group = kind.value === 'group';
      const label = group ? `Members of group ${who}` : who;
      void call(
        () => apiJson(k, `/v1/admin/collections/${enc(c.name)}/grants`, { body: group ? { group: who, write: write.checked } : { user: who, write: write.checked } }),
        `${label} may now ${write.checked ? 'read and write' : 'read'} ${c.name}.`,
      );
    });
    return f;
  };

  const grantList = (c: CollectionItem): HTMLElement => {
    if (c.grants.length === 0 && c.group_grants.length === 0) return h('span', { class: 'muted small' }, c.visibility === 'public' ? 'every user reads it' : 'admins only');
    const groupItems = c.group_grants.map((g) => {
      const revoke = h('button', { type: 'button', class: 'btn btn-ghost btn-revoke', 'aria-label': `Revoke group ${g.group}'s access to ${c.name}` }, 'Revoke');
      revoke.addEventListener('click', () => {
        const k = key();
        if (k) void call(() => apiDelete(k, `/v1/admin/collections/${enc(c.name)}/group-grants/${enc(g.group)}`), `Group ${g.group} no longer reads ${c.name} (from its members' next request).`);
      });
      return h('li', { class: 'key-item grant-item group-grant-item', dataset: { group: g.group } },
        h('span', { class: 'key-name' }, `group ${g.group}`), h('span', { class: 'badge' }, g.write ? 'read + write' : 'read'),
        h('span', { class: 'muted small' }, relativeTime(g.granted_at, Date.now())), revoke);
    });
    return h('ul', { class: 'key-list' }, ...groupItems, ...c.grants.map((g) => {
      const revoke = h('button', { type: 'button', class: 'btn btn-ghost btn-revoke', 'aria-label': `Revoke ${g.user}'s access to ${c.name}` }, 'Revoke');
      revoke.addEventListener('click', () => {
        const k = key();
        if (k) void call(() => apiDelete(k, `/v1/admin/collections/${enc(c.name)}/grants/${enc(g.user)}`), `${g.user} no longer reads ${c.name} (from their next request).`);
      });
      return h('li', { class: 'key-item grant-item', dataset: { user: g.user } },
        h('span', { class: 'key-name' }, g.user), h('span', { class: 'badge' }, g.write ? 'read + write' : 'read'),
        h('span', { class: 'muted small' }, relativeTime(g.granted_at, Date.now())), revoke);
    }));
  };

  const render = (items: CollectionItem[]) => {
    if (items.length === 0) {
      replaceChildren(table, h('p', { class: 'muted' }, 'No collections yet: create one, or upload documents.'));
      return;
    }
    const head = ['Collection', 'Visibility', 'Documents', 'Chunks', 'Who may read (besides admins)', 'Grant access'];
    replaceChildren(table, h('table', { class: 'data-table people-table collections-table' },
      h('thead', {}, h('tr', {}, ...head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...items.map((c) => h('tr', { dataset: { collection: c.name } },
        h('td', {}, h('strong', {}, c.name)),
        h('td', {}, h('span', { class: `badge visibility-${c.visibility}` }, c.visibility), c.configured ? null : h('span', { class: 'muted small' }, ' (default)')),
        h('td', {}, formatNumber(c.documents)),
        h('td', {}, formatNumber(c.chunks)),
        h('td', {}, grantList(c)),
        h('td', {}, grantForm(c)),
      )))));
  };

  const loadUsers = async (k: string) => {
    try {
      const body = await apiJson<{ data: Array<{ name: string }> }>(k, '/v1/admin/users');
      replaceChildren(users, ...body.data.map((u) => h('option', { value: u.name })));
    } catch {
      // Suggestions only: the grant form takes any name and the server checks it.
    }
  };

  const memberForm = (g: GroupItem): HTMLFormElement => {
    const user = h('input', { type: 'text', class: 'member-user', list: 'collection-user-names', maxlength: '128', placeholder: 'user name', 'aria-label': `User to add to group ${g.name}` });
    const f = h('form', { class: 'key-add member-form' }, user, h('button', { type: 'submit', class: 'btn btn-add-member' }, 'Add'));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const who = user.value.trim();
      const k = key();
      if (who && k) void call(() => apiJson(k, `/v1/admin/groups/${enc(g.name)}/members`, { body: { user: who } }), `${who} is now in group ${g.name}.`);
    });
    return f;
  };

  const memberList = (g: GroupItem): HTMLElement => {
    if (g.members.length === 0) return h('span', { class: 'muted small' }, 'no members');
    return h('ul', { class: 'key-list' }, ...g.members.map((m) => {
      const remove = h('button', { type: 'button', class: 'btn btn-ghost btn-remove-member', 'aria-label': `Remove ${m} from group ${g.name}` }, 'Remove');
      remove.addEventListener('click', () => {
        const k = key();
        if (k) void call(() => apiDelete(k, `/v1/admin/groups/${enc(g.name)}/members/${enc(m)}`), `${m} left group ${g.name} (from their next request).`);
      });
      return h('li', { class: 'key-item member-item', dataset: { user: m } }, h('span', { class: 'key-name' }, m), remove);
    }));
  };

  const renderGroups = (items: GroupItem[]) => {
    replaceChildren(groupNames, ...items.map((g) => h('option', { value: g.name })));
    if (items.length === 0) {
      replaceChildren(groupsTable, h('p', { class: 'muted' }, 'No groups yet.'));
      return;
    }
    const head = ['Group', 'Members', 'Add a member', 'Collections granted', ''];
    replaceChildren(groupsTable, h('table', { class: 'data-table people-table groups-table' },
      h('thead', {}, h('tr', {}, ...head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...items.map((g) => {
        const del = h('button', { type: 'button', class: 'btn btn-ghost btn-danger btn-group-delete', 'aria-label': `Delete group ${g.name}` }, 'Delete');
        del.addEventListener('click', () => {
          const k = key();
          if (k && confirm(`Delete group ${g.name}? Its members lose the access it granted.`)) void call(() => apiDelete(k, `/v1/admin/groups/${enc(g.name)}`), `Group ${g.name} deleted.`);
        });
        const grants = g.grants.length === 0 ? h('span', { class: 'muted small' }, 'none') : h('span', {}, g.grants.map((x) => `${x.collection}${x.write ? ' (write)' : ''}`).join(', '));
        return h('tr', { dataset: { group: g.name } }, h('td', {}, h('strong', {}, g.name)), h('td', {}, memberList(g)), h('td', {}, memberForm(g)), h('td', {}, grants), h('td', {}, del));
      }))));
  };

  groupForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const n = groupName.value.trim();
    const k = key();
    if (!k) return;
    if (!new RegExp(`^${NAME_PATTERN}$`).test(n)) {
      error.textContent = 'A group name is 1-64 letters, digits, "_", "-" or ".".';
      groupName.focus();
      return;
    }
    void call(() => apiJson(k, '/v1/admin/groups', { body: { name: n } }), `Group ${n} created.`).then((ok) => {
      if (ok) groupName.value = '';
    });
  });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const k = key();
    if (!k) return;
    if (!new RegExp(`^${NAME_PATTERN}$`).test(n)) {
      error.textContent = 'A collection name is 1-64 letters, digits, "_", "-" or ".".';
      name.focus();
      return;
    }
    void call(() => apiJson(k, '/v1/admin/collections', { body: { name: n, visibility: visibility.value } }), `Collection ${n} is ${visibility.value}.`).then((ok) => {
      if (ok) name.value = '';
    });
  });

  const panel: CollectionsPanel = {
    async refresh() {
      const k = key();
      if (!k) return;
      try {
        const [body, groups] = await Promise.all([
          apiJson<{ data: CollectionItem[] }>(k, '/v1/admin/collections'),
          apiJson<{ data: GroupItem[] }>(k, '/v1/admin/groups'),
        ]);
        const json = JSON.stringify([body.data, groups.data]);
        if (json !== shown) {
          shown = json;
          render(body.data);
          renderGroups(groups.data);
          void loadUsers(k);
        }
      } catch (err) {
        error.textContent = failure(err);
      }
    },
  };
  return panel;
}
