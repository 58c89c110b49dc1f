import { describe, expect, it } from 'vitest';
import { ChatMetrics, MetricsRegistry, escapeLabelValue } from '../../../src/chat/metrics.ts';

describe('Prometheus exposition', () => {
  it('renders counters with sorted, escaped labels', () => {
    const r = new MetricsRegistry();
    const c = r.counter('x_total', 'Things.\nTwo lines');
    c.inc({ route: '/a', method: 'GET' });
    c.inc({ method: 'GET', route: '/a' }, 2);
    c.inc({ route: 'q"u\\o\nte', method: 'POST' });
    expect(r.render()).toBe(
      '# HELP x_total Things.\\nTwo lines\n# TYPE x_total counter\n' +
        'x_total{method="GET",route="/a"} 3\n' +
        'x_total{method="POST",route="q\\"u\\\\o\\nte"} 1\n',
    );
    expect(escapeLabelValue('a"b')).toBe('a\\"b');
    expect(() => c.inc({}, -1)).toThrow(RangeError);
    expect(() => r.counter('x_total', 'dup')).toThrow(RangeError);
    expect(() => r.counter('bad-name', 'x')).toThrow(RangeError);
  });

  it('renders cumulative histogram buckets, +Inf, sum and count', () => {
    const r = new MetricsRegistry();
    const h = r.histogram('lat_seconds', 'Latency.', [0.1, 1]);
    h.observe({ route: '/x' }, 0.05);
    h.observe({ route: '/x' }, 0.5);
    h.observe({ route: '/x' }, 5);
    expect(r.render()).toBe(
      '# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n' +
        'lat_seconds_bucket{route="/x",le="0.1"} 1\n' +
        'lat_seconds_bucket{route="/x",le="1"} 2\n' +
        'lat_seconds_bucket{route="/x",le="+Inf"} 3\n' +
        'lat_seconds_sum{route="/x"} 5.55\n' +
        'lat_seconds_count{route="/x"} 3\n',
    );
    const unlabelled = new MetricsRegistry().histogram('u', 'U.', [1]);
    unlabelled.observe({}, 2);
    expect(unlabelled.render()).toContain('u_bucket{le="1"} 0\nu_bucket{le="+Inf"} 1\nu_sum 2\nu_count 1\n');
  });

  it('ChatMetrics reads queue depth and model state at scrape time', () => {
    const m = new ChatMetrics();
    let depth = 3;
    let state = 'loading';
    m.observeQueue({ depth: () => depth, active: () => 1 });
    m.observeModel({ backend: 'gguf', modelId: 'm.gguf', status: () => ({ state }) });
    expect(m.render()).toContain('mneme_generation_queue_depth 3\n');
    expect(m.render()).toContain('mneme_model_state{backend="gguf",model="m.gguf",state="loading"} 1\n');
    depth = 0;
    state = 'ready';
    const text = m.render();
    expect(text).toContain('mneme_generation_queue_depth 0\n');
    expect(text).toContain('mneme_model_state{backend="gguf",model="m.gguf",state="loading"} 0\n');
    expect(text).toContain('mneme_model_state{backend="gguf",model="m.gguf",state="ready"} 1\n');
    expect(text).toContain('mneme_generation_active 1\n');
  });
});
