import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeCidr } from 'cidr-tools';
import fc from 'fast-check';
import { collapseAddresses } from '../src/model/address.js';
import { mergePortRanges, type PortRange } from '../src/model/ports.js';

const range = fc
  .tuple(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }))
  .map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as PortRange);
// Small ranges in a small space make overlaps and adjacency common.
const nearRange = fc
  .tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 8 }))
  .map(([a, n]) => [a, a + n] as PortRange);

function covered(ranges: readonly PortRange[]): Set<number> {
  const s = new Set<number>();
  for (const [lo, hi] of ranges) for (let p = lo; p <= hi; p++) s.add(p);
  return s;
}

describe('port range merging', () => {
  it('covers exactly the input ports, sorted, disjoint and non-adjacent', () => {
    fc.assert(
      fc.property(fc.array(nearRange, { maxLength: 20 }), (input) => {
        const out = mergePortRanges(input);
        assert.deepEqual(
          [...covered(out)].sort((a, b) => a - b),
          [...covered(input)].sort((a, b) => a - b),
        );
        for (let i = 1; i < out.length; i++) assert.ok((out[i]?.[0] ?? 0) > (out[i - 1]?.[1] ?? 0) + 1);
      }),
    );
  });

  it('is idempotent and order-independent on the full port space', () => {
    fc.assert(
      fc.property(fc.array(range, { maxLength: 30 }), (input) => {
        const out = mergePortRanges(input);
        assert.deepEqual(mergePortRanges(out), out);
        assert.deepEqual(mergePortRanges([...input].reverse()), out);
      }),
    );
  });
});

const ipv4 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const text = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
const toInt = (ip: string) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

function cidrBounds(c: string): [number, number] {
  const [ip = '', p = '32'] = c.split('/');
  const size = 2 ** (32 - Number(p));
  const start = Math.floor(toInt(ip) / size) * size;
  return [start, start + size - 1];
}

describe('address collapsing', () => {
  it('covers exactly the addresses of the input CIDRs', () => {
    // Addresses in one /24 so that membership can be enumerated.
    const member = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 24, max: 32 }));
    fc.assert(
      fc.property(fc.array(member, { minLength: 1, maxLength: 12 }), (items) => {
        const input = items.map(([host, prefix]) => {
          const [lo] = cidrBounds(`10.1.2.${host}/${prefix}`);
          return `${text(lo)}/${prefix}`;
        });
        const out = collapseAddresses(input);
        const inSet = (cidrs: string[], n: number) =>
          cidrs.some((c) => {
            const [lo, hi] = cidrBounds(c);
            return n >= lo && n <= hi;
          });
        for (let h = 0; h < 256; h++) {
          const n = toInt(`10.1.2.${h}`);
          assert.equal(inSet(out, n), inSet(input, n), `10.1.2.${h}`);
        }
        assert.ok(out.length <= input.length);
      }),
    );
  });

  it('gives what cidr-tools mergeCidr gives, for canonical texts and for texts it falls back on', () => {
    // Canonical CIDRs (host bits clear) and bare addresses in a few small neighbourhoods, so merges of
    // adjacent and nested blocks are common; odd texts (host bits set, the whole space, the last
    // address, IPv6) mixed in must give the same answer, whichever path they take.
    const canonical = fc
      .tuple(
        fc.constantFrom(0, 10 * 2 ** 24, 2 ** 32 - 512),
        fc.integer({ min: 0, max: 511 }),
        fc.integer({ min: 20, max: 33 }),
      )
      .map(([base, offset, p]) => {
        if (p === 33) return text(base + offset);
        const size = 2 ** (32 - p);
        return `${text(Math.floor((base + offset) / size) * size)}/${p}`;
      });
    const odd = fc.constantFrom(
      '10.0.0.1/24',
      '0.0.0.0/0',
      '255.255.255.255',
      '10.0.0.7/32',
      '2001:db8::/127',
      '2001:db8::1',
    );
    const same = (input: string[]) => {
      const v4 = input.filter((t) => !t.includes(':'));
      const v6 = input.filter((t) => t.includes(':'));
      const expected = [...(v4.length ? mergeCidr(v4) : []), ...(v6.length ? mergeCidr(v6) : [])];
      assert.deepEqual(collapseAddresses(input), expected);
    };
    fc.assert(fc.property(fc.array(canonical, { minLength: 1, maxLength: 60 }), same), { numRuns: 500 });
    fc.assert(fc.property(fc.array(fc.oneof(canonical, odd), { minLength: 1, maxLength: 20 }), same));
  });

  it('never merges across address families and keeps single addresses', () => {
    fc.assert(
      fc.property(ipv4, (n) => {
        const out = collapseAddresses([text(n), '2001:db8::1']);
        assert.deepEqual(out, [`${text(n)}/32`, '2001:db8::1/128']);
      }),
    );
  });
});
