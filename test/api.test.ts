import assert from 'node:assert/strict';
import { it } from 'node:test';

it('exports exactly the documented library surface', async () => {
  const api = await import('portolan');
  assert.deepEqual(Object.keys(api).sort(), [
    'InputError',
    'PortolanError',
    'UsageError',
    'buildExportModel',
    'buildPlan',
    'loadCatalogs',
    'loadSite',
    'mergePortRanges',
  ]);
});

it('plans an example through the library as the CLI does', async () => {
  const { buildPlan, loadSite } = await import('portolan');
  const { inventory, catalogs } = loadSite('examples/druva-vmware.yaml');
  const plan = buildPlan(inventory, catalogs);
  assert.equal(plan.site, 'druva-dc1');
  assert.ok(plan.flows.some((f) => f.to.host === 'esx-edge' && f.ports.some(([lo]) => lo === 443)));
});
