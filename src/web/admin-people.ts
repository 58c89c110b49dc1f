/**
 * The People section of /admin (issue 14, item 5): create a user (their first key appears once, in a
 * copy-once dialog), each user's named keys with prefix, creation and last use, add / rotate /
 * revoke a key (a new key again shows once), and delete a user (a confirmation dialog where the
 * admin types the user's name: deleting erases everything of theirs). Routes: /v1/admin/users…
 * (src/chat/http/routes/people.ts). All server text goes in as text nodes; a key in clear lives only
 * in the open dialog and is cleared from the page when it closes.
 */
import { apiDelete, apiJson, describeError } from './api.ts';
import { h, replaceChildren } from './dom.ts';
import { relativeTime } from './format.ts';

interface KeyItem {
  id: number;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

interface UserItem {
  id: number;
  name: string;
  admin: boolean;
  created_at: string;
  keys: KeyItem[];
}

interface IssuedKey {
  key: KeyItem;
  api_key: string;
}

export interface PeoplePanel {
  /** Reloads the list (re-rendered only when something changed, so typing is not interrupted). */
  refresh(): Promise<void>;
}

const enc = encodeURIComponent;

/** The copy-once dialog: shows a key until closed, then forgets it. */
function keyDialog(): { show: (title: string, apiKey: string) => void } {
  const title = h('h2', { id: 'key-dialog-title' }, '');
  const field = h('input', { id: 'key-dialog-key', type: 'text', readonly: true, class: 'key-once', 'aria-label': 'New API key', spellcheck: 'false' });
  const copied = h('p', { id: 'key-dialog-copied', class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button', id: 'btn-copy-key', class: 'btn btn-primary' }, 'Copy');
  const done = h('button', { type: 'button', id: 'btn-key-done', class: 'btn btn-ghost' }, 'I have stored it');
  const dialog = h('dialog', { id: 'key-dialog', class: 'dialog key-dialog', 'aria-labelledby': 'key-dialog-title' },
    title,
    h('p', {}, 'This key is shown once: mneme keeps only its hash. Copy it now and give it to its owner.'),
    h('div', { class: 'key-once-row' }, field, copy),
    copied,
    h('div', { class: 'dialog-actions' }, done));
  document.body.append(dialog);
  copy.addEventListener('click', () => {
    field.select();
    navigator.clipboard?.writeText(field.value).then(
      () => (copied.textContent = 'Copied to the clipboard.'),
      () => (copied.textContent = 'Select the key and copy it (Ctrl+C).'),
    ) ?? (copied.textContent = 'Select the key and copy it (Ctrl+C).');
  });
  done.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    field.value = '';
    copied.textContent = '';
  });
  return {
    show(t, apiKey) {
      title.textContent = t;
      field.value = apiKey;
      dialog.showModal();
      field.select();
    },
  };
}

/**
 * The confirmation dialog: `confirmWord` (when given) must be typed before the action is allowed.
 * Resolves true when confirmed.
 */
function confirmDialog(): { ask: (o: { title: string; body: string; action: string; confirmWord?: string }) => Promise<boolean> } {
  const title = h('h2', { id: 'confirm-title' }, '');
  const body = h('p', { id: 'confirm-body' }, '');
  const word = h('input', { id: 'confirm-word', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Type the name to confirm' });
  const wordRow = h('label', { class: 'confirm-word', for: 'confirm-word' }, 'Type the name to confirm: ', word);
  const ok = h('button', { type: 'button', id: 'btn-confirm', class: 'btn btn-danger' }, '');
  const cancel = h('button', { type: 'button', id: 'btn-confirm-cancel', class: 'btn btn-ghost' }, 'Cancel');
  const dialog = h('dialog', { id: 'confirm-dialog', class: 'dialog confirm-dialog', 'aria-labelledby': 'confirm-title' },
    title, body, wordRow, h('div', { class: 'dialog-actions' }, cancel, ok));
  document.body.append(dialog);
  let expected = '';
  let settle: ((v: boolean) => void) | null = null;
  const finish = (v: boolean) => {
    settle?.(v);
    settle = null;
    if (dialog.open) dialog.close();
  };
  word.addEventListener('input', () => (ok.disabled = expected !== '' && word.value !== expected));
  ok.addEventListener('click', () => finish(true));
  cancel.addEventListener('click', () => finish(false));
  dialog.addEventListener('close', () => finish(false));
  return {
    ask(o) {
      title.textContent = o.title;
      body.textContent = o.body;
      ok.textContent = o.action;
      expected = o.confirmWord ?? '';
      wordRow.hidden = expected === '';
      word.value = '';
      ok.disabled = expected !== '';
      dialog.showModal();
      (expected ? word : cancel).focus();
      return new Promise((resolve) => (settle = resolve));
    },
  };
}

/** Builds the section inside `root`; `key()` is the signed-in admin key (null when signed out). */
export function peoplePanel(root: HTMLElement, key: () => string | null): PeoplePanel {
  const status = h('p', { id: 'people-status', class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const error = h('p', { id: 'people-error', class: 'error', role: 'alert' });
  const list = h('div', { id: 'people-list', class: 'table-wrap' });
  const name = h('input', { id: 'new-user-name', type: 'text', maxlength: '64', autocomplete: 'off', spellcheck: 'false', placeholder: 'name', 'aria-label': 'New user name' });
  const keyName = h('input', { id: 'new-user-key-name', type: 'text', maxlength: '64', autocomplete: 'off', placeholder: 'first key name (default)', 'aria-label': 'First key name' });
  const admin = h('input', { id: 'new-user-admin', type: 'checkbox' });
  const create = h('button', { type: 'submit', id: 'btn-create-user', class: 'btn btn-primary' }, 'Create user');
  const form = h('form', { id: 'new-user-form', class: 'people-create', novalidate: true },
    name, keyName, h('label', { class: 'inline-field', for: 'new-user-admin' }, admin, ' admin'), create);
  replaceChildren(root, form, status, error, list);
  const keys = keyDialog();
  const confirm = confirmDialog();
  let shown = '';

  /** Runs one change, shows its outcome and reloads. */
  const act = async (fn: (k: string) => Promise<string>) => {
    const k = key();
    if (!k) return;
    error.textContent = '';
    try {
      status.textContent = await fn(k);
    } catch (err) {
      error.textContent = describeError(err);
    }
    await refresh(true);
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void act(async (k) => {
      const body = { name: name.value.trim(), admin: admin.checked, ...(keyName.value.trim() ? { key_name: keyName.value.trim() } : {}) };
      const r = await apiJson<IssuedKey & { user: UserItem }>(k, '/v1/admin/users', { body });
      keys.show(`API key of ${r.user.name} (${r.key.name})`, r.api_key);
      name.value = '';
      keyName.value = '';
      admin.checked = false;
      return `Created ${r.user.name}.`;
    });
  });

  const addKey = (u: UserItem, input: HTMLInputElement) =>
    act(async (k) => {
      const r = await apiJson<IssuedKey>(k, `/v1/admin/users/${enc(u.name)}/keys`, { body: { name: input.value.trim() } });
      keys.show(`API key of ${u.name} (${r.key.name})`, r.api_key);
      return `Added key “${r.key.name}” to ${u.name}.`;
    });
  const rotate = async (u: UserItem, kk: KeyItem) => {
    if (!(await confirm.ask({ title: `Rotate key “${kk.name}” of ${u.name}?`, body: `The key ${kk.prefix}… stops working now; a new key with the same name is shown once.`, action: 'Rotate' }))) return;
    await act(async (k) => {
      const r = await apiJson<IssuedKey>(k, `/v1/admin/users/${enc(u.name)}/keys/${kk.id}/rotate`, { method: 'POST', body: {} });
      keys.show(`New API key of ${u.name} (${r.key.name})`, r.api_key);
      return `Rotated key “${kk.name}” of ${u.name}.`;
    });
  };
  const revoke = async (u: UserItem, kk: KeyItem) => {
    if (!(await confirm.ask({ title: `Revoke key “${kk.name}” of ${u.name}?`, body: `Clients using ${kk.prefix}… get 401 from now on. The user's other keys keep working.`, action: 'Revoke' }))) return;
    await act(async (k) => {
      await apiDelete(k, `/v1/admin/users/${enc(u.name)}/keys/${kk.id}`);
      return `Revoked key “${kk.name}” of ${u.name}.`;
    });
  };
  const remove = async (u: UserItem) => {
    const body = `This erases ${u.name} and everything of theirs (conversations, answers, feedback, features, keys). It cannot be undone.`;
    if (!(await confirm.ask({ title: `Delete ${u.name}?`, body, action: 'Delete user', confirmWord: u.name }))) return;
    await act(async (k) => {
      await apiDelete(k, `/v1/admin/users/${enc(u.name)}`);
      return `Deleted ${u.name}.`;
    });
  };

  function keyRow(u: UserItem, kk: KeyItem, now: number): HTMLElement {
    const live = kk.revoked_at === null;
    return h('li', { class: live ? 'key-item' : 'key-item key-revoked', dataset: { keyId: String(kk.id) } },
      h('span', { class: 'key-name' }, kk.name),
      h('code', { class: 'key-prefix' }, `${kk.prefix}…`),
      h('span', { class: 'muted small' }, ` created ${relativeTime(kk.created_at, now)} · `),
      h('span', { class: 'muted small key-last-used' }, live ? `last used ${relativeTime(kk.last_used_at, now)}` : `revoked ${relativeTime(kk.revoked_at, now)}`),
      live && h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': `Rotate key ${kk.name} of ${u.name}`, on: { click: () => void rotate(u, kk) } }, 'Rotate'),
      live && h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': `Revoke key ${kk.name} of ${u.name}`, on: { click: () => void revoke(u, kk) } }, 'Revoke'));
  }

  function userRow(u: UserItem, now: number): HTMLElement {
    const input = h('input', { type: 'text', maxlength: '64', placeholder: 'key name, e.g. laptop', 'aria-label': `New key name for ${u.name}` });
    return h('tr', { dataset: { user: u.name } },
      h('td', {}, h('strong', {}, u.name), u.admin ? h('span', { class: 'badge' }, 'admin') : null),
      h('td', { class: 'small' }, relativeTime(u.created_at, now)),
      h('td', {},
        h('ul', { class: 'key-list' }, ...u.keys.map((kk) => keyRow(u, kk, now))),
        h('form', { class: 'key-add', on: { submit: (ev: Event) => { ev.preventDefault(); void addKey(u, input); } } },
          input, h('button', { type: 'submit', class: 'btn btn-ghost btn-small', 'aria-label': `Add key for ${u.name}` }, 'Add key'))),
      h('td', {}, h('button', { type: 'button', class: 'btn btn-danger btn-small', 'aria-label': `Delete ${u.name}`, on: { click: () => void remove(u) } }, 'Delete')));
  }

  async function refresh(force = false): Promise<void> {
    const k = key();
    if (!k) return;
    try {
      const body = await apiJson<{ data: UserItem[] }>(k, '/v1/admin/users');
      const text = JSON.stringify(body.data);
      if (!force && text === shown) return;
      // A timed refresh never wipes a key name being typed (only changes and actions re-render then).
      const typing = Array.from(list.querySelectorAll('input')).some((i) => i.value !== '' || i === document.activeElement);
      if (!force && typing) return;
      shown = text;
      const now = Date.now();
      const head = ['User', 'Created', 'API keys', ''];
      replaceChildren(list, h('table', { class: 'data-table people-table' },
        h('thead', {}, h('tr', {}, ...head.map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, ...body.data.map((u) => userRow(u, now)))));
    } catch (err) {
      error.textContent = describeError(err);
    }
  }

  return { refresh: () => refresh(false) };
}
