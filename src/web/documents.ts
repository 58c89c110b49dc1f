/**
 * The documents panel of the chat page (issue 14): upload files (drag-and-drop onto the drop zone or
 * the file picker) into a collection with a progress bar per upload and the per-file failures, and
 * the list of indexed documents with search, "load more" (keyset cursor) and delete (admins).
 * Builds its own dialog and a "Documents" button in the top bar; every server string goes in as text.
 */
import type { JobView } from '../chat/jobs.ts';
import { describeError } from './api.ts';
import { append, h, replaceChildren } from './dom.ts';
import { relativeTime } from './format.ts';
import { SseParser } from './sse.ts';

/** A document row as GET /v1/documents returns it. */
export interface DocumentRow {
  id: number;
  collection: string;
  title: string;
  source: string;
  kind: string;
  bytes: number;
  chunks: number;
  updated_at: string;
}

/** Delay between two keystrokes before the search runs, in ms. */
const SEARCH_DEBOUNCE_MS = 250;

/** "1.2 MB", "340 KB", "12 B" (pure). */
export function formatBytes(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${Math.round(n / 1e3)} KB`;
  return `${n} B`;
}

async function call(key: string, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('Authorization', `Bearer ${key}`);
  const res = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
  if (!res.ok) {
    const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
    throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  }
  return res;
}

/** Follows GET /v1/jobs/:id/events, calling `onJob` for each `progress` and the final `done` event. */
async function followJob(key: string, jobId: string, onJob: (j: JobView) => void): Promise<JobView> {
  const res = await call(key, `/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers: { Accept: 'text/event-stream' } });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const ev of parser.push(value)) {
      const job = JSON.parse(ev.data) as JobView;
      onJob(job);
      if (ev.event === 'done') {
        await reader.cancel().catch(() => {});
        return job;
      }
    }
  }
  throw new Error('the progress stream ended early');
}

export interface DocumentsPanelOptions {
  /** The signed-in user's key (null: signed out). */
  key: () => string | null;
  /** Admins see the Delete buttons. */
  isAdmin: () => boolean;
  /** The collection uploads go into when the dialog opens (the chat page's picker choice); null: keep the field. */
  uploadCollection?: (() => string | null) | undefined;
  /** Called after an upload job ends (the picker then lists a new collection). */
  onUploaded?: (() => void) | undefined;
}

/** Adds the "Documents" button to `nav` (before its first child) and the dialog to the page. */
export function mountDocumentsPanel(nav: HTMLElement, opts: DocumentsPanelOptions): void {
  const collection = h('input', { id: 'upload-collection', class: 'input', value: 'default', 'aria-label': 'Collection', pattern: '[A-Za-z0-9_.\\-]{1,64}' });
  const picker = h('input', { id: 'upload-input', type: 'file', multiple: true, hidden: true });
  const zone = h('div', { id: 'drop-zone', class: 'drop-zone', tabindex: '0', role: 'button' }, 'Drop files here or ', h('span', { class: 'link' }, 'choose files'), ' (md, txt, html, pdf, json)');
  const uploads = h('ul', { id: 'upload-list', class: 'upload-list', 'aria-live': 'polite' });
  const search = h('input', { id: 'doc-search', class: 'input', type: 'search', placeholder: 'Search titles, sources and text', 'aria-label': 'Search documents' });
  const list = h('ul', { id: 'doc-list', class: 'doc-list' });
  const more = h('button', { type: 'button', id: 'btn-doc-more', class: 'btn', hidden: true }, 'Load more');
  const status = h('p', { id: 'doc-status', class: 'error', role: 'status' });
  const close = h('button', { type: 'button', class: 'btn btn-ghost', 'aria-label': 'Close' }, 'Close');
  const dialog = h('dialog', { id: 'documents-dialog', class: 'dialog documents-dialog', 'aria-labelledby': 'documents-title' },
    h('div', { class: 'dialog-head' }, h('h2', { id: 'documents-title' }, 'Documents'), close),
    h('section', { 'aria-label': 'Upload' }, h('label', { class: 'muted', for: 'upload-collection' }, 'Upload into collection '), collection, zone, picker, uploads),
    h('section', { 'aria-label': 'Indexed documents' }, search, status, list, more),
  );
  document.body.append(dialog);
  const open = h('button', { type: 'button', id: 'btn-documents', class: 'btn btn-ghost' }, 'Documents');
  nav.insertBefore(open, nav.firstChild);

  let cursor: string | null = null;
  let query = '';
  const load = async (reset: boolean) => {
    const key = opts.key();
    if (!key) return;
    if (reset) cursor = null;
    const params = new URLSearchParams({ limit: '50' });
    if (query) params.set('q', query);
    if (cursor) params.set('cursor', cursor);
    try {
      const page = (await (await call(key, `/v1/documents?${params}`)).json()) as { data: DocumentRow[]; next_cursor: string | null };
      if (reset) replaceChildren(list);
      append(list, ...page.data.map((d) => row(d)));
      if (reset && page.data.length === 0) append(list, h('li', { class: 'muted' }, query ? 'No document matches.' : 'No documents yet.'));
      cursor = page.next_cursor;
      more.hidden = cursor === null;
      status.textContent = '';
    } catch (err) {
      status.textContent = describeError(err);
    }
  };
  const row = (d: DocumentRow): HTMLLIElement => {
    const li = h('li', { class: 'doc-row', dataset: { id: String(d.id) } },
      h('div', { class: 'doc-main' }, h('strong', { class: 'doc-title' }, d.title), h('span', { class: 'muted doc-source' }, d.source)),
      h('span', { class: 'muted doc-meta' }, `${d.collection} · ${d.chunks} chunks · ${formatBytes(d.bytes)} · ${relativeTime(d.updated_at, Date.now())}`),
    );
    if (opts.isAdmin()) {
      const del = h('button', { type: 'button', class: 'btn btn-danger doc-delete', 'aria-label': `Delete ${d.title}` }, 'Delete');
      del.addEventListener('click', () => void remove(d, li, del));
      li.append(del);
    }
    return li;
  };
  const remove = async (d: DocumentRow, li: HTMLLIElement, button: HTMLButtonElement) => {
    if (button.dataset.confirm !== '1') {
      button.dataset.confirm = '1';
      button.textContent = 'Confirm delete';
      return;
    }
    button.disabled = true;
    try {
      await call(opts.key() ?? '', `/v1/documents/${d.id}`, { method: 'DELETE' });
      li.remove();
    } catch (err) {
      status.textContent = describeError(err);
      button.disabled = false;
    }
  };
  const uploadFiles = async (files: File[]) => {
    const key = opts.key();
    if (!key || files.length === 0) return;
    const bar = h('progress', { class: 'upload-progress', max: String(files.length), value: '0' });
    const label = h('span', { class: 'upload-state' }, 'uploading…');
    const failures = h('ul', { class: 'upload-failures error' });
    const item = h('li', { class: 'upload-item' }, h('span', { class: 'upload-names' }, files.map((f) => f.name).join(', ')), bar, label, failures);
    uploads.prepend(item);
    const form = new FormData();
    form.append('collection', collection.value.trim() || 'default');
    for (const f of files) form.append('file', f, f.name);
    try {
      const { job_id: jobId } = (await (await call(key, '/v1/documents', { method: 'POST', body: form })).json()) as { job_id: string };
      const final = await followJob(key, jobId, (j) => {
        bar.max = Math.max(1, j.files_total);
        bar.value = j.files_done;
        label.textContent = `${j.state}: ${j.files_done}/${j.files_total} files${j.eta_s !== null && j.state === 'running' ? `, about ${Math.ceil(j.eta_s)} s left` : ''}`;
        replaceChildren(failures, ...j.failures.map((f) => h('li', {}, `${f.file}: ${f.reason}`)));
      });
      item.dataset.state = final.state;
      label.textContent = final.state === 'done' ? `done: ${final.files_done - final.files_failed} of ${final.files_total} files indexed` : `failed: ${final.error ?? 'unknown error'}`;
      await load(true);
      opts.onUploaded?.();
    } catch (err) {
      item.dataset.state = 'failed';
      label.textContent = describeError(err);
    }
  };

  open.addEventListener('click', () => {
    const target = opts.uploadCollection?.();
    if (target) collection.value = target;
    dialog.showModal();
    void load(true);
  });
  close.addEventListener('click', () => dialog.close());
  zone.addEventListener('click', () => picker.click());
  zone.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') picker.click();
  });
  picker.addEventListener('change', () => {
    void uploadFiles(Array.from(picker.files ?? []));
    picker.value = '';
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('drag-over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('drag-over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('drag-over');
    void uploadFiles(Array.from(e.dataTransfer?.files ?? []));
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      query = search.value.trim();
      void load(true);
    }, SEARCH_DEBOUNCE_MS);
  });
  more.addEventListener('click', () => void load(false));
}
