/**
 * forwardRules builds rule sides from the endpoint objects and port lists flows share (as the plan
 * makes them): the rules must be the same when every flow has objects of its own, and the rule
 * count the one forwardRuleCount gives (which groups by names, sorted), peers whose descriptions
 * hold commas included.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Endpoint, Flow } from '../src/model/flow.js';
import { forwardRuleCount, forwardRules } from '../src/plan/rules.js';

const HOSTS = ['a', 'b', 'c', 'd', 'e'];
const DESCRIPTIONS = ['x', 'y', 'x,any:y', 'any:x'];
// One endpoint object per host and role, and per description, shared by every flow naming it.
const endpoints = new Map<string, Endpoint>();
function endpoint(host: string | null, role: string, description: string): Endpoint {
  const key = `${host}|${role}|${description}`;
  let e = endpoints.get(key);
  if (!e) {
    e =
      host === null
        ? { host: null, role: null, address: null, description }
        : { host, role, address: host === 'e' ? '2001:db8::e' : `10.0.0.${host.charCodeAt(0)}` };
    endpoints.set(key, e);
  }
  return e;
}
const PORTS: Record<number, [number, number][]> = { 22: [[22, 22]], 443: [[443, 443]], 902: [[902, 902]] };

const flow = fc
  .record({
    from: fc.constantFrom(...HOSTS, null),
    to: fc.constantFrom(...HOSTS, null),
    fromRole: fc.constantFrom('r', 's'),
    toRole: fc.constantFrom('r', 's'),
    protocol: fc.constantFrom('tcp', 'udp', 'icmp'),
    port: fc.constantFrom(22, 443, 902),
    fromDescription: fc.constantFrom(...DESCRIPTIONS),
    toDescription: fc.constantFrom(...DESCRIPTIONS),
  })
  .map(
    (r): Flow => ({
      id: '',
      product: 'p',
      from: endpoint(r.from, r.fromRole, r.fromDescription),
      to: endpoint(r.to, r.toRole, r.toDescription),
      protocol: r.protocol as Flow['protocol'],
      ports: r.protocol === 'icmp' ? [] : (PORTS[r.port] as [number, number][]),
      ...(r.protocol === 'icmp' ? { icmpType: 'echo-request' as const } : {}),
      service: `s${r.port}`,
      tls: false,
      purpose: '',
      sources: [],
      notes: [],
      entries: [`e${r.port}`],
      local: r.from !== null && r.from === r.to,
    }),
  );

describe('forwardRules', () => {
  it('makes the same rules whether flows share endpoint objects and port lists or not', () => {
    fc.assert(
      fc.property(fc.array(flow, { maxLength: 60 }), (flows) => {
        const own = flows.map((f) => structuredClone(f));
        const shared = forwardRules(flows);
        assert.deepEqual(shared, forwardRules(own));
        assert.equal(shared.length, forwardRuleCount(flows));
      }),
      { numRuns: 500 },
    );
  });

  it('a peer whose description holds a comma is not taken for the peers its text names', () => {
    // Sources {x,any:y} and {x, y} once joined alike as sorted names ("any:x,any:y"): one rule
    // then let the peers x and y reach a, which the plan gives only to the peer "x,any:y".
    const peer = (description: string): Endpoint => ({ host: null, role: null, address: null, description });
    const dst = (host: string): Endpoint => ({ host, role: 'r', address: `10.0.0.${host.charCodeAt(0)}` });
    const base = { id: '', product: 'p', protocol: 'tcp' as const, ports: [[22, 22]] as [number, number][] };
    const rest = {
      service: 'ssh',
      tls: false,
      purpose: '',
      sources: [],
      notes: [],
      entries: [],
      local: false,
    };
    const flows: Flow[] = [
      { ...base, from: peer('x,any:y'), to: dst('a'), ...rest },
      { ...base, from: peer('x'), to: dst('b'), ...rest },
      { ...base, from: peer('y'), to: dst('b'), ...rest },
    ];
    const rules = forwardRules(flows);
    assert.equal(rules.length, forwardRuleCount(flows));
    assert.equal(rules.length, 2);
    assert.deepEqual(
      rules.map((r) => [r.src.unspecified, r.dst.hosts]),
      [
        [['x,any:y'], ['a']],
        [['x', 'y'], ['b']],
      ],
    );
  });
});
