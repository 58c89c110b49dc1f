/** Display formatting for the pages. Pure. */

/** "12 ms", "1.3 s", "—" for null. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

/** 0.1234 → "12.3%", "—" for null. */
export function formatPct(share: number | null | undefined): string {
  if (share === null || share === undefined || !Number.isFinite(share)) return '—';
  const pct = share * 100;
  return `${pct === 0 || pct === 100 || pct >= 10 ? Math.round(pct) : pct.toFixed(1)}%`;
}

/** Thousands separators; up to `decimals` decimals; "—" for null. */
export function formatNumber(n: number | null | undefined, decimals = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { maximumFractionDigits: decimals, minimumFractionDigits: 0 });
}

/** Relative time like "just now", "5 min ago", "3 h ago", "2 d ago"; the ISO date past a week. */
export function relativeTime(iso: string | null | undefined, nowMs: number): string {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return iso;
  const s = Math.round((nowMs - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  if (s < 7 * 86_400) return `${Math.round(s / 86_400)} d ago`;
  return iso.slice(0, 10);
}

/** "14:05" (UTC-independent local clock) for chart axes. */
export function clock(iso: string): string {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** "14:05:09" for live samples taken seconds apart. */
export function clockSeconds(iso: string): string {
  const d = new Date(iso);
  return `${clock(iso)}:${String(d.getSeconds()).padStart(2, '0')}`;
}

/**
 * A feature value as a short human string: vectors are summarized (their numbers mean nothing to a
 * reader), lists joined, rates as percentages, timestamps as dates.
 */
export function formatFeatureValue(name: string, value: unknown): string {
  if (value === null || value === undefined) return 'not known yet';
  if (Array.isArray(value)) {
    if (value.length === 0) return 'none';
    if (name.includes('vector')) return `${value.length}-dimensional summary of your questions' meaning`;
    const shown = value.slice(0, 8).map((v) => (name.includes('document') ? `#${String(v)}` : String(v)));
    return value.length > 8 ? `${shown.join(', ')} and ${value.length - 8} more` : shown.join(', ');
  }
  if (typeof value === 'number') {
    if (name.endsWith('_rate')) return formatPct(value);
    if (name.includes('length')) return `${formatNumber(value, 1)} words`;
    return formatNumber(value, 2);
  }
  if (typeof value === 'string') {
    if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
      const d = new Date(value);
      return Number.isFinite(d.getTime()) ? d.toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' }) : value;
    }
    return value;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k}: ${String(v)}`).join(', ');
  }
  return String(value);
}

/** "features_ms" → "Features", "total_ms" → "Total". */
export function humanize(name: string): string {
  const s = name.replace(/_ms$/, '').replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}
