/**
 * Prometheus metrics on prom-client: the server's counters, gauges (set, or read from a callback at
 * scrape time) and histograms, plus prom-client's default process, GC and event-loop-lag metrics.
 * `ChatMetrics` declares the server's metrics; `render()` is what GET /metrics returns.
 *
 * The small wrappers keep the call sites label-object based (`inc({route, method, status})`) and
 * sort label keys, so a series' labels always render in the same (alphabetical) order.
 */
import client from 'prom-client';

export type Labels = Record<string, string>;

/** Default latency buckets, in seconds (5 ms .. 60 s). */
export const LATENCY_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Content-Type of `render()` (the text exposition format 0.0.4). */
export const PROMETHEUS_CONTENT_TYPE: string = client.Registry.PROMETHEUS_CONTENT_TYPE;

/** A copy of `labels` with its keys in alphabetical order (prom-client renders insertion order). */
function sorted(labels: Labels): Labels {
  const out: Labels = {};
  for (const k of Object.keys(labels).sort()) out[k] = labels[k] ?? '';
  return out;
}

export class Counter {
  constructor(private readonly metric: client.Counter<string>) {}

  /** Adds `by` (default 1, never negative: RangeError) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new RangeError('a counter only goes up');
    this.metric.inc(sorted(labels), by);
  }

  /** Current value of the series of `labels` (0 when it was never incremented). */
  async get(labels: Labels = {}): Promise<number> {
    const want = JSON.stringify(sorted(labels));
    const { values } = await this.metric.get();
    return values.find((v) => JSON.stringify(sorted(v.labels as Labels)) === want)?.value ?? 0;
  }
}

export class Gauge {
  private collector: (() => Array<[Labels, number]>) | null = null;

  constructor(private readonly metric: client.Gauge<string>) {}

  set(labels: Labels, value: number): void {
    this.metric.set(sorted(labels), value);
  }

  /** Reads the values at scrape time instead (queue depth, model state). Replaces set values. */
  collect(fn: () => Array<[Labels, number]>): void {
    this.collector = fn;
  }

  /** Called by prom-client at scrape time. */
  refresh(): void {
    if (!this.collector) return;
    this.metric.reset();
    for (const [labels, value] of this.collector()) this.metric.set(sorted(labels), value);
  }
}

export class Histogram {
  constructor(private readonly metric: client.Histogram<string>) {}

  observe(labels: Labels, value: number): void {
    this.metric.observe(sorted(labels), value);
  }

  /** Observations so far for `labels` (tests). */
  async count(labels: Labels = {}): Promise<number> {
    const want = JSON.stringify(sorted(labels));
    const { values } = await this.metric.get();
    return values.find((v) => v.metricName?.endsWith('_count') && JSON.stringify(sorted(v.labels as Labels)) === want)?.value ?? 0;
  }
}

/** One prom-client registry; metric names must be unique in it (prom-client throws otherwise). */
export class MetricsRegistry {
  readonly prom = new client.Registry();

  /** @param labelNames every label the series will carry (prom-client rejects undeclared ones). */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return new Counter(new client.Counter({ name, help, labelNames, registers: [this.prom] }));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    let wrapper: Gauge | null = null;
    const metric = new client.Gauge({
      name,
      help,
      labelNames,
      registers: [this.prom],
      collect: () => wrapper?.refresh(),
    });
    wrapper = new Gauge(metric);
    return wrapper;
  }

  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: number[] = LATENCY_BUCKETS_SECONDS): Histogram {
    return new Histogram(new client.Histogram({ name, help, labelNames, buckets, registers: [this.prom] }));
  }

  /** Adds prom-client's default metrics: process CPU/memory/fds, GC durations, event-loop lag, heap. */
  collectDefaults(): void {
    client.collectDefaultMetrics({ register: this.prom });
  }

  /** The exposition text (Content-Type {@link PROMETHEUS_CONTENT_TYPE}). */
  render(): Promise<string> {
    return this.prom.metrics();
  }
}

/** Token counts per answer are bounded by the context window: buckets in tokens. */
const TOKEN_BUCKETS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/** Questions embedded together by the query batcher: buckets in calls. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

const HTTP_LABELS = ['method', 'route', 'status'];

/** The chat server's metrics, plus prom-client's default process, GC and event-loop metrics. */
export class ChatMetrics {
  readonly registry = new MetricsRegistry();
  readonly httpRequests = this.registry.counter('mneme_http_requests_total', 'HTTP requests by route, method and status.', HTTP_LABELS);
  readonly httpDuration = this.registry.histogram('mneme_http_request_duration_seconds', 'HTTP request latency (until the response ends) by route, method and status.', HTTP_LABELS);
  readonly answers = this.registry.counter('mneme_answers_total', 'Answer attempts by endpoint and outcome (one per prediction-log row).', ['endpoint', 'status']);
  readonly featuresDuration = this.registry.histogram('mneme_features_duration_seconds', 'Time reading online + computing on-demand features per answer.');
  readonly retrieveDuration = this.registry.histogram('mneme_retrieve_duration_seconds', 'Retrieval (embed + bm25 + dense + fusion) time per answer.');
  readonly generateDuration = this.registry.histogram('mneme_generate_duration_seconds', 'Generation time per answer (queue wait included).');
  readonly firstTokenDuration = this.registry.histogram('mneme_first_token_seconds', 'From the start of generation (queue wait included) to the first generated text.');
  readonly answerDuration = this.registry.histogram('mneme_answer_duration_seconds', 'Whole answer pipeline time per answer.');
  readonly tokens = this.registry.counter('mneme_tokens_total', 'Prompt and completion tokens of answered requests.', ['kind']);
  readonly completionTokens = this.registry.histogram('mneme_completion_tokens', 'Completion tokens per answer.', [], TOKEN_BUCKETS);
  readonly queryEmbedBatch = this.registry.histogram('mneme_query_embed_batch_calls', 'Concurrent query embeddings served by one model call.', [], BATCH_BUCKETS);
  readonly contextDropped = this.registry.counter('mneme_context_chunks_dropped_total', 'Retrieved chunks dropped to fit the context budget.');
  readonly logRowsDropped = this.registry.counter('mneme_log_rows_dropped_total', 'Prediction-log rows not written on purpose, by reason (user_erased: the user was erased while the answer ran).', ['reason']);
  readonly queueDepth = this.registry.gauge('mneme_generation_queue_depth', 'Generation requests waiting in the queue.');
  readonly queueActive = this.registry.gauge('mneme_generation_active', 'Generations running now.');
  readonly modelState = this.registry.gauge('mneme_model_state', 'Chat model state (1 for the current state).', ['backend', 'model', 'state']);

  constructor() {
    this.registry.collectDefaults();
  }

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

  /** The exposition text of every metric (GET /metrics). */
  render(): Promise<string> {
    return this.registry.render();
  }
}
