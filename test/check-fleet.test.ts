import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CheckJson, catalog, entry, Lab, labUnavailable, portVerdicts } from './check-lab.js';

/**
 * One source to many targets of one network, the case where sweep threads share round-trip
 * estimates (per target across threads, and per network in the first round; see RttTable in
 * src/probe/rtt.ts): 24 addresses of one /24, 250 ports each (6000 connects, so the round is
 * split between threads). On every address some ports are dropped, one is open, the rest reset.
 * Every port must get the verdict its rule gives, with two sweep threads sharing their estimates
 * and with one thread alone. How long anything took is not asserted.
 */

const skip = labUnavailable(['ss']);
const LO = 30000;
const HI = 30249;
const OPEN = 30200;
const TARGETS = 24;

function expected(port: number): string {
  if (port === OPEN) return 'open-unverified';
  if (port >= 30100 && port <= 30109) return 'filtered';
  return 'closed';
}

describe('check: one source, many targets of one network', { skip }, () => {
  let lab: Lab;
  const addresses: string[] = [];
  const runs: Record<'shared' | 'alone', CheckJson | undefined> = { shared: undefined, alone: undefined };

  before(async () => {
    lab = Lab.create('m', 5);
    for (let k = 0; k < TARGETS; k++) {
      const address = `10.213.${lab.net}.${10 + k}`;
      lab.addServerAddress(address);
      addresses.push(address);
    }
    lab.nft(`
table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 30100-30109 drop
  }
}
`);
    const d = lab.dir;
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(['client', 'server'], [entry('range', 'server', 'tcp', [`${LO}-${HI}`], 'veeam-data-mover')]),
    );
    const site = join(d, 'site.yaml');
    writeFileSync(
      site,
      [
        'site: fleet-lab',
        'catalogs: [lab.yaml]',
        'products:',
        '  lab: {}',
        'hosts:',
        `  cli: { address: ${lab.clientIp}, roles: [lab:client] }`,
        ...addresses.map((a, k) => `  t${k}: { address: ${a}, roles: [lab:server] }`),
        '',
      ].join('\n'),
    );
    await lab.start(
      'open on every address',
      'server',
      [process.execPath, join(d, 'fakes.mjs'), 'tcp-silent', '0.0.0.0', String(OPEN)],
      [{ proto: 'tcp', address: addresses[0] as string, port: OPEN }],
    );
    for (const mode of ['shared', 'alone'] as const) {
      const r = await lab.cli(
        ['check', site, '--from', 'cli', '--format', 'json', '--workers', mode === 'shared' ? '2' : '1'],
        {},
      );
      assert.equal(r.code, 1, r.stderr);
      runs[mode] = JSON.parse(r.stdout) as CheckJson;
    }
  });

  after(async () => {
    await lab?.destroy();
  });

  it('every port of every target gets the verdict its rule gives, threads sharing estimates', () => {
    const got = portVerdicts(runs.shared as CheckJson);
    assert.equal(got.size, TARGETS * (HI - LO + 1));
    const wrong: string[] = [];
    for (const address of addresses)
      for (let port = LO; port <= HI; port++) {
        const v = got.get(`${address}|tcp|${port}`);
        if (v?.verdict !== expected(port))
          wrong.push(`${address} ${port}: ${v?.verdict} (want ${expected(port)})`);
      }
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} ports wrong`);
  });

  it('one sweep thread alone gives the same verdict on every port', () => {
    const a = portVerdicts(runs.shared as CheckJson);
    const b = portVerdicts(runs.alone as CheckJson);
    const differ: string[] = [];
    for (const [k, v] of a)
      if (b.get(k)?.verdict !== v.verdict)
        differ.push(`${k}: ${v.verdict} shared, ${b.get(k)?.verdict} alone`);
    assert.equal(b.size, a.size);
    assert.deepEqual(differ.slice(0, 10), [], `${differ.length} ports differ`);
  });
});
