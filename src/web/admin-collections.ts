/**
 * The Collections section of /admin (issue 14, item 4): every collection with its visibility
 * (public: every user; private: admins and granted users), live document and chunk counts and its
 * grants; create a collection (private or public; for an existing name, its visibility is set);
 * grant a user read or write access; revoke a grant. Routes: /v1/admin/collections…
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
  const table = h('div', { id: 'collections-table', class: 'table-wrap' });
  replaceChildren(root, form, status, error, users, table);

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
    const user = h('input', { type: 'text', class: 'grant-user', list: 'collection-user-names', maxlength: '128', placeholder: 'user name', 'aria-label': `User to grant access to ${c.name}` });
    const write = h('input', { type: 'checkbox', class: 'grant-write', 'aria-label': `Also write (upload, delete) in ${c.name}` });
    const f = h('form', { class: 'key-add grant-form' }, user, h('label', { class: 'inline-field small' }, write, ' write'), h('button', { type: 'submit', class: 'btn btn-grant' }, 'Grant'));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const who = user.value.trim();
      const k = key();
      if (!who || !k) return;
      void call(() => apiJson(k, `/v1/admin/collections/${enc(c.name)}/grants`, { body: { user: who, write: write.checked } }), `${who} may now ${write.checked ? 'read and write' : 'read'} ${c.name}.`);
    });
    return f;
  };

  const grantList = (c: CollectionItem): HTMLElement => {
    if (c.grants.length === 0) return h('span', { class: 'muted small' }, c.visibility === 'public' ? 'every user reads it' : 'admins only');
    return h('ul', { class: 'key-list' }, ...c.grants.map((g) => {
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
        const body = await apiJson<{ data: CollectionItem[] }>(k, '/v1/admin/collections');
        const json = JSON.stringify(body.data);
        if (json !== shown) {
          shown = json;
          render(body.data);
          void loadUsers(k);
        }
      } catch (err) {
        error.textContent = failure(err);
      }
    },
  };
  return panel;
}
