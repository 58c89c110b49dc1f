/**
 * Prometheus metrics, hand-written (text exposition format 0.0.4): counters, gauges (set or read from
 * a callback at scrape time) and cumulative histograms, each with labels. `ChatMetrics` declares the
 * server's metrics; `MetricsRegistry.render()` is what GET /metrics returns.
 */

export type Labels = Record<string, string>;

/** Default latency buckets, in seconds (5 ms .. 60 s). */
export const LATENCY_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Escapes a label value: backslash, double quote and line feed, per the exposition format. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabelValue(labels[k] ?? '')}"`)
    .join(',');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

interface Metric {
  readonly name: string;
  render(): string;
}

abstract class Base implements Metric {
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    if (!METRIC_NAME.test(name)) throw new RangeError(`invalid metric name ${name}`);
    this.name = name;
    this.help = help;
  }
  protected header(type: string): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${type}\n`;
  }
  abstract render(): string;
}

export class Counter extends Base {
  private readonly values = new Map<string, number>();

  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new RangeError('a counter only goes up');
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }

  render(): string {
    let out = this.header('counter');
    for (const [k, v] of this.values) out += `${this.name}${k ? `{${k}}` : ''} ${formatValue(v)}\n`;
    return out;
  }
}

export class Gauge extends Base {
  private readonly values = new Map<string, number>();
  private collector: (() => Array<[Labels, number]>) | null = null;

  set(labels: Labels, value: number): void {
    this.values.set(labelKey(labels), value);
  }

  /** Reads the values at scrape time instead (queue depth, model state). Replaces set values. */
  collect(fn: () => Array<[Labels, number]>): void {
    this.collector = fn;
  }

  render(): string {
    let out = this.header('gauge');
    const entries: Array<[string, number]> = this.collector ? this.collector().map(([l, v]) => [labelKey(l), v]) : [...this.values];
    for (const [k, v] of entries) out += `${this.name}${k ? `{${k}}` : ''} ${formatValue(v)}\n`;
    return out;
  }
}

interface HistogramSeries {
  labels: string;
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Base {
  readonly buckets: number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(name: string, help: string, buckets: number[] = LATENCY_BUCKETS_SECONDS) {
    super(name, help);
    this.buckets = [...buckets].sort((a, b) => a - b);
  }

  observe(labels: Labels, value: number): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { labels: k, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    // Stored non-cumulative; rendered cumulative.
    const i = this.buckets.findIndex((b) => value <= b);
    if (i !== -1) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.sum += value;
    s.count += 1;
  }

  /** Observations so far for `labels` (tests). */
  count(labels: Labels = {}): number {
    return this.series.get(labelKey(labels))?.count ?? 0;
  }

  render(): string {
    let out = this.header('histogram');
    for (const s of this.series.values()) {
      const sep = s.labels ? ',' : '';
      let cumulative = 0;
      this.buckets.forEach((b, i) => {
        cumulative += s.counts[i] ?? 0;
        out += `${this.name}_bucket{${s.labels}${sep}le="${formatValue(b)}"} ${cumulative}\n`;
      });
      out += `${this.name}_bucket{${s.labels}${sep}le="+Inf"} ${s.count}\n`;
      out += `${this.name}_sum${s.labels ? `{${s.labels}}` : ''} ${formatValue(s.sum)}\n`;
      out += `${this.name}_count${s.labels ? `{${s.labels}}` : ''} ${s.count}\n`;
    }
    return out;
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets?: number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }

  private add<M extends Metric>(m: M): M {
    if (this.metrics.some((x) => x.name === m.name)) throw new RangeError(`metric ${m.name} registered twice`);
    this.metrics.push(m);
    return m;
  }

  /** The exposition text (Content-Type `text/plain; version=0.0.4`). */
  render(): string {
    return this.metrics.map((m) => m.render()).join('');
  }
}

/** Content-Type of `render()`. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Token counts per answer are bounded by the context window: buckets in tokens. */
const TOKEN_BUCKETS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/** Questions embedded together by the query batcher: buckets in calls. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/** The chat server's metrics. */
export class ChatMetrics {
  readonly registry = new MetricsRegistry();
  readonly httpRequests = this.registry.counter('mneme_http_requests_total', 'HTTP requests by route, method and status.');
  readonly httpDuration = this.registry.histogram('mneme_http_request_duration_seconds', 'HTTP request latency (until the response ends) by route, method and status.');
  readonly answers = this.registry.counter('mneme_answers_total', 'Answer attempts by endpoint and outcome (one per prediction-log row).');
  readonly featuresDuration = this.registry.histogram('mneme_features_duration_seconds', 'Time reading online + computing on-demand features per answer.');
  readonly retrieveDuration = this.registry.histogram('mneme_retrieve_duration_seconds', 'Retrieval (embed + bm25 + dense + fusion) time per answer.');
  readonly generateDuration = this.registry.histogram('mneme_generate_duration_seconds', 'Generation time per answer (queue wait included).');
  readonly firstTokenDuration = this.registry.histogram('mneme_first_token_seconds', 'From the start of generation (queue wait included) to the first generated text.');
  readonly answerDuration = this.registry.histogram('mneme_answer_duration_seconds', 'Whole answer pipeline time per answer.');
  readonly tokens = this.registry.counter('mneme_tokens_total', 'Prompt and completion tokens of answered requests.');
  readonly completionTokens = this.registry.histogram('mneme_completion_tokens', 'Completion tokens per answer.', TOKEN_BUCKETS);
  readonly queryEmbedBatch = this.registry.histogram('mneme_query_embed_batch_calls', 'Concurrent query embeddings served by one model call.', BATCH_BUCKETS);
  readonly contextDropped = this.registry.counter('mneme_context_chunks_dropped_total', 'Retrieved chunks dropped to fit the context budget.');
  readonly queueDepth = this.registry.gauge('mneme_generation_queue_depth', 'Generation requests waiting in the queue.');
  readonly queueActive = this.registry.gauge('mneme_generation_active', 'Generations running now.');
  readonly modelState = this.registry.gauge('mneme_model_state', 'Chat model state (1 for the current state).');

  /** Wires the scrape-time gauges. */
  observeQueue(queue: { depth(): number; active(): number }): void {
    this.queueDepth.collect(() => [[{}, queue.depth()]]);
    this.queueActive.collect(() => [[{}, queue.active()]]);
  }

  observeModel(model: { backend: string; modelId: string; status(): { state: string } }): void {
    this.modelState.collect(() => {
      const current = model.status().state;
      return (['loading', 'ready', 'failed'] as const).map((s) => [{ backend: model.backend, model: model.modelId, state: s }, s === current ? 1 : 0]);
    });
  }

  render(): string {
    return this.registry.render();
  }
}
