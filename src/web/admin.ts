/**
 * The monitoring page (/admin). Signs in with an admin key (sessionStorage only) and draws the
 * admin JSON endpoints (docs/admin-api.md): key figures, traffic and per-stage latency, feedback and
 * the retrieval score band (a drift signal), the latest thumbs-down answers and the corpus status.
 * Refreshes every REFRESH_MS while the tab is visible. All server text goes in as text nodes.
 */
import type { BucketStats, CorpusStatus, OverviewBody, ThumbsDownItem, TimeseriesBody } from '../chat/http/routes/admin.ts';
import { releasesPanel } from './admin-releases.ts';
import { peoplePanel } from './admin-people.ts';
import { collectionsPanel } from './admin-collections.ts';
import { ApiError, apiJson, describeError, isAuthError, loadKey, saveKey } from './api.ts';
import { timeChart } from './charts.ts';
import type { Series } from './charts.ts';
import { byId, h, replaceChildren } from './dom.ts';
import { clock, clockSeconds, formatMs, formatNumber, formatPct, relativeTime } from './format.ts';

/** Auto-refresh period, in ms. */
const REFRESH_MS = 10_000;
/** Queue-depth samples kept for the live sparkline (one per refresh). */
const QUEUE_SAMPLES = 60;
/** Thumbs-down answers listed. */
const THUMBS_DOWN_SHOWN = 10;

/** Chart colors: each has ≥ 3:1 contrast on white (WCAG non-text contrast); text uses darker ones. */
const COLORS = {
  blue: '#1d5fbf',
  red: '#b42318',
  grey: '#6b7280',
  green: '#1a7f37',
  amber: '#b54708',
  purple: '#6941c6',
} as const;

const el = {
  signinView: byId('signin-view'),
  signinForm: byId<HTMLFormElement>('signin-form'),
  keyInput: byId<HTMLInputElement>('key-input'),
  signinError: byId('signin-error'),
  signinButton: byId<HTMLButtonElement>('btn-signin'),
  sessionNav: byId('session-nav'),
  dashboard: byId('dashboard'),
  windowSelect: byId<HTMLSelectElement>('window-select'),
  autoRefresh: byId<HTMLInputElement>('auto-refresh'),
  refresh: byId<HTMLButtonElement>('btn-refresh'),
  signout: byId<HTMLButtonElement>('btn-signout'),
  updated: byId('updated'),
  error: byId('dash-error'),
  tiles: byId('tiles'),
  chartsTraffic: byId('charts-traffic'),
  chartsQuality: byId('charts-quality'),
  thumbsDown: byId('thumbs-down'),
  corpus: byId('corpus'),
};

/** Releases: live/candidate, the promote and rollback buttons, per-arm metrics, data monitoring. */
const releases = releasesPanel(byId('releases'), () => state.key);
/** People: users and their named API keys (create, rotate, revoke, delete). */
const people = peoplePanel(byId('people'), () => state.key);
/** Collections: visibility, counts, grants (create, grant, revoke). */
const collections = collectionsPanel(byId('collections'), () => state.key);

const state = {
  key: null as string | null,
  timer: null as ReturnType<typeof setInterval> | null,
  loading: false,
  queueSamples: [] as Array<{ t: string; depth: number; active: number | null }>,
};

// ---------------------------------------------------------------- session

function showSignIn(message: string): void {
  stopTimer();
  state.key = null;
  saveKey('admin', null);
  el.dashboard.hidden = true;
  el.sessionNav.hidden = true;
  el.signinView.hidden = false;
  el.signinError.textContent = message;
  el.keyInput.value = '';
  el.keyInput.setAttribute('aria-invalid', message ? 'true' : 'false');
  el.keyInput.focus();
}

async function signIn(key: string, fromStorage: boolean): Promise<void> {
  el.signinButton.disabled = true;
  try {
    // The overview needs an admin key: 401 = bad key, 403 = a user key.
    await apiJson<OverviewBody>(key, '/v1/admin/overview');
    state.key = key;
    saveKey('admin', key);
    el.signinView.hidden = true;
    el.sessionNav.hidden = false;
    el.dashboard.hidden = false;
    el.dashboard.focus();
    await refresh();
    startTimer();
  } catch (err) {
    saveKey('admin', null);
    el.signinView.hidden = false;
    el.signinError.textContent =
      isAuthError(err) && fromStorage
        ? 'Your session has ended: this API key is no longer valid (expired, revoked or deleted). Sign in again.'
        : isAuthError(err)
          ? 'This API key was not accepted. Check that you copied it completely; it may also have been revoked.'
          : describeError(err);
    el.keyInput.setAttribute('aria-invalid', 'true');
    el.keyInput.focus();
  } finally {
    el.signinButton.disabled = false;
  }
}

function startTimer(): void {
  stopTimer();
  if (el.autoRefresh.checked) {
    state.timer = setInterval(() => {
      if (document.visibilityState === 'visible') void refresh();
    }, REFRESH_MS);
  }
}

function stopTimer(): void {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

// ---------------------------------------------------------------- data

async function refresh(): Promise<void> {
  const key = state.key;
  if (!key || state.loading) return;
  state.loading = true;
  el.dashboard.setAttribute('aria-busy', 'true');
  // Loaded beside the rest: a failure there is shown in its own panel.
  void releases.refresh();
  void people.refresh();
  void collections.refresh();
  try {
    const minutes = Number(el.windowSelect.value);
    const [overview, series, thumbs, corpus] = await Promise.all([
      apiJson<OverviewBody>(key, '/v1/admin/overview'),
      apiJson<TimeseriesBody>(key, `/v1/admin/timeseries?minutes=${minutes}`),
      apiJson<{ items: ThumbsDownItem[] }>(key, `/v1/admin/thumbs-down?limit=${THUMBS_DOWN_SHOWN}`),
      apiJson<CorpusStatus>(key, '/v1/admin/corpus'),
    ]);
    if (overview.queue) {
      state.queueSamples.push({ t: overview.now, depth: overview.queue.depth, active: overview.queue.active });
      if (state.queueSamples.length > QUEUE_SAMPLES) state.queueSamples.shift();
    }
    el.error.textContent = '';
    renderTiles(overview, series);
    renderCharts(series);
    renderThumbsDown(thumbs.items);
    renderCorpus(corpus);
    el.updated.textContent = `Updated ${new Date(overview.now).toLocaleTimeString()}${series.truncated ? ' · window truncated to the newest answers' : ''}`;
  } catch (err) {
    if (isAuthError(err)) showSignIn('Your session has ended: this API key is no longer valid (expired, revoked or deleted). Sign in again.');
    else if (err instanceof ApiError && err.status === 403) showSignIn(describeError(err));
    else el.error.textContent = describeError(err);
  } finally {
    state.loading = false;
    el.dashboard.setAttribute('aria-busy', 'false');
  }
}

// ---------------------------------------------------------------- tiles

function tile(label: string, value: string, note: string, tone: 'normal' | 'warn' | 'bad' = 'normal'): HTMLElement {
  return h('div', { class: `tile tone-${tone}` }, h('p', { class: 'tile-label' }, label), h('p', { class: 'tile-value' }, value), h('p', { class: 'tile-note' }, note));
}

function renderTiles(o: OverviewBody, ts: TimeseriesBody): void {
  const s = ts.summary;
  const windowLabel = el.windowSelect.selectedOptions[0]?.textContent ?? '';
  const errTone = s.error_rate === null ? 'normal' : s.error_rate >= 0.05 ? 'bad' : s.error_rate > 0 ? 'warn' : 'normal';
  const downTone = s.thumbs_down_share === null ? 'normal' : s.thumbs_down_share >= 0.5 ? 'bad' : s.thumbs_down_share >= 0.25 ? 'warn' : 'normal';
  replaceChildren(
    el.tiles,
    tile('Requests / min', formatNumber(o.recent.requests_per_minute, 1), `last ${o.recent.minutes} min · ${formatNumber(s.requests)} in ${windowLabel}`),
    tile('Error rate', formatPct(s.error_rate), `${formatNumber(s.errors)} errors, ${formatNumber(s.cancelled)} cancelled`, errTone),
    tile('Latency p50', formatMs(s.latency_ms.total.p50), `p99 ${formatMs(s.latency_ms.total.p99)} · whole answer`),
    tile(
      'Generation queue',
      o.queue ? `${formatNumber(o.queue.depth)} waiting` : '—',
      o.queue ? `${formatNumber(o.queue.active ?? 0)} generating now` : 'not reported by this server',
      o.queue && o.queue.depth > 0 ? 'warn' : 'normal',
    ),
    tile('Feedback rate', formatPct(s.feedback_rate), `${formatNumber(s.rated_answers)} of ${formatNumber(s.answers)} answers rated`),
    tile('Thumbs-down share', formatPct(s.thumbs_down_share), `${formatNumber(s.thumbs_down)} of ${formatNumber(s.feedback)} ratings`, downTone),
    tile('Chat model', o.model ? o.model.state : '—', o.model ? `${o.model.backend} · ${o.model.id}` : '', o.model && o.model.state !== 'ready' ? 'bad' : 'normal'),
  );
}

// ---------------------------------------------------------------- charts

function lastValue(values: ReadonlyArray<number | null>): number | null {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i] ?? null;
  return null;
}

function renderCharts(ts: TimeseriesBody): void {
  const b = ts.buckets;
  const times = b.map((x) => x.t);
  const perMin = (v: number) => v / ts.bucket_minutes;
  const fmtTime = ts.bucket_minutes >= 60 ? (iso: string) => `${new Date(iso).getDate()}/${clock(iso)}` : clock;
  const okPerMin = b.map((x) => perMin(x.requests - x.errors - x.cancelled));
  const errPerMin = b.map((x) => perMin(x.errors));
  const cancelPerMin = b.map((x) => perMin(x.cancelled));
  const total = b.reduce((n, x) => n + x.requests, 0);

  const latency = (stage: keyof BucketStats['latency_ms'], title: string) => {
    const p50 = b.map((x) => x.latency_ms[stage].p50);
    const p99 = b.map((x) => x.latency_ms[stage].p99);
    return timeChart({
      title,
      times,
      formatTime: fmtTime,
      format: (v) => formatMs(v),
      minMax: 1,
      series: [
        { name: 'p50', values: p50, color: COLORS.blue, kind: 'line' },
        { name: 'p99', values: p99, color: COLORS.amber, kind: 'line', dashed: true },
      ],
      summary: `Window p50 ${formatMs(ts.summary.latency_ms[stage].p50)}, p99 ${formatMs(ts.summary.latency_ms[stage].p99)}.`,
    });
  };

  replaceChildren(
    el.chartsTraffic,
    timeChart({
      title: 'Requests per minute',
      times,
      formatTime: fmtTime,
      format: (v) => formatNumber(v, 1),
      minMax: 1,
      // Per-minute buckets hold whole requests; wider buckets average to fractions.
      integer: ts.bucket_minutes === 1,
      series: [
        { name: 'answered', values: okPerMin, color: COLORS.blue, kind: 'bar', stack: 'req' },
        { name: 'errors', values: errPerMin, color: COLORS.red, kind: 'bar', stack: 'req' },
        { name: 'cancelled', values: cancelPerMin, color: COLORS.grey, kind: 'bar', stack: 'req' },
      ],
      summary: `${total} requests in the window, ${ts.summary.errors} errors (${formatPct(ts.summary.error_rate)}).`,
    }),
    latency('features', 'Features latency'),
    latency('retrieval', 'Retrieval latency'),
    latency('first_token', 'Time to first token (from the start of generation, queue wait included)'),
    latency('generation', 'Generation latency (queue wait included)'),
    queueChart(),
  );

  const up = b.map((x) => x.feedback - x.thumbs_down);
  const down = b.map((x) => x.thumbs_down);
  const share = b.map((x) => x.thumbs_down_share);
  const feedbackSeries: Series[] = [
    { name: 'thumbs up', values: up, color: COLORS.green, kind: 'bar', stack: 'fb' },
    { name: 'thumbs down', values: down, color: COLORS.red, kind: 'bar', stack: 'fb' },
    { name: 'thumbs-down share', values: share, color: COLORS.purple, kind: 'line', axis: 'right' },
  ];
  replaceChildren(
    el.chartsQuality,
    timeChart({
      title: `Ratings per ${ts.bucket_minutes === 1 ? 'minute' : `${ts.bucket_minutes} minutes`} and thumbs-down share`,
      integer: true,
      times,
      formatTime: fmtTime,
      format: (v) => formatNumber(v, 1),
      formatRight: (v) => formatPct(v),
      minMax: 1,
      series: feedbackSeries,
      summary: `${ts.summary.feedback} ratings, ${formatPct(ts.summary.thumbs_down_share)} thumbs down; latest share ${formatPct(lastValue(share))}.`,
    }),
    timeChart({
      title: 'Retrieval top score (p10–p90 band, median line)',
      times,
      formatTime: fmtTime,
      format: (v) => v.toFixed(3),
      series: [{ name: 'median top score', values: b.map((x) => x.top_score.p50), color: COLORS.blue, kind: 'line' }],
      band: { name: 'p10–p90', lo: b.map((x) => x.top_score.p10), hi: b.map((x) => x.top_score.p90), color: COLORS.blue },
      summary: `Score of the best retrieved passage per question; a falling band means questions the corpus covers less well. Window median ${ts.summary.top_score.p50?.toFixed(4) ?? 'unknown'}; ${ts.summary.no_hits} questions retrieved nothing.`,
    }),
  );
}

function queueChart(): HTMLElement {
  const samples = state.queueSamples;
  if (samples.length === 0) {
    return h('figure', { class: 'chart chart-empty' }, h('figcaption', {}, 'Generation queue'), h('p', { class: 'muted' }, 'This server does not report its queue.'));
  }
  return timeChart({
    title: 'Generation queue (live, since this page opened)',
    times: samples.map((s) => s.t),
    formatTime: clockSeconds,
    format: (v) => formatNumber(v, 0),
    minMax: 2,
    integer: true,
    series: [
      { name: 'waiting', values: samples.map((s) => s.depth), color: COLORS.amber, kind: 'line' },
      { name: 'generating', values: samples.map((s) => s.active), color: COLORS.blue, kind: 'line', dashed: true },
    ],
    summary: `Now ${samples[samples.length - 1]?.depth ?? 0} waiting, ${samples[samples.length - 1]?.active ?? 0} generating.`,
  });
}

// ---------------------------------------------------------------- thumbs down

function renderThumbsDown(items: ThumbsDownItem[]): void {
  if (items.length === 0) {
    replaceChildren(el.thumbsDown, h('p', { class: 'muted card card-pad' }, 'No thumbs-down ratings yet.'));
    return;
  }
  const now = Date.now();
  replaceChildren(
    el.thumbsDown,
    ...items.map((it) =>
      h(
        'article',
        { class: 'card thumbs-item' },
        h('p', { class: 'thumbs-meta' }, `${it.user} · rated ${relativeTime(it.rated_at, now)} · ${it.model.backend} · ${it.model.id}`),
        h('h3', { class: 'thumbs-question' }, it.question),
        it.correction ? h('div', { class: 'thumbs-correction' }, h('span', { class: 'thumbs-label' }, 'Correction'), h('p', {}, it.correction)) : null,
        h(
          'details',
          { class: 'thumbs-answer' },
          h('summary', {}, 'Answer given'),
          h('p', { class: 'pre' }, it.answer ?? '(no answer text)', it.answer_truncated ? ' …' : ''),
        ),
        it.citations.length > 0
          ? h(
              'details',
              { class: 'thumbs-answer' },
              h('summary', {}, `${it.citations.length} citation${it.citations.length === 1 ? '' : 's'}: ${[...new Set(it.citations.map((c) => c.title || 'Untitled'))].join(', ')}`),
              h(
                'ol',
                { class: 'thumbs-citations', 'aria-label': 'Citations' },
                ...it.citations.map((c) =>
                  h('li', { value: c.n }, h('strong', {}, c.title || 'Untitled'), ' ', h('code', {}, c.source), h('p', { class: 'muted small' }, c.snippet)),
                ),
              ),
            )
          : h('p', { class: 'muted small' }, 'No citations.'),
        h('p', { class: 'muted small' }, h('code', {}, it.response_id)),
      ),
    ),
  );
}

// ---------------------------------------------------------------- corpus

function renderCorpus(c: CorpusStatus): void {
  const now = Date.now();
  const row = (k: string, v: string | HTMLElement) => [h('dt', {}, k), h('dd', {}, v)];
  const e = c.embedding;
  const summary = c.last_ingestion.run?.summary;
  const ingestNote = summary
    ? `+${String(summary.documents_added ?? 0)} added, ${String(summary.documents_updated ?? 0)} updated, ${String(summary.documents_deleted ?? 0)} deleted, ${String(summary.documents_failed ?? 0)} failed`
    : '';
  replaceChildren(
    el.corpus,
    h(
      'dl',
      { class: 'kv' },
      ...row('Documents', `${formatNumber(c.documents)}${c.deleted_documents ? ` (+${formatNumber(c.deleted_documents)} deleted)` : ''}`),
      ...row('Chunks', formatNumber(c.chunks)),
      ...row('Collections', c.collections.length ? c.collections.map((x) => `${x.name} (${formatNumber(x.documents)} docs, ${formatNumber(x.chunks)} chunks)`).join(', ') : 'none'),
      ...row('Embedding model', e ? `${e.model_id} · ${e.dimension}-d` : 'none (BM25 only)'),
      ...row('Index generation', e ? `#${e.generation} · ${formatNumber(e.vectors ?? e.embedded_chunks)} vectors${e.file_lags_corpus ? ' · file saves pending' : ''}` : '—'),
      ...(c.building ? row('Building', `#${c.building.generation} · ${c.building.model_id} · ${formatNumber(c.building.embedded_chunks)} embedded`) : []),
      ...row('Last ingestion', c.last_ingestion.at ? `${relativeTime(c.last_ingestion.at, now)}${ingestNote ? ` · ${ingestNote}` : ''}` : 'never'),
      ...row('Corpus version', String(c.corpus_version)),
    ),
  );
}

// ---------------------------------------------------------------- wiring

el.signinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const key = el.keyInput.value.trim();
  if (!key) {
    el.signinError.textContent = 'Enter an admin API key.';
    el.keyInput.focus();
    return;
  }
  void signIn(key, false);
});
el.refresh.addEventListener('click', () => void refresh());
el.windowSelect.addEventListener('change', () => void refresh());
el.autoRefresh.addEventListener('change', () => startTimer());
el.signout.addEventListener('click', () => showSignIn(''));

const stored = loadKey('admin');
if (stored) void signIn(stored, true);
else showSignIn('');

document.documentElement.dataset.ready = 'admin';
