/**
 * Tiny hand-written SVG time charts: bars, lines and a shaded band on a shared time axis, drawn at
 * the container's real pixel width (redrawn on resize, so labels stay readable on a phone). Each
 * time bucket has an invisible hover/focus target whose <title> lists the bucket's values; the
 * figure's aria-label summarizes the chart for screen readers. The geometry helpers are pure.
 */
import { h, svg } from './dom.ts';

export interface Series {
  name: string;
  values: ReadonlyArray<number | null>;
  color: string;
  kind: 'bar' | 'line';
  /** Bars of series with the same stack id are stacked. */
  stack?: string;
  dashed?: boolean;
  /** Right axis (0..1 shares) instead of the left one. */
  axis?: 'left' | 'right';
}

export interface Band {
  name: string;
  lo: ReadonlyArray<number | null>;
  hi: ReadonlyArray<number | null>;
  color: string;
}

export interface TimeChartOptions {
  title: string;
  /** Bucket start times (ISO), one per value. */
  times: readonly string[];
  series: readonly Series[];
  band?: Band;
  /** Left-axis value formatter. */
  format: (v: number) => string;
  /** Right-axis formatter (when a series uses it). */
  formatRight?: (v: number) => string;
  /** X-axis label formatter. */
  formatTime: (iso: string) => string;
  /** Chart height in px. Default CHART_HEIGHT_PX. */
  height?: number;
  /** Upper bound of the left axis at least this (e.g. 1 request). */
  minMax?: number;
  /** Left-axis values are counts: whole-number ticks only. */
  integer?: boolean;
  /** One sentence for screen readers (what the chart shows, its latest values). */
  summary: string;
}

export const CHART_HEIGHT_PX = 170;
const MARGIN = { top: 10, right: 12, bottom: 22, left: 52 };
const MARGIN_RIGHT_AXIS = 44;
const TICKS = 4;
/** Line series with at most this many points get a dot per point. */
const MAX_MARKED_POINTS = 30;
/** Fewest pixels between two x-axis labels. */
const MIN_LABEL_GAP_PX = 64;

/**
 * "Nice" axis ticks from 0 to at least `max` (1, 2, 2.5 or 5 × 10^k steps), about `count` of them;
 * `integer` keeps steps whole (≥ 1, no 2.5 × 10^k). Pure. A non-positive or non-finite max gives [0, 1].
 */
export function niceTicks(max: number, count = TICKS, integer = false): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const nice = ([1, 2, 2.5, 5, 10].find((m) => m * pow >= raw) ?? 10) * pow;
  // Counts: a step below 1 would label 0.5 requests; 2.5 would label 7.5.
  const step = integer ? Math.max(1, nice === 2.5 * pow ? 2 * pow : nice) : nice;
  const ticks: number[] = [];
  // Rounding guards against 0.30000000000000004-style tick labels.
  for (let v = 0; v < max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if ((ticks[ticks.length - 1] ?? 0) < max) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}

/**
 * SVG path data through the points (x(i), y(v)), breaking the line at nulls; a point with no
 * neighbours becomes a short horizontal tick so it stays visible. Pure.
 */
export function linePath(values: ReadonlyArray<number | null>, x: (i: number) => number, y: (v: number) => number): string {
  const parts: string[] = [];
  let run: string[] = [];
  const flush = () => {
    if (run.length === 1) {
      const [mx, my] = (run[0] ?? '').split(',').map(Number) as [number, number];
      parts.push(`M${(mx - 2).toFixed(1)},${my.toFixed(1)}L${(mx + 2).toFixed(1)},${my.toFixed(1)}`);
    } else if (run.length > 1) {
      parts.push(`M${run.join('L')}`);
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) flush();
    else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  flush();
  return parts.join('');
}

/** Largest value the left axis must show (stacked bars summed per bucket). Pure. */
export function axisMax(series: readonly Series[], band?: Band): number {
  let max = 0;
  const stacks = new Map<string, number[]>();
  for (const s of series) {
    if (s.axis === 'right') continue;
    if (s.kind === 'bar') {
      const key = s.stack ?? s.name;
      const acc = stacks.get(key) ?? [];
      s.values.forEach((v, i) => (acc[i] = (acc[i] ?? 0) + (v ?? 0)));
      stacks.set(key, acc);
    } else {
      for (const v of s.values) if (v !== null && v > max) max = v;
    }
  }
  for (const acc of stacks.values()) for (const v of acc) if (v > max) max = v;
  if (band) for (const v of band.hi) if (v !== null && v > max) max = v;
  return max;
}

function draw(opts: TimeChartOptions, width: number): SVGSVGElement {
  const height = opts.height ?? CHART_HEIGHT_PX;
  const hasRight = opts.series.some((s) => s.axis === 'right');
  const m = { ...MARGIN, right: hasRight ? MARGIN_RIGHT_AXIS : MARGIN.right };
  const n = Math.max(1, opts.times.length);
  const plotW = Math.max(10, width - m.left - m.right);
  const plotH = height - m.top - m.bottom;
  const ticks = niceTicks(Math.max(axisMax(opts.series, opts.band), opts.minMax ?? 0), TICKS, opts.integer ?? false);
  const top = ticks[ticks.length - 1] ?? 1;
  const slot = plotW / n;
  const x = (i: number) => m.left + slot * (i + 0.5);
  const y = (v: number) => m.top + plotH - (Math.min(v, top) / top) * plotH;
  const yRight = (v: number) => m.top + plotH - Math.max(0, Math.min(1, v)) * plotH;

  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart-svg', 'aria-hidden': 'true', focusable: 'false' });
  const grid = svg('g', { class: 'chart-grid' });
  for (const t of ticks) {
    grid.append(
      svg('line', { x1: m.left, x2: m.left + plotW, y1: y(t), y2: y(t) }),
      svg('text', { x: m.left - 6, y: y(t) + 4, 'text-anchor': 'end' }, opts.format(t)),
    );
  }
  if (hasRight) {
    for (const t of [0, 0.5, 1]) {
      grid.append(svg('text', { x: m.left + plotW + 6, y: yRight(t) + 4, 'text-anchor': 'start' }, (opts.formatRight ?? String)(t)));
    }
  }
  const every = Math.max(1, Math.ceil(MIN_LABEL_GAP_PX / slot));
  opts.times.forEach((t, i) => {
    // Label from the right end (the latest bucket is what people look at).
    if ((n - 1 - i) % every !== 0) return;
    grid.append(svg('text', { x: x(i), y: height - 6, 'text-anchor': 'middle' }, opts.formatTime(t)));
  });
  root.append(grid);

  if (opts.band) {
    const b = opts.band;
    const pts: string[] = [];
    const lower: string[] = [];
    b.hi.forEach((v, i) => {
      const lo = b.lo[i];
      if (v === null || lo === null || lo === undefined) return;
      pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      lower.unshift(`${x(i).toFixed(1)},${y(lo).toFixed(1)}`);
    });
    if (pts.length > 0) root.append(svg('polygon', { points: [...pts, ...lower].join(' '), fill: b.color, 'fill-opacity': 0.18, stroke: 'none' }));
  }

  const barSeries = opts.series.filter((s) => s.kind === 'bar');
  const stackIds = [...new Set(barSeries.map((s) => s.stack ?? s.name))];
  const barW = Math.max(1, (slot * 0.8) / Math.max(1, stackIds.length));
  const base: number[][] = stackIds.map(() => []);
  for (const s of barSeries) {
    const k = stackIds.indexOf(s.stack ?? s.name);
    const g = svg('g', { fill: s.color });
    s.values.forEach((v, i) => {
      if (v === null || v <= 0) return;
      const below = base[k]?.[i] ?? 0;
      const y0 = y(below);
      const y1 = y(below + v);
      (base[k] as number[])[i] = below + v;
      g.append(svg('rect', { x: (x(i) - (slot * 0.8) / 2 + k * barW).toFixed(1), y: y1.toFixed(1), width: Math.max(1, barW - 1).toFixed(1), height: Math.max(0.5, y0 - y1).toFixed(1) }));
    });
    root.append(g);
  }
  for (const s of opts.series.filter((s) => s.kind === 'line')) {
    const d = linePath(s.values, x, s.axis === 'right' ? yRight : y);
    if (d) root.append(svg('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-linejoin': 'round', 'stroke-dasharray': s.dashed ? '5 4' : undefined }));
    // Sparse data: mark the points, a lone bucket is otherwise a 4-px tick.
    const points = s.values.filter((v) => v !== null).length;
    if (points > 0 && points <= MAX_MARKED_POINTS) {
      const yy = s.axis === 'right' ? yRight : y;
      const g = svg('g', { fill: s.color });
      s.values.forEach((v, i) => {
        if (v !== null && Number.isFinite(v)) g.append(svg('circle', { cx: x(i).toFixed(1), cy: yy(v).toFixed(1), r: 2.5 }));
      });
      root.append(g);
    }
  }

  // Hover targets with the bucket's values (native tooltips).
  const hover = svg('g', { class: 'chart-hover' });
  opts.times.forEach((t, i) => {
    const lines = [opts.formatTime(t)];
    for (const s of opts.series) {
      const v = s.values[i];
      lines.push(`${s.name}: ${v === null || v === undefined ? '—' : (s.axis === 'right' ? (opts.formatRight ?? String) : opts.format)(v)}`);
    }
    if (opts.band) {
      const lo = opts.band.lo[i];
      const hi = opts.band.hi[i];
      if (lo !== null && lo !== undefined && hi !== null && hi !== undefined) lines.push(`${opts.band.name}: ${opts.format(lo)} – ${opts.format(hi)}`);
    }
    hover.append(svg('rect', { x: (x(i) - slot / 2).toFixed(1), y: m.top, width: slot.toFixed(1), height: plotH }, svg('title', {}, lines.join('\n'))));
  });
  root.append(hover);
  return root;
}

/**
 * A <figure> with a title, legend and the chart, redrawn when its width changes.
 */
export function timeChart(opts: TimeChartOptions): HTMLElement {
  const legend = h(
    'ul',
    { class: 'legend' },
    ...opts.series.map((s) => h('li', {}, h('span', { class: `swatch ${s.kind}${s.dashed ? ' dashed' : ''}`, 'data-color': s.color }), s.name)),
    opts.band ? h('li', {}, h('span', { class: 'swatch band', 'data-color': opts.band.color }), opts.band.name) : null,
  );
  // Colors go through the CSSOM (allowed by the CSP), not a style attribute.
  legend.querySelectorAll<HTMLElement>('.swatch').forEach((sw) => sw.style.setProperty('--c', sw.dataset.color ?? '#000'));
  const canvas = h('div', { class: 'chart-canvas' });
  const fig = h('figure', { class: 'chart', role: 'img', 'aria-label': `${opts.title}. ${opts.summary}` }, h('figcaption', {}, opts.title), legend, canvas);
  let lastWidth = 0;
  const render = () => {
    const width = Math.floor(canvas.clientWidth);
    if (width <= 0 || width === lastWidth) return;
    lastWidth = width;
    canvas.replaceChildren(draw(opts, width));
  };
  new ResizeObserver(render).observe(canvas);
  return fig;
}
