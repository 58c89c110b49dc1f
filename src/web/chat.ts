/**
 * The chat page (/): sign in with an API key (sessionStorage only), conversation list, streamed
 * answers with clickable [n] citations (snippet, title, source path), thumbs up/down with an
 * optional correction, the "what mneme knows about me" panel and "erase my data".
 *
 * Every server string (questions, titles, snippets, paths) goes into the page through text nodes
 * (dom.ts); answers are markdown, rendered with raw HTML escaped and sanitized by DOMPurify
 * (markdown.ts, markdown-dom.ts). A 401 from any call ends the session and returns to sign-in.
 */
import type { ChatAnswer } from '../chat/answer.ts';
import type { Citation } from '../chat/citations.ts';
import type { ConversationMessage, ConversationSummary } from '../chat/http/routes/conversations.ts';
import { FEATURE_CATALOG } from '../shared/feature-catalog.ts';
import { ApiError, apiJson, describeError, isAuthError, loadKey, saveKey, streamChat } from './api.ts';
import { append, byId, h, replaceChildren, svg } from './dom.ts';
import type { Child } from './dom.ts';
import { formatFeatureValue, formatMs, humanize, relativeTime } from './format.ts';
import { renderMarkdown } from './markdown-dom.ts';
import { mountDocumentsPanel } from './documents.ts';

/** Pixels from the bottom within which new text keeps the view scrolled to the end. */
const STICK_TO_BOTTOM_PX = 80;
/** Conversations listed in the sidebar. */
const CONVERSATIONS_SHOWN = 50;
/** Shortest time between two renders of a streaming answer's markdown, in ms. */
const STREAM_RENDER_INTERVAL_MS = 50;

interface MeFeatures {
  user: string;
  admin: boolean;
  features: Record<string, unknown>;
}

/** A collection as GET /v1/collections lists it (only those the user reads). */
interface CollectionRow {
  name: string;
  documents: number;
  chunks: number;
  visibility: 'public' | 'private';
  writable: boolean;
}

/** localStorage key prefix of the picker's choice, per user name (never the API key). */
const COLLECTION_CHOICE_PREFIX = 'mneme.chat.collection:';

const state = {
  key: null as string | null,
  user: null as string | null,
  conversationId: null as string | null,
  streaming: null as AbortController | null,
  collections: [] as CollectionRow[],
};

const el = {
  signinView: byId('signin-view'),
  signinForm: byId<HTMLFormElement>('signin-form'),
  keyInput: byId<HTMLInputElement>('key-input'),
  signinError: byId('signin-error'),
  signinButton: byId<HTMLButtonElement>('btn-signin'),
  sessionNav: byId('session-nav'),
  userName: byId('user-name'),
  chatView: byId('chat-view'),
  sidebar: byId('sidebar'),
  toggleSidebar: byId<HTMLButtonElement>('btn-toggle-sidebar'),
  convList: byId<HTMLUListElement>('conv-list'),
  convEmpty: byId('conv-empty'),
  newButton: byId<HTMLButtonElement>('btn-new'),
  chatTitle: byId('chat-title'),
  messages: byId('messages'),
  emptyHint: byId('empty-hint'),
  composer: byId<HTMLFormElement>('composer'),
  input: byId<HTMLTextAreaElement>('composer-input'),
  send: byId<HTMLButtonElement>('btn-send'),
  picker: byId<HTMLSelectElement>('collection-picker'),
  status: byId('chat-status'),
  featuresButton: byId<HTMLButtonElement>('btn-features'),
  signoutButton: byId<HTMLButtonElement>('btn-signout'),
  dialog: byId<HTMLDialogElement>('features-dialog'),
  dialogClose: byId<HTMLButtonElement>('btn-features-close'),
  featuresBody: byId('features-body'),
  erase: byId<HTMLButtonElement>('btn-erase'),
  eraseConfirmBox: byId('erase-confirm'),
  eraseConfirm: byId<HTMLButtonElement>('btn-erase-confirm'),
  eraseCancel: byId<HTMLButtonElement>('btn-erase-cancel'),
  eraseStatus: byId('erase-status'),
};

let uid = 0;
const nextId = (prefix: string) => `${prefix}-${++uid}`;

// ---------------------------------------------------------------- session

function showSignIn(message = ''): void {
  state.streaming?.abort();
  state.key = null;
  state.user = null;
  state.conversationId = null;
  state.collections = [];
  replaceChildren(el.picker, h('option', { value: '' }, 'All readable collections'));
  saveKey('chat', null);
  if (el.dialog.open) el.dialog.close();
  el.chatView.hidden = true;
  el.sessionNav.hidden = true;
  el.signinView.hidden = false;
  el.signinError.textContent = message;
  el.keyInput.value = '';
  el.keyInput.setAttribute('aria-invalid', message ? 'true' : 'false');
  el.keyInput.focus();
}

/** Any API failure: a 401 ends the session; anything else is shown in `statusEl`. */
function reportError(err: unknown, statusEl: HTMLElement): void {
  if (isAuthError(err)) {
    showSignIn('Your session has ended: this API key is no longer valid (expired, revoked or deleted). Sign in again with a current key.');
    return;
  }
  statusEl.textContent = describeError(err);
  statusEl.classList.add('error');
}

function clearStatus(statusEl: HTMLElement): void {
  statusEl.textContent = '';
  statusEl.classList.remove('error');
}

async function signIn(key: string, fromStorage: boolean): Promise<void> {
  el.signinButton.disabled = true;
  el.signinError.textContent = '';
  try {
    const me = await apiJson<MeFeatures>(key, '/v1/me/features');
    state.key = key;
    saveKey('chat', key);
    el.userName.textContent = me.user;
    state.user = me.user;
    signedInAdmin = me.admin;
    el.signinView.hidden = true;
    el.sessionNav.hidden = false;
    el.chatView.hidden = false;
    startNewConversation();
    el.input.focus();
    await Promise.all([loadConversations(), loadCollections()]);
  } catch (err) {
    saveKey('chat', null);
    el.signinView.hidden = false;
    const msg = isAuthError(err)
      ? fromStorage
        ? 'Your session has ended: this API key is no longer valid (expired, revoked or deleted). Sign in again with a current key.'
        : 'This API key was not accepted. Check that you copied it completely; it may also have been revoked.'
      : describeError(err);
    el.signinError.textContent = msg;
    el.keyInput.setAttribute('aria-invalid', 'true');
    el.keyInput.focus();
  } finally {
    el.signinButton.disabled = false;
  }
}

// ---------------------------------------------------------------- conversations

async function loadConversations(): Promise<void> {
  if (!state.key) return;
  try {
    const body = await apiJson<{ conversations: ConversationSummary[] }>(state.key, `/v1/conversations?limit=${CONVERSATIONS_SHOWN}`);
    renderConversations(body.conversations);
  } catch (err) {
    reportError(err, el.status);
  }
}

function renderConversations(list: ConversationSummary[]): void {
  const now = Date.now();
  el.convEmpty.hidden = list.length > 0;
  replaceChildren(
    el.convList,
    ...list.map((c) =>
      h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: 'conv-item',
            'aria-current': c.id === state.conversationId ? 'true' : false,
            dataset: { id: c.id },
            on: { click: () => void openConversation(c.id, c.title) },
          },
          h('span', { class: 'conv-title' }, c.title || 'Untitled'),
          h('span', { class: 'conv-time' }, relativeTime(c.updated_at, now)),
        ),
      ),
    ),
  );
}

function markCurrentConversation(): void {
  el.convList.querySelectorAll<HTMLButtonElement>('.conv-item').forEach((b) => {
    if (b.dataset.id === state.conversationId) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
  });
}

function clearMessages(): void {
  for (const child of Array.from(el.messages.children)) if (child !== el.emptyHint) child.remove();
  el.emptyHint.hidden = false;
}

function startNewConversation(): void {
  state.streaming?.abort();
  state.conversationId = null;
  el.chatTitle.textContent = 'New conversation';
  clearMessages();
  clearStatus(el.status);
  markCurrentConversation();
  closeSidebar();
}

async function openConversation(id: string, title: string | null): Promise<void> {
  if (!state.key) return;
  state.streaming?.abort();
  closeSidebar();
  clearStatus(el.status);
  try {
    const body = await apiJson<{ conversation: { id: string; title: string | null }; messages: ConversationMessage[] }>(
      state.key,
      `/v1/conversations/${encodeURIComponent(id)}/messages`,
    );
    state.conversationId = body.conversation.id;
    el.chatTitle.textContent = body.conversation.title || title || 'Conversation';
    clearMessages();
    for (const m of body.messages) {
      if (m.role === 'user') addUserMessage(m.content);
      else {
        const view = addAssistantMessage();
        view.finish({ answer: m.content, citations: m.citations, responseId: m.response_id, meta: m.model ? `${m.model.backend} · ${m.model.id}` : '', rating: m.rating, correction: m.correction });
      }
    }
    markCurrentConversation();
    closeSidebar();
    el.input.focus();
    scrollToEnd(true);
  } catch (err) {
    reportError(err, el.status);
  }
}

// ---------------------------------------------------------------- messages

function nearBottom(): boolean {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < STICK_TO_BOTTOM_PX;
}

function scrollToEnd(force = false): void {
  if (force || nearBottom()) el.messages.scrollTop = el.messages.scrollHeight;
}

function addUserMessage(text: string): void {
  el.emptyHint.hidden = true;
  el.messages.append(h('article', { class: 'msg msg-user', 'aria-label': 'You asked' }, h('div', { class: 'msg-body' }, text)));
  scrollToEnd(true);
}

interface FinishedAnswer {
  answer: string;
  citations: Citation[];
  responseId: string | null;
  meta: string;
  rating?: 1 | -1 | null;
  correction?: string | null;
}

interface AssistantView {
  appendToken(text: string): void;
  finish(a: FinishedAnswer): void;
  fail(message: string): void;
}

/**
 * An assistant message: streams markdown into a live region, re-rendered STREAM_RENDER_INTERVAL_MS
 * after the previous render ended at the earliest (the whole growing text, so a long answer costs one
 * parse per interval, not one per token), then redraws the complete answer with citations.
 */
function addAssistantMessage(): AssistantView {
  el.emptyHint.hidden = true;
  const body = h('div', { class: 'msg-body answer', 'aria-live': 'polite', 'aria-busy': 'true' });
  body.append(h('span', { class: 'typing', 'aria-hidden': 'true' }));
  const article = h('article', { class: 'msg msg-assistant', 'aria-label': 'Answer' }, body);
  el.messages.append(article);
  scrollToEnd(true);
  let streamed = '';
  let timer: ReturnType<typeof setTimeout> | undefined;
  let renderedAt = 0;
  const renderStreamed = () => {
    clearTimeout(timer);
    timer = undefined;
    replaceChildren(body, renderMarkdown(streamed));
    scrollToEnd();
    renderedAt = performance.now();
  };
  return {
    appendToken(text) {
      streamed += text;
      if (timer === undefined) timer = setTimeout(renderStreamed, Math.max(0, renderedAt + STREAM_RENDER_INTERVAL_MS - performance.now()));
    },
    finish(a) {
      clearTimeout(timer);
      renderAnswer(article, body, a);
      body.setAttribute('aria-busy', 'false');
      scrollToEnd();
    },
    fail(message) {
      if (streamed) renderStreamed();
      else body.querySelector('.typing')?.remove();
      body.setAttribute('aria-busy', 'false');
      article.classList.add('msg-failed');
      append(body, h('p', { class: 'error', role: 'alert' }, message));
    },
  };
}

function renderAnswer(article: HTMLElement, body: HTMLElement, a: FinishedAnswer): void {
  const known = new Map(a.citations.map((c) => [c.n, c]));
  const detailId = nextId('cite-detail');
  const detail = h('div', { class: 'cite-detail', id: detailId, role: 'region', 'aria-label': 'Source details', hidden: true });
  const citeButtons: HTMLButtonElement[] = [];
  let openN: number | null = null;

  const show = (n: number | null) => {
    openN = n;
    for (const b of citeButtons) b.setAttribute('aria-expanded', String(Number(b.dataset.n) === n));
    const c = n === null ? undefined : known.get(n);
    if (!c) {
      detail.hidden = true;
      return;
    }
    replaceChildren(
      detail,
      h('div', { class: 'cite-head' }, h('span', { class: 'cite-num', 'aria-hidden': 'true' }, String(c.n)), h('strong', { class: 'cite-title' }, c.title || 'Untitled document')),
      h('p', { class: 'cite-source' }, h('span', { class: 'visually-hidden' }, 'Source path: '), h('code', {}, c.source), typeof c.page === 'number' ? ` · p. ${c.page}` : ''),
      h('blockquote', { class: 'cite-snippet' }, c.snippet),
      // A coarse label, never the raw fusion score (meaningless to a person); old messages have none.
      h('p', { class: 'cite-score' }, c.relevance ? `Source [${c.n}] · ${c.relevance} relevance` : `Source [${c.n}]`),
    );
    detail.hidden = false;
  };
  const citeButton = (c: Citation, cls: string, ...label: Child[]) => {
    const b = h(
      'button',
      {
        type: 'button',
        class: cls,
        'aria-expanded': 'false',
        'aria-controls': detailId,
        'aria-label': `Source ${c.n}: ${c.title || 'untitled document'}`,
        dataset: { n: String(c.n) },
        on: { click: () => show(openN === c.n ? null : c.n) },
      },
      ...label,
    );
    citeButtons.push(b);
    return b;
  };

  // Markdown, sanitized; then [n] markers in its text (not in code or links) become citation buttons.
  replaceChildren(body, renderMarkdown(a.answer, { known: new Set(known.keys()), cite: (n) => citeButton(known.get(n) as Citation, 'cite', String(n)) }));
  const sources =
    a.citations.length > 0
      ? h(
          'div',
          { class: 'sources' },
          h('span', { class: 'sources-label' }, 'Sources'),
          h(
            'ul',
            {},
            ...a.citations.map((c) =>
              h(
                'li',
                {},
                citeButton(c, 'source-chip', h('span', { class: 'chip-num' }, String(c.n)), h('span', { class: 'chip-title' }, `${c.title || baseName(c.source)}${typeof c.page === 'number' ? ` · p. ${c.page}` : ''}`)),
              ),
            ),
          ),
        )
      : null;
  const meta = h('p', { class: 'msg-meta' }, a.meta);
  article.append(...[sources, detail, meta, a.responseId ? feedbackControls(a.responseId, a.rating ?? null, a.correction ?? null) : null].filter((x): x is HTMLElement => x !== null));
}

function baseName(p: string): string {
  const parts = p.split(/[\\/]/);
  return parts[parts.length - 1] || p;
}

/** Thumb icons (Feather icons, MIT license): drawn, so they do not depend on an emoji font. */
const THUMB_UP_PATH = 'M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3';
const THUMB_DOWN_PATH = 'M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17';

function thumbIcon(d: string): SVGSVGElement {
  return svg(
    'svg',
    { viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': 2, 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true', focusable: 'false' },
    svg('path', { d }),
  );
}

function feedbackControls(responseId: string, rating: 1 | -1 | null, correction: string | null): HTMLElement {
  const status = h('span', { class: 'fb-status', role: 'status' });
  const up = h('button', { type: 'button', class: 'fb-btn', 'aria-pressed': String(rating === 1), 'aria-label': 'Good answer', title: 'Good answer' }, thumbIcon(THUMB_UP_PATH));
  const down = h('button', { type: 'button', class: 'fb-btn', 'aria-pressed': String(rating === -1), 'aria-label': 'Bad answer', title: 'Bad answer' }, thumbIcon(THUMB_DOWN_PATH));
  const textareaId = nextId('correction');
  const textarea = h('textarea', { id: textareaId, rows: 3, class: 'correction-input' });
  textarea.value = correction ?? '';
  const form = h(
    'form',
    { class: 'correction', hidden: rating !== -1 },
    h('label', { for: textareaId }, 'What should the answer have said? (optional)'),
    textarea,
    h('button', { type: 'submit', class: 'btn btn-small' }, 'Send correction'),
  );
  const rate = async (value: 1 | -1, text?: string) => {
    if (!state.key) return;
    clearStatus(status);
    try {
      await apiJson(state.key, '/v1/feedback', { body: { response_id: responseId, rating: value, ...(text ? { correction: text } : {}) } });
      up.setAttribute('aria-pressed', String(value === 1));
      down.setAttribute('aria-pressed', String(value === -1));
      form.hidden = value !== -1;
      status.textContent = text ? 'Thanks, your correction was saved.' : value === 1 ? 'Thanks for the feedback.' : 'Thanks. You can add a correction below.';
      if (value === -1 && !text) textarea.focus();
    } catch (err) {
      reportError(err, status);
    }
  };
  up.addEventListener('click', () => void rate(1));
  down.addEventListener('click', () => void rate(-1));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = textarea.value.trim();
    if (!text) {
      status.textContent = 'Write a correction first. Your thumbs-down is already saved.';
      return;
    }
    void rate(-1, text);
  });
  return h('div', { class: 'feedback' }, h('span', { class: 'fb-label' }, 'Was this helpful?'), up, down, status, form);
}

// ---------------------------------------------------------------- collection picker

function storedChoice(): string | null {
  try {
    return state.user === null ? null : localStorage.getItem(COLLECTION_CHOICE_PREFIX + state.user);
  } catch {
    return null;
  }
}

function storeChoice(name: string): void {
  try {
    if (state.user === null) return;
    if (name === '') localStorage.removeItem(COLLECTION_CHOICE_PREFIX + state.user);
    else localStorage.setItem(COLLECTION_CHOICE_PREFIX + state.user, name);
  } catch {
    // Storage disabled: the choice lasts for this page only.
  }
}

/** The picker's option label for a collection (pure). */
function collectionLabel(c: CollectionRow): string {
  const docs = `${c.documents} ${c.documents === 1 ? 'document' : 'documents'}`;
  return c.visibility === 'private' ? `${c.name} (${docs}, private)` : `${c.name} (${docs})`;
}

/**
 * Fills the picker from GET /v1/collections (only readable collections come back) and selects the
 * remembered choice when it is still listed, else "All readable collections" (a revoked collection
 * disappears from the picker and from the question's scope).
 */
async function loadCollections(): Promise<void> {
  const key = state.key;
  if (!key) return;
  try {
    const { data } = await apiJson<{ data: CollectionRow[] }>(key, '/v1/collections');
    state.collections = data;
    const current = el.picker.value || storedChoice();
    replaceChildren(el.picker, h('option', { value: '' }, 'All readable collections'), ...data.map((c) => h('option', { value: c.name }, collectionLabel(c))));
    el.picker.value = current && data.some((c) => c.name === current) ? current : '';
  } catch (err) {
    reportError(err, el.status);
  }
}

/** The collection uploads default to: the picked one when the user may write it. */
function uploadTarget(): string | null {
  const picked = state.collections.find((c) => c.name === el.picker.value);
  return picked && (picked.writable || signedInAdmin) ? picked.name : null;
}

// ---------------------------------------------------------------- asking

function setStreaming(controller: AbortController | null): void {
  state.streaming = controller;
  el.send.textContent = controller ? 'Stop' : 'Send';
  el.send.classList.toggle('btn-stop', controller !== null);
  el.composer.setAttribute('aria-busy', String(controller !== null));
}

async function ask(question: string): Promise<void> {
  const key = state.key;
  if (!key) return;
  clearStatus(el.status);
  addUserMessage(question);
  const view = addAssistantMessage();
  const controller = new AbortController();
  setStreaming(controller);
  el.status.textContent = 'Answering…';
  const started = performance.now();
  try {
    const answer: ChatAnswer = await streamChat(
      key,
      { message: question, ...(state.conversationId ? { conversation_id: state.conversationId } : {}), ...(el.picker.value ? { collection: el.picker.value } : {}) },
      { signal: controller.signal, onToken: (t) => view.appendToken(t) },
    );
    const isNew = state.conversationId !== answer.conversation_id;
    state.conversationId = answer.conversation_id;
    view.finish({
      answer: answer.answer,
      citations: answer.citations,
      responseId: answer.id,
      meta: `${answer.model.backend} · ${answer.model.id} · ${formatMs(answer.timings.total_ms)}`,
    });
    el.status.textContent = `Answered in ${formatMs(performance.now() - started)}.`;
    if (isNew) el.chatTitle.textContent = question.slice(0, 80);
    void loadConversations();
  } catch (err) {
    if (isAuthError(err)) {
      reportError(err, el.status);
      return;
    }
    const stopped = controller.signal.aborted;
    // The picked collection is gone or no longer readable: refresh the picker (back to "all").
    if (err instanceof ApiError && err.code === 'collection_not_found') void loadCollections();
    view.fail(stopped ? 'Stopped.' : describeError(err));
    if (stopped) clearStatus(el.status);
    else reportError(err, el.status);
  } finally {
    if (state.streaming === controller) setStreaming(null);
  }
}

// ---------------------------------------------------------------- features panel

async function openFeatures(): Promise<void> {
  if (!state.key) return;
  el.eraseConfirmBox.hidden = true;
  el.erase.hidden = false;
  el.eraseStatus.textContent = '';
  replaceChildren(el.featuresBody, h('p', { class: 'muted' }, 'Loading…'));
  el.dialog.showModal();
  try {
    const me = await apiJson<MeFeatures>(state.key, '/v1/me/features');
    renderFeatures(me.features);
  } catch (err) {
    if (isAuthError(err)) reportError(err, el.status);
    else replaceChildren(el.featuresBody, h('p', { class: 'error' }, describeError(err)));
  }
}

function renderFeatures(features: Record<string, unknown>): void {
  const names = Object.keys(features);
  if (names.length === 0) {
    replaceChildren(el.featuresBody, h('p', {}, 'Nothing yet. mneme computes these from your questions and ratings every few minutes; ask a few questions and look again.'));
    return;
  }
  const defs = new Map<string, { description: string }>(FEATURE_CATALOG.map((d) => [d.name, d]));
  // Registry order first (it groups related values), then anything the registry does not know.
  const ordered = [...FEATURE_CATALOG.map((d) => d.name).filter((n) => n in features), ...names.filter((n) => !defs.has(n)).sort()];
  replaceChildren(
    el.featuresBody,
    h(
      'dl',
      { class: 'features' },
      ...ordered.flatMap((name) => [
        h('dt', {}, humanize(name), h('code', { class: 'feature-name' }, name)),
        h('dd', {}, h('span', { class: 'feature-value' }, formatFeatureValue(name, features[name])), defs.get(name) ? h('span', { class: 'feature-desc' }, defs.get(name)?.description ?? '') : null),
      ]),
    ),
  );
}

async function eraseMyData(): Promise<void> {
  if (!state.key) return;
  el.eraseConfirm.disabled = true;
  try {
    await apiJson(state.key, '/v1/me', { method: 'DELETE' });
    showSignIn('');
    el.signinError.textContent = 'Your data was erased and your API key deleted. You are signed out.';
    el.keyInput.setAttribute('aria-invalid', 'false');
  } catch (err) {
    if (isAuthError(err)) reportError(err, el.status);
    else el.eraseStatus.textContent = describeError(err);
  } finally {
    el.eraseConfirm.disabled = false;
  }
}

// ---------------------------------------------------------------- layout

function closeSidebar(): void {
  el.sidebar.classList.remove('open');
  el.toggleSidebar.setAttribute('aria-expanded', 'false');
}

// ---------------------------------------------------------------- wiring

el.signinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const key = el.keyInput.value.trim();
  if (!key) {
    el.signinError.textContent = 'Enter your API key.';
    el.keyInput.setAttribute('aria-invalid', 'true');
    el.keyInput.focus();
    return;
  }
  void signIn(key, false);
});

el.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  if (state.streaming) {
    state.streaming.abort();
    return;
  }
  const q = el.input.value.trim();
  if (!q) {
    el.status.textContent = 'Type a question first.';
    el.input.focus();
    return;
  }
  el.input.value = '';
  void ask(q);
});

el.input.addEventListener('keydown', (e) => {
  // Enter sends; Shift+Enter is a new line; never while an IME composes a character.
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !state.streaming) {
    e.preventDefault();
    el.composer.requestSubmit();
  }
});

el.newButton.addEventListener('click', () => {
  startNewConversation();
  el.input.focus();
});
el.toggleSidebar.addEventListener('click', () => {
  const open = !el.sidebar.classList.contains('open');
  el.sidebar.classList.toggle('open', open);
  el.toggleSidebar.setAttribute('aria-expanded', String(open));
  if (open) el.newButton.focus();
});
el.signoutButton.addEventListener('click', () => showSignIn(''));
el.featuresButton.addEventListener('click', () => void openFeatures());
el.dialogClose.addEventListener('click', () => el.dialog.close());
el.dialog.addEventListener('close', () => el.featuresButton.focus());
el.erase.addEventListener('click', () => {
  el.eraseConfirmBox.hidden = false;
  el.erase.hidden = true;
  el.eraseCancel.focus();
});
el.eraseCancel.addEventListener('click', () => {
  el.eraseConfirmBox.hidden = true;
  el.erase.hidden = false;
  el.erase.focus();
});
el.eraseConfirm.addEventListener('click', () => void eraseMyData());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && el.sidebar.classList.contains('open')) {
    closeSidebar();
    el.toggleSidebar.focus();
  }
});

// The documents panel (upload, browse, delete): its own module and dialog.
let signedInAdmin = false;
mountDocumentsPanel(el.sessionNav, { key: () => state.key, isAdmin: () => signedInAdmin, uploadCollection: uploadTarget, onUploaded: () => void loadCollections() });
el.picker.addEventListener('change', () => storeChoice(el.picker.value));

// Start: resume the tab's session if its key still works.
const stored = loadKey('chat');
if (stored) {
  el.signinView.hidden = true;
  void signIn(stored, true);
} else {
  showSignIn('');
}

// Marks that the bundle ran (the end-to-end test waits for it).
document.documentElement.dataset.ready = 'chat';
