import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CheckJson, catalog, checkJson, entry, Lab, labUnavailable, portVerdicts } from './check-lab.js';
import { ROOT } from './helpers.js';

/**
 * `check --secret` on a UDP range that a firewall drops, beside a TCP port the responder answers:
 * the responder (`portolan listen`, real) is awake, so the range's silence is the firewall's, and
 * check must not spend more datagrams and signed TCP probes on it than it takes to see that. The
 * firewall (nftables in the server namespace) counts what reaches it before dropping: those counts,
 * not a time, are what the test holds check to.
 */

const SECRET = 'udp-drop-test-secret-0123456789';
const RANGE: readonly [number, number] = [7200, 7215];
const PORTS = RANGE[1] - RANGE[0] + 1;
/** At most: spaced tries of the reachability pass (DEFAULTS.attempts), then one ask again beside an answered pilot. */
const PER_PORT = 3 + 1;

const skip = labUnavailable(['nft', 'ss']);

describe('check --secret: a UDP range a firewall drops, the responder answering TCP beside it', {
  skip,
}, () => {
  let lab: Lab;
  let doc: CheckJson;
  let code: number | null;

  const counter = (name: string): number => {
    const out = execFileSync(
      'ip',
      ['netns', 'exec', lab.server, 'nft', 'list', 'counter', 'inet', 'lab', name],
      {
        encoding: 'utf8',
      },
    );
    const m = /packets (\d+)/.exec(out);
    assert.ok(m, out);
    return Number(m[1]);
  };

  before(async () => {
    lab = Lab.create('d', 23);
    const S = lab.serverIp;
    const d = lab.dir;
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(
        ['client', 'server'],
        [
          entry('tcp', 'server', 'tcp', [7100], 'veeam-transport'),
          entry('udp', 'server', 'udp', [`${RANGE[0]}-${RANGE[1]}`], 'nfs'),
        ],
      ),
    );
    const site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: udp-drop-lab
catalogs: [lab.yaml]
products:
  lab: {}
hosts:
  cli: { address: ${lab.clientIp}, roles: [lab:client] }
  srv: { address: ${S}, roles: [lab:server] }
`,
    );
    await lab.start(
      'listen',
      'server',
      [
        process.execPath,
        join(ROOT, 'bin', 'portolan.js'),
        'listen',
        site,
        '--host',
        'srv',
        '--secret',
        SECRET,
        '--ttl',
        '10m',
      ],
      [
        { proto: 'tcp', address: S, port: 7100 },
        { proto: 'udp', address: S, port: RANGE[0] },
        { proto: 'udp', address: S, port: RANGE[1] },
      ],
    );
    // The firewall in front of the responder: it drops the UDP range, and counts the datagrams it
    // dropped and the TCP connects to the responder's port.
    lab.nft(`
table inet lab {
  counter dropped {}
  counter connects {}
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr ${S} udp dport ${RANGE[0]}-${RANGE[1]} counter name dropped drop
    ip daddr ${S} tcp dport 7100 tcp flags & (syn | ack) == syn counter name connects
  }
}
`);
    const r = await lab.cli(['check', site, '--from', 'cli', '--secret', SECRET, '--format', 'json']);
    code = r.code;
    doc = checkJson(r);
  });

  after(async () => {
    await lab?.destroy();
  });

  it('the TCP port is ok (responder) and the dropped range open|filtered, as before', () => {
    assert.equal(code, 0, JSON.stringify(doc.flows.map((f) => [f.id, f.verdict])));
    const byPort = portVerdicts(doc);
    assert.equal(byPort.get(`${lab.serverIp}|tcp|7100`)?.verdict, 'ok (responder)', lab.logs());
    for (let p = RANGE[0]; p <= RANGE[1]; p++)
      assert.equal(byPort.get(`${lab.serverIp}|udp|${p}`)?.verdict, 'open|filtered', `udp/${p}`);
  });

  it('spends at most one more datagram per dropped port than its spaced tries, and no signed TCP probe per port', (t) => {
    const datagrams = counter('dropped');
    t.diagnostic(`${datagrams} datagrams dropped, ${counter('connects')} connects to the TCP port`);
    assert.ok(datagrams >= PORTS, `${datagrams} datagrams reached the firewall`);
    assert.ok(datagrams <= PORTS * PER_PORT, `${datagrams} datagrams for ${PORTS} dropped ports`);
    // The reachability connect, the signed probe, the rtt measurements and the pilots of the asks
    // again: fewer than one per dropped port (each ask had its own pilot before).
    const connects = counter('connects');
    assert.ok(
      connects < PORTS,
      `${connects} connects to the responder's TCP port for ${PORTS} dropped UDP ports`,
    );
  });
});
