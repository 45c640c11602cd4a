import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FORMAT_NAMES, loadGenerator } from '../src/export/index.js';
import { buildExportModel, EXPORT_TEXT_MAX } from '../src/export/model.js';
import type { Inventory } from '../src/inventory/types.js';
import type { Flow, Plan } from '../src/model/flow.js';
import { appendTo, maxOf, pushAll } from '../src/util/arrays.js';

/**
 * No list that grows with the inventory goes through a spread call (`push(...items)`,
 * `Math.max(...values)`): V8 puts each element on the stack and throws "Maximum call stack size
 * exceeded" from about 10^5 elements on. The sizes here are past that limit, as the first test shows.
 */

const BIG = 160_000;

describe('lists past the spread-call limit', () => {
  it(`a spread call of ${BIG} elements overflows the stack; pushAll and maxOf do not`, () => {
    const big = Array.from({ length: BIG }, (_, i) => i);
    assert.throws(() => [].push(...(big as never[])), RangeError, 'the size is past the limit');
    assert.throws(() => Math.max(...big), RangeError);
    const out = [-1];
    assert.equal(pushAll(out, big), out);
    assert.equal(out.length, BIG + 1);
    assert.equal(out[BIG], BIG - 1);
    assert.equal(maxOf(big), BIG - 1);
    assert.equal(maxOf([], 0), 0);
    assert.equal(maxOf([-5, -2, -9]), -2);
  });

  it('appendTo groups items under their key in order, one list per key', () => {
    const groups = new Map<string, number[]>();
    for (let i = 0; i < BIG; i++) appendTo(groups, i % 3 ? 'other' : 'third', i);
    assert.equal(groups.get('third')?.length, Math.ceil(BIG / 3));
    assert.deepEqual(groups.get('other')?.slice(0, 3), [1, 2, 4]);
    assert.equal(appendTo(groups, 'new', 7).length, 1);
  });

  it(`the rule model and every export format take a rule of ${BIG} flows`, {
    // Linear work per flow keeps this to seconds of CPU; the timeout is for a shared, loaded machine.
    timeout: 600_000,
  }, async () => {
    // Two services between the same two hosts: the model merges them into one rule, appending one
    // rule's flows to the other's (the step that overflowed).
    const end = (host: string, address: string) => ({ host, role: 'r', address });
    const flows: Flow[] = Array.from({ length: BIG }, (_, i) => ({
      id: `f${i}`,
      product: 'p',
      from: end('a', '192.0.2.1'),
      to: end('b', '192.0.2.2'),
      protocol: 'tcp',
      ports: [i % 2 ? [443, 443] : [80, 80]],
      service: i % 2 ? 'https' : 'http',
      tls: false,
      purpose: 'test',
      sources: [{ doc: 'doc', ref: 'ref' }],
      notes: [],
      entries: [i % 2 ? 'e-https' : 'e-http'],
      local: false,
    }));
    const plan: Plan = { site: 'big', flows, warnings: [] };
    const inventory = {
      sha256: '0'.repeat(64),
      hosts: [
        { name: 'a', address: { text: '192.0.2.1' } },
        { name: 'b', address: { text: '192.0.2.2' } },
      ],
    } as unknown as Inventory;
    const network = buildExportModel(plan, inventory, { generatorVersion: 'test' });
    assert.equal(network.rules.length, 1, 'one rule: both services between the same hosts');
    assert.equal(network.rules[0]?.flows.length, BIG);
    const host = buildExportModel(plan, inventory, { generatorVersion: 'test', host: 'b' });
    for (const name of FORMAT_NAMES) {
      const generator = await loadGenerator(name);
      for (const model of [network, host]) {
        if (!generator.capabilities.modes.includes(model.mode)) continue;
        const result = generator.render(model);
        assert.ok(result.files.length > 0, `${name} --${model.mode}: files`);
        // Firewall rulesets say a rule once, not once per flow.
        if (['nftables', 'iptables', 'windows'].includes(name))
          for (const f of result.files)
            assert.ok(
              f.content.length < 20_000,
              `${name} --${model.mode}: ${f.path} is ${f.content.length} bytes`,
            );
      }
    }
  });
});

describe('the rule model holds the plan flows themselves', () => {
  it('keeps each flow object of the plan, and copies only a flow whose text it clips', () => {
    const end = (host: string, address: string) => ({ host, role: 'r', address });
    const flow = (id: string, purpose: string): Flow => ({
      id,
      product: 'p',
      from: end('a', '192.0.2.1'),
      to: end('b', '192.0.2.2'),
      protocol: 'tcp',
      ports: [[443, 443]],
      service: 'https',
      tls: false,
      purpose,
      sources: [{ doc: 'doc', ref: 'ref' }],
      notes: [],
      entries: ['e'],
      local: false,
    });
    const short = flow('f1', 'short');
    const long = flow('f2', 'x'.repeat(EXPORT_TEXT_MAX + 50));
    const plan: Plan = { site: 's', flows: [short, long], warnings: [] };
    const inventory = { sha256: '0'.repeat(64), hosts: [] } as unknown as Inventory;
    const [rule] = buildExportModel(plan, inventory, { generatorVersion: 'test' }).rules;
    assert.equal(rule?.flows.length, 2);
    // No copy per flow: a 100,000-host plan is not held twice.
    assert.equal(rule?.flows[0], short);
    assert.notEqual(rule?.flows[1], long);
    assert.equal(rule?.flows[1]?.purpose.length, EXPORT_TEXT_MAX);
    assert.ok(rule?.flows[1]?.purpose.endsWith('...'));
    assert.equal(long.purpose.length, EXPORT_TEXT_MAX + 50, 'the plan itself is left as it was');
  });
});
