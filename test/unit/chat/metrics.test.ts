import { describe, expect, it } from 'vitest';
import { ChatMetrics, MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from '../../../src/chat/metrics.ts';

/** The server's metric names and label sets: dashboards and alerts depend on them, so they never change silently. */
const SERVER_METRICS: Record<string, string> = {
  mneme_http_requests_total: 'counter',
  mneme_http_request_duration_seconds: 'histogram',
  mneme_answers_total: 'counter',
  mneme_features_duration_seconds: 'histogram',
  mneme_retrieve_duration_seconds: 'histogram',
  mneme_generate_duration_seconds: 'histogram',
  mneme_first_token_seconds: 'histogram',
  mneme_answer_duration_seconds: 'histogram',
  mneme_tokens_total: 'counter',
  mneme_completion_tokens: 'histogram',
  mneme_query_embed_batch_calls: 'histogram',
  mneme_context_chunks_dropped_total: 'counter',
  mneme_generation_queue_depth: 'gauge',
  mneme_generation_active: 'gauge',
  mneme_model_state: 'gauge',
};

describe('Prometheus exposition (prom-client)', () => {
  it('renders counters with sorted, escaped labels', async () => {
    const r = new MetricsRegistry();
    const c = r.counter('x_total', 'Things.\nTwo lines', ['route', 'method']);
    c.inc({ route: '/a', method: 'GET' });
    c.inc({ method: 'GET', route: '/a' }, 2);
    c.inc({ route: 'q"u\\o\nte', method: 'POST' });
    expect(await r.render()).toBe(
      '# HELP x_total Things.\\nTwo lines\n# TYPE x_total counter\n' +
        'x_total{method="GET",route="/a"} 3\n' +
        'x_total{method="POST",route="q\\"u\\\\o\\nte"} 1\n',
    );
    expect(await c.get({ route: '/a', method: 'GET' })).toBe(3);
    expect(() => c.inc({}, -1)).toThrow(RangeError);
    expect(() => r.counter('x_total', 'dup')).toThrow(/already been registered/);
    expect(() => r.counter('bad-name', 'x')).toThrow(/Invalid metric name/);
    expect(() => c.inc({ undeclared: 'x' })).toThrow(/undeclared/);
  });

  it('renders cumulative histogram buckets, +Inf, sum and count', async () => {
    const r = new MetricsRegistry();
    const h = r.histogram('lat_seconds', 'Latency.', ['route'], [0.1, 1]);
    h.observe({ route: '/x' }, 0.05);
    h.observe({ route: '/x' }, 0.5);
    h.observe({ route: '/x' }, 5);
    expect(await r.render()).toBe(
      '# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n' +
        'lat_seconds_bucket{le="0.1",route="/x"} 1\n' +
        'lat_seconds_bucket{le="1",route="/x"} 2\n' +
        'lat_seconds_bucket{le="+Inf",route="/x"} 3\n' +
        'lat_seconds_sum{route="/x"} 5.55\n' +
        'lat_seconds_count{route="/x"} 3\n',
    );
    expect(await h.count({ route: '/x' })).toBe(3);
    const u = new MetricsRegistry();
    u.histogram('u', 'U.', [], [1]).observe({}, 2);
    expect(await u.render()).toContain('u_bucket{le="1"} 0\nu_bucket{le="+Inf"} 1\nu_sum 2\nu_count 1\n');
  });

  it('ChatMetrics keeps every metric name and type, and adds process, GC and event-loop-lag metrics', async () => {
    const text = await new ChatMetrics().render();
    for (const [name, type] of Object.entries(SERVER_METRICS)) expect(text).toContain(`# TYPE ${name} ${type}\n`);
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
    expect(text).toContain('# TYPE nodejs_gc_duration_seconds histogram\n');
    expect(PROMETHEUS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('ChatMetrics labels: http by method/route/status, answers by endpoint/status, tokens by kind', async () => {
    const m = new ChatMetrics();
    m.httpRequests.inc({ route: '/v1/chat/completions', status: '200', method: 'POST' });
    m.httpDuration.observe({ status: '200', method: 'POST', route: '/v1/chat/completions' }, 0.2);
    m.answers.inc({ status: 'ok', endpoint: 'chat' });
    m.tokens.inc({ kind: 'prompt' }, 120);
    m.contextDropped.inc({}, 2);
    const text = await m.render();
    expect(text).toContain('mneme_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1\n');
    expect(text).toContain('mneme_http_request_duration_seconds_count{method="POST",route="/v1/chat/completions",status="200"} 1\n');
    expect(text).toContain('mneme_answers_total{endpoint="chat",status="ok"} 1\n');
    expect(text).toContain('mneme_tokens_total{kind="prompt"} 120\n');
    expect(text).toContain('mneme_context_chunks_dropped_total 2\n');
  });

  it('ChatMetrics reads queue depth and model state at scrape time', async () => {
    const m = new ChatMetrics();
    let depth = 3;
    let state = 'loading';
    m.observeQueue({ depth: () => depth, active: () => 1 });
    m.observeModel({ backend: 'gguf', modelId: 'm.gguf', status: () => ({ state }) });
    expect(await m.render()).toContain('mneme_generation_queue_depth 3\n');
    expect(await m.render()).toContain('mneme_model_state{backend="gguf",model="m.gguf",state="loading"} 1\n');
    depth = 0;
    state = 'ready';
    const text = await m.render();
    expect(text).toContain('mneme_generation_queue_depth 0\n');
    expect(text).toContain('mneme_model_state{backend="gguf",model="m.gguf",state="loading"} 0\n');
    expect(text).toContain('mneme_model_state{backend="gguf",model="m.gguf",state="ready"} 1\n');
    expect(text).toContain('mneme_generation_active 1\n');
  });
});
