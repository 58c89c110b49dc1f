/**
 * The releases panel of /admin (issue 15): what is live, the candidate and its share, the green
 * button (promote the candidate, behind the regression gate; "force" overrides it and is audited),
 * the red button (roll back to the previous live release), the per-arm metrics with the
 * significance test, the data monitoring per day and release, and the latest audit rows.
 * All server text goes in as text nodes.
 */
import type { DayStats, ReleaseReport } from '../chat/release-metrics.ts';
import { ApiError, apiJson, describeError } from './api.ts';
import { h, replaceChildren } from './dom.ts';
import { formatMs, formatNumber, formatPct } from './format.ts';

/** Audit rows shown. */
const EVENTS_SHOWN = 6;

interface ReleaseItem {
  name: string;
  version: number;
  state: 'live' | 'candidate' | 'previous' | 'draft' | 'retired';
  share: number | null;
  created_at: string;
  created_by: string;
  parts: { prompt: { name: string; sha256: string }; llm: { spec: string; model: string | null }; retrieval: { mode: string; top_k: number } };
}

interface ReleaseEvent {
  id: number;
  at: string;
  actor: string;
  action: string;
  from: string | null;
  to: string | null;
  reason: string | null;
  forced: boolean;
}

interface ReleasesBody {
  releases: ReleaseItem[];
  events: ReleaseEvent[];
}

export interface ReleasesPanel {
  /** Reloads everything (after a change, or on the page's refresh). */
  refresh(): Promise<void>;
}

/** Builds the panel inside `root`; `key()` is the signed-in admin key (null when signed out). */
export function releasesPanel(root: HTMLElement, key: () => string | null): ReleasesPanel {
  const status = h('p', { id: 'release-status', class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const error = h('p', { id: 'release-error', class: 'error', role: 'alert' });
  const reason = h('input', { id: 'release-reason', type: 'text', maxlength: '500', placeholder: 'why (kept in the audit log)', 'aria-label': 'Reason for the change' });
  const force = h('input', { id: 'release-force', type: 'checkbox' });
  const promote = h('button', { type: 'button', id: 'btn-promote', class: 'btn btn-go' }, 'Promote candidate');
  const rollback = h('button', { type: 'button', id: 'btn-rollback', class: 'btn btn-danger' }, 'Roll back');
  const summary = h('div', { id: 'release-summary', class: 'release-summary' });
  const arms = h('div', { id: 'release-arms', class: 'table-wrap' });
  const monitoring = h('div', { id: 'release-monitoring', class: 'table-wrap' });
  const events = h('ul', { id: 'release-events', class: 'release-events small' });
  replaceChildren(
    root,
    summary,
    h('div', { class: 'release-actions' }, promote, rollback, reason, h('label', { class: 'inline-field', for: 'release-force' }, force, ' force past the regression gate')),
    status,
    error,
    h('h3', {}, 'Arms'),
    arms,
    h('h3', {}, 'Retrieval data by day'),
    monitoring,
    h('h3', {}, 'Changes'),
    events,
  );

  const act = async (path: string, body: Record<string, unknown>, done: string) => {
    const k = key();
    if (!k) return;
    promote.disabled = true;
    rollback.disabled = true;
    error.textContent = '';
    try {
      await apiJson(k, path, { method: 'POST', body: { ...body, ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) } });
      status.textContent = done;
      reason.value = '';
      force.checked = false;
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 409 ? `${describeError(err)}` : describeError(err);
    }
    await refresh();
  };
  promote.addEventListener('click', () => void act('/v1/admin/releases/promote', { force: force.checked }, 'Promoted: the candidate is live.'));
  rollback.addEventListener('click', () => void act('/v1/admin/releases/rollback', {}, 'Rolled back: the previous release is live again.'));

  async function refresh(): Promise<void> {
    const k = key();
    if (!k) return;
    try {
      const [body, report, mon] = await Promise.all([
        apiJson<ReleasesBody>(k, '/v1/admin/releases'),
        apiJson<ReleaseReport>(k, '/v1/admin/releases/report'),
        apiJson<{ days: DayStats[] }>(k, '/v1/admin/releases/monitoring'),
      ]);
      renderSummary(body.releases);
      renderArms(report);
      renderMonitoring(mon.days);
      replaceChildren(events, ...body.events.slice(0, EVENTS_SHOWN).map(eventLine));
    } catch (err) {
      error.textContent = describeError(err);
    }
  }

  function renderSummary(all: ReleaseItem[]): void {
    const by = (s: ReleaseItem['state']) => all.find((r) => r.state === s) ?? null;
    const live = by('live');
    const cand = by('candidate');
    const prev = by('previous');
    const describe = (r: ReleaseItem | null) => (r ? `${r.name} (v${r.version}) · ${r.parts.llm.spec} · ${r.parts.retrieval.mode}, top ${r.parts.retrieval.top_k} · prompt ${r.parts.prompt.sha256.slice(0, 8)}` : 'none');
    replaceChildren(
      summary,
      h('p', {}, h('strong', {}, 'Live: '), h('span', { id: 'release-live' }, live?.name ?? 'none'), h('span', { class: 'muted small' }, ` — ${describe(live)}`)),
      h('p', {}, h('strong', {}, 'Candidate: '), h('span', { id: 'release-candidate' }, cand ? `${cand.name} for ${cand.share ?? 0}% of users` : 'none')),
      h('p', {}, h('strong', {}, 'Previous: '), h('span', { id: 'release-previous' }, prev?.name ?? 'none')),
    );
    promote.disabled = cand === null;
    promote.title = cand ? `make ${cand.name} live for everyone` : 'no candidate (start one with `mneme releases canary NAME --share PCT`)';
    rollback.disabled = prev === null;
    rollback.title = prev ? `make ${prev.name} live again` : 'no previous release to go back to';
  }

  function renderArms(rep: ReleaseReport): void {
    const ci = (c: [number, number] | null) => (c ? ` (${formatPct(c[0])}–${formatPct(c[1])})` : '');
    const head = ['Release', 'Arm', 'Answers', 'Thumbs-up rate (95 % CI)', 'Thumbs-down rate', 'Corrected', 'No citation', 'Errors', 'p50', 'p99', 'First token', 'Tokens', 'Citations'];
    const rows = rep.arms.map((a) =>
      h(
        'tr',
        {},
        h('td', {}, a.release),
        h('td', {}, a.arm),
        h('td', {}, formatNumber(a.answers)),
        h('td', {}, `${formatPct(a.up_rate)}${ci(a.up_rate_ci)}`),
        h('td', {}, `${formatPct(a.down_rate)}${ci(a.down_rate_ci)}`),
        h('td', {}, formatPct(a.correction_rate)),
        h('td', {}, formatPct(a.abstention_rate)),
        h('td', {}, `${formatNumber(a.errors)} (${formatPct(a.error_rate)})`),
        h('td', {}, formatMs(a.p50_ms)),
        h('td', {}, formatMs(a.p99_ms)),
        h('td', {}, formatMs(a.first_token_p50_ms)),
        h('td', {}, formatNumber(a.tokens_per_answer, 1)),
        h('td', {}, formatNumber(a.citations_per_answer, 2)),
      ),
    );
    replaceChildren(
      arms,
      h('table', { class: 'data-table' }, h('thead', {}, h('tr', {}, ...head.map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, ...rows)),
      h('p', { id: 'release-decision', class: rep.test.decision === 'not_enough_data' ? 'muted' : '' }, `${rep.test.message}. `, h('span', { class: 'muted small' }, `Method: ${rep.test.method}; since ${rep.from}.`)),
    );
  }

  function renderMonitoring(days: DayStats[]): void {
    if (days.length === 0) {
      replaceChildren(monitoring, h('p', { class: 'muted' }, 'No questions in the last 7 days.'));
      return;
    }
    const head = ['Day', 'Release', 'Questions', 'Top score p10 / p50 / p90', 'Not in corpus vocabulary', 'Shift vs previous 7 days'];
    const score = (v: number | null) => (v === null ? '—' : v.toFixed(4));
    replaceChildren(
      monitoring,
      h(
        'table',
        { class: 'data-table' },
        h('thead', {}, h('tr', {}, ...head.map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          ...days.map((d) =>
            h(
              'tr',
              { class: d.shift?.flagged ? 'row-flagged' : '' },
              h('td', {}, d.day),
              h('td', {}, d.release),
              h('td', {}, formatNumber(d.questions)),
              h('td', {}, `${score(d.top_score.p10)} / ${score(d.top_score.p50)} / ${score(d.top_score.p90)}`),
              h('td', {}, formatPct(d.oov_share)),
              h('td', {}, d.shift === null ? 'no baseline yet' : d.shift.flagged ? `⚠ ${d.shift.reasons.join('; ')}` : 'none'),
            ),
          ),
        ),
      ),
    );
  }

  return { refresh };
}

function eventLine(e: ReleaseEvent): HTMLElement {
  const what = e.action === 'create' ? `created ${e.to}` : `${e.action}: ${e.from ?? '—'} → ${e.to ?? '—'}`;
  return h('li', {}, `${new Date(e.at).toLocaleString()} · ${e.actor} · ${what}${e.forced ? ' (forced past the gate)' : ''}${e.reason ? ` — “${e.reason}”` : ''}`);
}
