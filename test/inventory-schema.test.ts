import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { inventoryHostShapeKnown, inventorySchemaFindings } from '../src/inventory/load.js';
import { schemaFindings } from '../src/util/schema.js';
import { formatPath, type LoadedYaml, type PathPart } from '../src/util/yaml.js';

function loaded(data: unknown): LoadedYaml {
  return {
    file: 'site.yaml',
    data,
    sha256: '',
    locate: (path: readonly PathPart[], at = 'value') => ({
      file: 'site.yaml',
      path: `${formatPath(path)} ${at}`,
    }),
  };
}

const messages = (y: LoadedYaml) =>
  inventorySchemaFindings(y).map((f) => [f.error.message, f.error.location, f.path]);
const reference = (y: LoadedYaml) =>
  schemaFindings(y, 'inventory').map((f) => [f.error.message, f.error.location, f.path]);

describe('inventory schema: hosts checked without ajv where they plainly fit', () => {
  it("knows schema/inventory.json's host shape (else every host goes to ajv: update HOSTS_SCHEMA)", () => {
    assert.equal(inventoryHostShapeKnown(), true);
  });

  it('finds exactly what ajv finds, for generated hosts of every shape', () => {
    const text = fc.constantFrom('a', '', 'druva-vmware:guest', '10.0.0.1', 'é');
    const scalar = fc.oneof(
      text,
      fc.constantFrom(0, 1.5, -3, Number.NaN, Number.POSITIVE_INFINITY, true, false, null),
    );
    const value = fc.oneof(
      scalar,
      fc.array(scalar, { maxLength: 3 }),
      fc.constant({}),
      fc.constant({ k: 'v' }),
    );
    // Hosts that fit but for one thing or none, and hosts of any shape.
    const fits = fc.record(
      {
        address: fc.constantFrom('10.0.0.1', 'h.example'),
        roles: fc.array(fc.constantFrom('p:r', 'q:s'), { minLength: 1, maxLength: 2 }),
        facts: fc.dictionary(
          fc.constantFrom('os', 'tags'),
          fc.oneof(scalar, fc.array(scalar, { maxLength: 2 }), value),
        ),
        description: text,
      },
      { requiredKeys: ['address', 'roles'] },
    );
    const spoilt = fc
      .tuple(fits, fc.constantFrom('address', 'roles', 'facts', 'description', 'extra'), value)
      .map(([h, k, v]) => ({ ...h, [k]: v }));
    const host = fc.oneof(
      fits,
      spoilt,
      fc.record(
        {
          address: fc.oneof(text, value),
          roles: fc.oneof(fc.array(text, { maxLength: 2 }), value),
          facts: fc.oneof(
            fc.dictionary(fc.constantFrom('os', 'registration', 'x'), value, { maxKeys: 2 }),
            value,
          ),
          description: fc.oneof(text, value),
          extra: value,
        },
        { requiredKeys: [] },
      ),
      value,
    );
    const good = { address: '10.0.0.1', roles: ['p:r'], facts: { os: 'windows', tags: ['a', 1] } };
    const name = fc.constantFrom('vm-1', 'vm-2', 'a.b_c', '-x', 'x'.repeat(64), 'é', '1');
    fc.assert(
      fc.property(fc.array(fc.tuple(name, host), { maxLength: 4 }), fc.boolean(), (hosts, site) => {
        const data = {
          ...(site ? { site: 's' } : {}),
          hosts: Object.fromEntries([['first', good], ...hosts, ['last', good]]),
        };
        assert.deepEqual(messages(loaded(data)), reference(loaded(data)), JSON.stringify(data));
      }),
      { numRuns: Number(process.env.SCHEMA_RUNS ?? 2000) },
    );
  });

  it('finds what ajv finds in hosts that nearly fit', () => {
    const good = { address: '10.0.0.1', roles: ['p:r'] };
    for (const bad of [
      { ...good, facts: { os: [true] } },
      { ...good, facts: { os: null } },
      { ...good, roles: [] },
      { ...good, address: '' },
      { address: '10.0.0.2' },
      { ...good, extra: 1 },
    ]) {
      const data = { site: 's', hosts: { a: good, b: bad } };
      const found = messages(loaded(data));
      assert.equal(found.length, 1, JSON.stringify(bad));
      assert.deepEqual(found, reference(loaded(data)));
    }
    const named = { site: 's', hosts: { a: good, '-b': good } };
    assert.equal(messages(loaded(named)).length, 1);
    assert.deepEqual(messages(loaded(named)), reference(loaded(named)));
  });

  it('still reports an error outside the hosts when every host fits', () => {
    const good = { address: '10.0.0.1', roles: ['p:r'] };
    const data = { site: 's', hosts: { a: good, b: good }, extra: 1 };
    const found = messages(loaded(data));
    assert.equal(found.length, 1);
    assert.deepEqual(found, reference(loaded(data)));
  });
});
