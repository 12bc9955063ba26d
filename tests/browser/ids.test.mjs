// The web client's id arithmetic (web/api.js), without a browser.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { idBefore, idCompare } from '../../web/api.js';

test('idBefore steps back whole milliseconds of the id (ms << 22), past 2^53 without loss', () => {
  const id = ((1234567890n << 22n) | (5n << 12n) | 7n).toString(); // a node 5 id, sequence 7
  assert.equal(idBefore(id, 0), id);
  assert.equal(idBefore(id, 1), ((1234567889n << 22n) | (5n << 12n) | 7n).toString());
  assert.equal(idBefore(id, 60000), ((1234507890n << 22n) | (5n << 12n) | 7n).toString());
  assert.equal(idCompare(idBefore(id, 60000), id), -1);
});

test('idBefore stops at 0, the first message', () => {
  assert.equal(idBefore('0', 60000), '0');
  assert.equal(idBefore(((1000n << 22n) + 3n).toString(), 60000), '0');
  assert.equal(idBefore((60000n << 22n).toString(), 60000), '0');
});
