// The dashboard's arithmetic (web/dashboard.js), without a browser: the
// text-format parser, and histogram_quantile as Prometheus computes it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMetrics, quantile } from '../../web/dashboard.js';

test('parses samples, labels and special values', () => {
  const m = parseMetrics([
    '# HELP natter_x_total x', '# TYPE natter_x_total counter', 'natter_x_total 42',
    'natter_lag{partition="0"} 3', 'natter_lag{partition="1"} 4.5',
    'h_bucket{le="0.5"} 1', 'h_bucket{le="+Inf"} 2',
    'e{route="/chats/{id}/messages",q="a\\"b"} 1e3', '',
  ].join('\n'));
  assert.deepEqual(m.get('natter_x_total'), [{ labels: {}, value: 42 }]);
  assert.deepEqual(m.get('natter_lag').map((s) => s.value), [3, 4.5]);
  assert.equal(m.get('h_bucket')[1].labels.le, '+Inf');
  assert.deepEqual(m.get('e')[0], { labels: { route: '/chats/{id}/messages', q: 'a\\"b' }, value: 1000 });
  assert.equal(m.has('natter_x'), false);
});

test('quantile interpolates inside the bucket holding the rank', () => {
  const before = [[0.1, 10], [0.2, 10], [0.4, 10], [Infinity, 10]];
  // 100 new observations: 50 in (0, 0.1], 40 in (0.1, 0.2], 10 in (0.2, 0.4]
  const after = [[0.1, 60], [0.2, 100], [0.4, 110], [Infinity, 110]];
  assert.equal(quantile(0.5, before, after), 0.1);
  assert.ok(Math.abs(quantile(0.7, before, after) - 0.15) < 1e-12);
  assert.ok(Math.abs(quantile(0.99, before, after) - 0.38) < 1e-12);
  assert.ok(Math.abs(quantile(0.25, before, after) - 0.05) < 1e-12, 'the first bucket starts at 0');
});

test('quantile: nothing observed is no value; past the last bound is the last bound', () => {
  const h = [[0.1, 5], [Infinity, 5]];
  assert.equal(quantile(0.99, h, h), null);
  assert.equal(quantile(0.99, [], []), null);
  assert.equal(quantile(0.99, [[0.1, 0], [0.2, 0], [Infinity, 0]], [[0.1, 1], [0.2, 1], [Infinity, 100]]), 0.2);
});
