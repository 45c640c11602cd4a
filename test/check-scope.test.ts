import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UsageError } from '../src/errors.js';
import { loadSite } from '../src/inventory/load.js';
import type { Flow } from '../src/model/flow.js';
import { buildPlan } from '../src/plan/plan.js';
import { runCheck } from '../src/probe/engine.js';
import { OutOfScopeError, type Scope, scopeFor, select } from '../src/probe/scope.js';
import { ROOT, runCli } from './helpers.js';

/**
 * The plan is the scope. Every refusal here happens before a single packet is sent, so these
 * tests need no network and no root.
 */

const EXAMPLE = `${ROOT}examples/platespin.yaml`;
const site = loadSite(EXAMPLE);
const plan = buildPlan(site.inventory, site.catalogs);

describe('check: the plan is the scope', () => {
  it('--from picks the flows that start at that host, and only those', async () => {
    const scope = await scopeFor(site.inventory, plan, { from: 'ps-server' });
    assert.deepEqual(scope.from, ['ps-server']);
    assert.ok(scope.flows.length > 0);
    assert.ok(scope.flows.every((f) => f.from.host === 'ps-server'));
    assert.equal(scope.flows.length, plan.flows.filter((f) => f.from.host === 'ps-server').length);
  });

  it('--as PRODUCT:ROLE picks the flows of every host with the role', async () => {
    const scope = await scopeFor(site.inventory, plan, { as: 'platespin:source' });
    assert.deepEqual([...scope.from].sort(), ['lnx-src', 'win-src']);
    assert.ok(scope.flows.every((f) => f.from.role === 'source'));
  });

  it('this machine is found by its addresses, CIDR hosts included', async () => {
    const scope = await scopeFor(site.inventory, plan, { addresses: ['127.0.0.1', '10.70.0.9'] });
    assert.deepEqual(scope.from, ['targets']);
    assert.match(scope.how, /10\.70\.0\.9 \(targets\)/);
    await assert.rejects(
      scopeFor(site.inventory, plan, { addresses: ['127.0.0.1', '192.0.2.1'] }),
      UsageError,
    );
  });

  it('the engine refuses a flow that is not in the plan, before probing anything', async () => {
    const scope = await scopeFor(site.inventory, plan, { from: 'ps-server' });
    const real = scope.flows[0] as Flow;
    // Same fields, but not the plan's flow: e.g. built by hand to reach somewhere else.
    const forged: Flow = {
      ...real,
      to: { host: 'evil', role: 'x', address: '192.0.2.66' },
      ports: [[8080, 8080]],
    };
    await assert.rejects(runCheck(scope, {}, { flows: [forged] }), (err: Error) => {
      assert.ok(err instanceof OutOfScopeError);
      assert.match(
        err.message,
        /^refused: tcp\/8080 ps-server -> evil is not a flow of the plan of migrate-2019/,
      );
      return true;
    });
  });

  it('the engine refuses a flow of the plan that starts at another host', async () => {
    const scope = await scopeFor(site.inventory, plan, { from: 'ps-server' });
    const other = plan.flows.find((f) => f.from.host === 'win-src') as Flow;
    await assert.rejects(
      runCheck(scope, {}, { flows: [other] }),
      /refused: .* starts at win-src, not at ps-server/,
    );
  });

  it('the engine refuses a scope that scopeFor did not make', async () => {
    const real = await scopeFor(site.inventory, plan, { from: 'ps-server' });
    const handMade: Scope = { ...real, flows: [...real.flows] };
    await assert.rejects(runCheck(handMade), /refused: a scope must come from scopeFor/);
  });

  it('select refuses a target or a port that no flow of the scope names', async () => {
    const scope = await scopeFor(site.inventory, plan, { from: 'ps-server' });
    assert.throws(
      () => select(scope, { to: 'ps-server' }),
      /refused: ps-server is not a target of any flow from ps-server/,
    );
    assert.throws(() => select(scope, { to: '192.0.2.9' }), OutOfScopeError);
    assert.throws(
      () => select(scope, { ports: [[8443, 8443]] }),
      /refused: port 8443 is not in any flow from ps-server/,
    );
    assert.throws(
      () => select(scope, { to: 'lnx-src', ports: [[22, 23]] }),
      /refused: port 23 to lnx-src is not in any flow/,
    );
    const ok = select(scope, { to: 'win-src', ports: [[445, 445]] });
    assert.deepEqual(
      ok.flows.map((f) => f.service),
      ['smb'],
    );
  });
});

describe('check CLI: bad input and refusals exit 2 without probing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-scope-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a target outside the plan', () => {
    const r = runCli(['check', EXAMPLE, '--from', 'ps-server', '--to', 'ps-server']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^portolan: refused: ps-server is not a target of any flow from ps-server/);
    assert.equal(r.stdout, '');
  });

  it('refuses a port outside the plan', () => {
    const r = runCli(['check', EXAMPLE, '--from', 'ps-server', '--port', '22,3389']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /refused: port 3389 is not in any flow from ps-server in the plan/);
  });

  it('names the hosts when --from is not one, and the roles when --as is not one', () => {
    const a = runCli(['check', EXAMPLE, '--from', 'nobody']);
    assert.equal(a.code, 2);
    assert.match(
      a.stderr,
      /--from "nobody" is not a host of .* \(expected one of: ps-server, win-src, lnx-src, targets, lnx-targets, esxi-01\)/,
    );
    const b = runCli(['check', EXAMPLE, '--as', 'platespin:nope']);
    assert.equal(b.code, 2);
    assert.match(
      b.stderr,
      /--as "platespin:nope" is not a role any host of .* has \(expected one of: platespin:platespin-server/,
    );
  });

  it('says this machine is not in the site when no address matches and neither flag is given', () => {
    const inv = join(dir, 'far.yaml');
    writeFileSync(
      inv,
      'site: far\nproducts:\n  platespin: { version: "2019.5" }\nhosts:\n  ps: { address: 192.0.2.10, roles: [platespin:platespin-server] }\n  src: { address: 192.0.2.11, roles: [platespin:source], facts: { os: linux } }\n',
    );
    const r = runCli(['check', inv]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /is not a host of .*far\.yaml; name the host it stands for with --from HOST, or a role with --as PRODUCT:ROLE/,
    );
  });

  it('rejects bad option values with exit 2', () => {
    for (const args of [
      ['--format', 'xml'],
      ['--timeout', '0'],
      ['--timeout', 'soon'],
      ['--concurrency', '-1'],
      ['--port', '70000'],
      ['--port', '30-20'],
      ['--from', 'ps-server', '--as', 'platespin:source'],
    ]) {
      const r = runCli(['check', EXAMPLE, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^portolan: /);
    }
  });

  it('--help prints the usage', () => {
    const r = runCli(['check', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: portolan check SITE\.yaml/);
  });
});
