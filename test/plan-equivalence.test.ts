/**
 * What planning large sites fast must not change: the plan JSON is the text JSON.stringify gave
 * (port pairs on one line), the summary's rule count is forwardRules' number of rules, a one-host
 * plan is the whole plan's flows of that host on a generated estate, conditions evaluated once per
 * kind of host still warn per host, repeated roles and facts are still each checked, flows merged
 * as planned are those mergeFlows makes, an advisory's left-out pairs are all counted, and hosts
 * inside CIDRs are those a comparison of every pair finds.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseCidr } from 'cidr-tools';
import fc from 'fast-check';
import type { Catalog } from '../src/catalog/types.js';
import { type InputError, InputErrors } from '../src/errors.js';
import { loadSiteText } from '../src/inventory/load.js';
import type { Host } from '../src/inventory/types.js';
import { parseAddress } from '../src/model/address.js';
import type { Flow, Plan } from '../src/model/flow.js';
import { planJsonChunks } from '../src/plan/format.js';
import { buildPlan, hostsInsideCidrs, mergeFlows } from '../src/plan/plan.js';
import { forwardRuleCount, forwardRules } from '../src/plan/rules.js';
import { pushAll } from '../src/util/arrays.js';
import { ROOT } from './helpers.js';

const { generateSite } = (await import(join(ROOT, 'bench/gen-site.mjs'))) as {
  generateSite: (n: number) => string;
};

/** The plan JSON as it was first written: each item through JSON.stringify, then the text rewritten. */
function referenceJson(plan: Plan): string {
  const pairs = (t: string) => t.replace(/\[\s+(\d+),\s+(\d+)\s+\]/g, '[$1, $2]');
  const item = (v: unknown) => `    ${pairs(JSON.stringify(v, null, 2).replace(/\n/g, '\n    '))}`;
  const list = (key: string, items: readonly unknown[], end: string) =>
    items.length === 0 ? `  "${key}": []${end}` : `  "${key}": [\n${items.map(item).join(',\n')}\n  ]${end}`;
  return `{\n  "site": ${JSON.stringify(plan.site)},\n${list('flows', plan.flows, ',\n')}${list('warnings', plan.warnings, '\n')}}\n`;
}

const site = (n: number, file = `/tmp/generated-${n}.yaml`) => loadSiteText(generateSite(n), file);

describe('plan JSON', () => {
  it('is the text JSON.stringify gives with port pairs on one line, for a generated site and arbitrary values', () => {
    const s = site(400);
    for (const plan of [
      buildPlan(s.inventory, s.catalogs),
      buildPlan(s.inventory, s.catalogs, { lang: 'ja', advisories: true }),
    ])
      assert.equal([...planJsonChunks(plan)].join(''), referenceJson(plan));
    // Text that looks like a port pair inside strings, nested pairs, shared objects, odd numbers.
    const text = fc.oneof(
      fc.string(),
      fc.constantFrom(
        '[ 1, 2 ]',
        'a [  443,\t8443  ] b',
        '[1, 2]',
        '[ -1, 2 ]',
        '"[ 3,  4 ]"',
        '\u2028[ 5, 6 ]',
      ),
    );
    const value = fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        text,
        fc.integer({ min: -5, max: 70000 }),
        fc.double(),
        fc.boolean(),
        fc.constant(null),
        fc.tuple(fc.nat(65535), fc.nat(65535)),
        fc.array(tie('v'), { maxLength: 4 }),
        fc.dictionary(text, tie('v'), { maxKeys: 4 }),
      ),
    })).v;
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(text, value, { maxKeys: 5 }), { maxLength: 4 }),
        text,
        (items, name) => {
          const shared = { host: name, ports: [[1, 2]] };
          const flows = items.map((o, i) => ({
            ...o,
            id: `f${i}`,
            from: shared,
            to: shared,
          })) as unknown as Flow[];
          const plan: Plan = { site: name, flows, warnings: items as unknown as Plan['warnings'] };
          assert.equal([...planJsonChunks(plan)].join(''), referenceJson(plan));
        },
      ),
    );
    // Holes in lists print as null, as JSON.stringify prints them (not as empty lines).
    // biome-ignore lint/suspicious/noSparseArray: the holes are the point
    const sparse = [, 1, [, ,], [2, ,]];
    const holes = { site: 's', flows: [{ id: 'f', x: sparse }], warnings: [sparse] } as unknown as Plan;
    assert.equal([...planJsonChunks(holes)].join(''), referenceJson(holes));
  });
});

describe('summary rule count', () => {
  it('is the number of rules forwardRules makes', () => {
    for (const n of [50, 700]) {
      const s = site(n);
      for (const advisories of [false, true]) {
        const plan = buildPlan(s.inventory, s.catalogs, { advisories });
        assert.equal(forwardRuleCount(plan.flows), forwardRules(plan.flows).length);
      }
    }
    // Arbitrary flows between a few hosts, some unspecified, some local, some with the same hosts.
    const host = fc.constantFrom('a', 'b', 'c', null);
    const flow = fc
      .record({
        from: host,
        to: host,
        protocol: fc.constantFrom('tcp', 'udp', 'icmp'),
        port: fc.constantFrom(22, 443, 902),
        description: fc.constantFrom('x', 'y'),
      })
      .map(
        (r): Flow => ({
          id: '',
          product: 'p',
          from: r.from
            ? { host: r.from, role: 'r', address: `10.0.0.${r.from.charCodeAt(0)}` }
            : { host: null, role: null, address: null, description: r.description },
          to: r.to
            ? { host: r.to, role: 'r', address: `10.0.0.${r.to.charCodeAt(0)}` }
            : { host: null, role: null, address: null, description: r.description },
          protocol: r.protocol as Flow['protocol'],
          ports: r.protocol === 'icmp' ? [] : [[r.port, r.port]],
          ...(r.protocol === 'icmp' ? { icmpType: 'echo-request' as const } : {}),
          service: `s${r.port}`,
          tls: false,
          purpose: '',
          sources: [],
          notes: [],
          entries: [],
          local: r.from !== null && r.from === r.to,
        }),
      );
    fc.assert(
      fc.property(fc.array(flow, { maxLength: 30 }), (flows) => {
        assert.equal(forwardRuleCount(flows), forwardRules(flows).length);
      }),
    );
  });
});

describe('one-host plan', () => {
  it("is the whole plan's flows from or to the host, in order, on a generated estate", () => {
    const s = site(1500);
    for (const advisories of [false, true]) {
      const whole = buildPlan(s.inventory, s.catalogs, { advisories });
      const names = [
        'proxy-0',
        'vm-0',
        'vm-1',
        'pxg-6',
        'src-9',
        'src-19',
        'esx-0',
        'esx-1',
        'esx-3',
        'vc-01',
      ];
      for (const name of [
        ...names,
        'ntp-01',
        'ps-01',
        'vbr-01',
        'lss-01',
        'repo-0',
        'pve-0',
        'druva-cloud',
      ]) {
        const one = buildPlan(s.inventory, s.catalogs, { host: name, advisories });
        assert.deepEqual(
          one.flows,
          whole.flows.filter((f) => f.from.host === name || f.to.host === name),
          name,
        );
        assert.ok(one.flows.length > 0, name);
      }
    }
  });

  it('lists the address-in-cidr pairs of the host that the whole site lists', () => {
    const address = fc.oneof(
      fc.tuple(fc.nat(3), fc.nat(255)).map(([a, b]) => `10.0.${a}.${b}`),
      fc
        .tuple(fc.nat(3), fc.constantFrom(0, 16, 128), fc.constantFrom(24, 25, 28))
        .map(([a, b, p]) => `10.0.${a}.${b}/${p}`),
      fc.constantFrom(
        '10.0.0.0/16',
        '10.0.0.0/22',
        'fd00::1',
        'fd00::/64',
        'fd00::/120',
        'backup.example.com',
      ),
    );
    fc.assert(
      fc.property(fc.uniqueArray(address, { minLength: 1, maxLength: 12 }), (texts) => {
        const hosts: Host[] = texts.flatMap((t, i) => {
          const a = parseAddress(t);
          return 'error' in a ? [] : [{ name: `h${i}`, address: a, roles: [], facts: {} }];
        });
        const all = hostsInsideCidrs(hosts);
        for (const h of hosts)
          assert.deepEqual(
            hostsInsideCidrs(hosts, 'en', h),
            all.filter((w) => w.host === h.name || w.message.includes(`the CIDR of host ${h.name},`)),
          );
      }),
    );
  });
});

describe('conditions evaluated once per kind of host', () => {
  it('still warn for every host that takes a default or leaves a fact out', () => {
    const s = loadSiteText(
      `site: d
products: { druva-vmware: {} }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  esx-1: { address: 10.0.1.1, roles: [druva-vmware:esxi] }
  esx-2: { address: 10.0.1.2, roles: [druva-vmware:esxi] }
  esx-3: { address: 10.0.1.3, roles: [druva-vmware:esxi], facts: { registration: standalone } }
  esx-4: { address: 10.0.1.4, roles: [druva-vmware:esxi] }
`,
      '/tmp/defaults.yaml',
    );
    const plan = buildPlan(s.inventory, s.catalogs);
    assert.deepEqual(
      plan.warnings.filter((w) => w.code === 'fact-default').map((w) => w.host),
      ['esx-1', 'esx-2', 'esx-4'],
    );
    const to = (port: number) =>
      plan.flows
        .filter((f) => f.from.host === 'proxy' && f.ports.some(([lo, hi]) => lo <= port && port <= hi))
        .map((f) => f.to.host);
    assert.deepEqual(to(902), ['esx-1', 'esx-2', 'esx-4']);
    assert.ok(to(443).includes('esx-3'));
  });
});

describe('inventory checks of repeated roles and facts', () => {
  it('refuse a bad value on every host, also after the same value was good on another', () => {
    const text = `site: r
products: { druva-vmware: {} }
hosts:
  a: { address: 10.0.0.1, roles: [druva-vmware:guest], facts: { os: linux, databases: [mssql] } }
  b: { address: 10.0.0.2, roles: [druva-vmware:guest], facts: { os: plan9, databases: [mssql, mssql] } }
  c: { address: 10.0.0.3, roles: [druva-vmware:guest, druva-vmware:guest], facts: { os: [linux] } }
  d: { address: 10.0.0.4, roles: [druva-vmware:guests] }
  e: { address: 10.0.0.5, roles: [druva-vmware:guests] }
`;
    let caught: unknown;
    try {
      loadSiteText(text, '/tmp/repeated.yaml');
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof InputErrors, String(caught));
    const lines = caught.errors.map((e: InputError) => `${e.location?.line}: ${e.detail.split(' (')[0]}`);
    assert.equal(lines.length, 6, lines.join('\n'));
    assert.match(lines[0] ?? '', /^5: .*"plan9" is not allowed/);
    assert.match(lines[1] ?? '', /^5: .*"mssql" is listed twice/);
    assert.match(lines[2] ?? '', /^6: .*listed twice/);
    assert.match(lines[3] ?? '', /^6: .*expected one value/);
    assert.match(lines[4] ?? '', /^7: .*unknown role/);
    assert.match(lines[5] ?? '', /^8: .*unknown role/);
  });
});

describe('flows merged as they are planned', () => {
  it("are mergeFlows of every entry's flows planned alone, in order, on a generated estate", () => {
    const s = site(300);
    for (const advisories of [false, true]) {
      const plan = buildPlan(s.inventory, s.catalogs, { advisories });
      // Each entry planned with no other entry in its catalog: no flow of it merged as planned.
      const alone: Flow[] = [];
      for (const product of s.inventory.products.keys()) {
        const cat = s.catalogs.get(product) as Catalog;
        for (const entry of cat.entries) {
          const only = new Map(
            [...s.catalogs].map(([p, c]) => [p, { ...c, entries: p === product ? [entry] : [] }]),
          );
          pushAll(alone, buildPlan(s.inventory, only, { advisories }).flows);
        }
      }
      const merged = mergeFlows(alone);
      assert.ok(merged.length < alone.length, 'some flows merge');
      assert.deepEqual(plan.flows, merged);
    }
  });

  it('share the list each merge makes: a few source, note and entry lists, not one per flow', () => {
    const s = site(2000);
    const plan = buildPlan(s.inventory, s.catalogs);
    for (const key of ['sources', 'notes', 'entries'] as const) {
      const lists = new Set(plan.flows.map((f) => f[key]));
      const texts = new Set(plan.flows.map((f) => JSON.stringify(f[key])));
      assert.ok(plan.flows.length > 50 * texts.size, `${plan.flows.length} flows, ${texts.size} ${key}`);
      // Two entries may hold equal lists of their own: a list per entry, never one per merged flow.
      assert.ok(lists.size < 2 * texts.size, `${lists.size} ${key} lists for ${texts.size} distinct`);
    }
  });
});

describe('an advisory left out of the plan', () => {
  it('names its first four pairs and counts the others', () => {
    const s = site(1000);
    const without = buildPlan(s.inventory, s.catalogs);
    const withIt = buildPlan(s.inventory, s.catalogs, { advisories: true });
    const warning = without.warnings.find((w) =>
      w.message.startsWith('advisory platespin server-to-source-ping '),
    );
    const pairs = withIt.flows.filter((f) => f.entries.includes('server-to-source-ping'));
    assert.ok(pairs.length > 4, `${pairs.length} pairs`);
    const named = pairs
      .slice(0, 4)
      .map((f) => `${f.from.host} -> ${f.to.host} icmp echo-request`)
      .join('; ');
    assert.ok(
      warning?.message.includes(`not planned: add ${named}; and ${pairs.length - 4} more. `),
      warning?.message,
    );
  });
});

describe('address-in-cidr', () => {
  it('finds the pairs that comparing every pair of hosts finds, IPv4 and IPv6', () => {
    const address = fc.oneof(
      fc.tuple(fc.nat(3), fc.nat(255)).map(([a, b]) => `10.0.${a}.${b}`),
      fc
        .tuple(fc.nat(3), fc.nat(255), fc.integer({ min: 0, max: 32 }))
        .map(([a, b, p]) => `10.0.${a}.${b}/${p}`),
      fc.constantFrom('0.0.0.0/0', '255.255.255.255', '10.0.0.0/16', 'fd00::1', 'fd00::/64', 'fd00::/120'),
    );
    const inside = (t: string, net: string) => {
      const range = (x: string) => {
        const r = parseCidr(x);
        return [r.start, r.end] as const;
      };
      const [s, e] = range(t);
      const [ns, ne] = range(net);
      return parseCidr(t).version === parseCidr(net).version && s >= ns && e <= ne;
    };
    fc.assert(
      fc.property(fc.uniqueArray(address, { minLength: 1, maxLength: 12 }), (texts) => {
        const hosts: Host[] = texts.flatMap((t, i) => {
          const a = parseAddress(t);
          return 'error' in a ? [] : [{ name: `h${i}`, address: a, roles: [], facts: {} }];
        });
        const pairs = hosts.flatMap((net) =>
          net.address.kind !== 'cidr'
            ? []
            : hosts
                .filter(
                  (h) =>
                    h !== net &&
                    h.address.kind !== 'dns' &&
                    h.address.text !== net.address.text &&
                    inside(h.address.text, net.address.text),
                )
                .map((h) => `${h.name} in ${net.name}`),
        );
        const found = hostsInsideCidrs(hosts).map((w) => {
          const m = /^host (\S+) .* of host (\S+),/.exec(w.message);
          return `${m?.[1]} in ${m?.[2]}`;
        });
        assert.deepEqual(found, pairs);
      }),
    );
  });
});
