import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FULL_RANGE_MAX, samplePorts } from '../src/lab/ablate.js';

/**
 * The ports `lab ablate` probes after removing a rule: a generated rule matches a range as one
 * interval, so the sample checks both bounds (and the port next to each, for an off-by-one) and the
 * inside; short ranges are probed in full, and --full-ranges probes every port.
 */
describe('lab ablate: the sample of a rule range', () => {
  it('probes both bounds, the ports next to them and the quartiles of a long range', () => {
    assert.deepEqual(samplePorts([[49152, 65535]]), [
      [49152, 49153],
      [53247, 53247],
      [57343, 57343],
      [61439, 61439],
      [65534, 65535],
    ]);
    assert.deepEqual(samplePorts([[2500, 3300]]), [
      [2500, 2501],
      [2700, 2700],
      [2900, 2900],
      [3100, 3100],
      [3299, 3300],
    ]);
  });

  it('probes short ranges and single ports in full, each range of a list on its own', () => {
    assert.deepEqual(samplePorts([[443, 443]]), [[443, 443]]);
    assert.deepEqual(samplePorts([[1000, 1000 + FULL_RANGE_MAX - 1]]), [[1000, 1000 + FULL_RANGE_MAX - 1]]);
    const sampled = samplePorts([
      [22, 22],
      [5000, 5000 + FULL_RANGE_MAX],
    ]);
    assert.deepEqual(sampled[0], [22, 22]);
    assert.ok(sampled.some(([lo, hi]) => lo <= 5000 && 5000 <= hi));
    assert.ok(sampled.some(([lo, hi]) => lo <= 5000 + FULL_RANGE_MAX && 5000 + FULL_RANGE_MAX <= hi));
    assert.ok(sampled.reduce((n, [lo, hi]) => n + hi - lo + 1, 0) < FULL_RANGE_MAX);
  });

  it('probes every port with --full-ranges', () => {
    assert.deepEqual(
      samplePorts(
        [
          [49152, 65535],
          [22, 22],
        ],
        true,
      ),
      [
        [22, 22],
        [49152, 65535],
      ],
    );
  });
});
