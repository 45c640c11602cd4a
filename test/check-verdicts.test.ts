import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type CheckJson,
  type CliResult,
  catalog,
  entry,
  Lab,
  labUnavailable,
  type PortVerdict,
  portVerdicts,
} from './check-lab.js';

/**
 * The verdicts for the failures backup teams hit, from `portolan check` run as the CLI in a client
 * namespace. Real peers: chronyd with `local stratum 8` behind an nftables drop, and chronyd with
 * no time source at all (it answers stratum 0, leap indicator 3). Fakes, said where: an NTP
 * server that answers every request with a kiss-o'-death DENY (kod.mjs below: Debian's servers
 * send KoD only under rate limiting), and a TCP listener with nothing to say (test/check-lab.ts).
 * "No machine at the address" is an on-link address nobody has (10.213.<n>.99, fd00:213::99).
 */

type JsonFlow = CheckJson['flows'][number];

const KOD = `
import dgram from 'node:dgram';
// Answers every NTP request with a kiss-o'-death (RFC 5905 7.4): LI 3, mode 4, stratum 0,
// reference id "DENY", our transmit timestamp echoed as the origin.
const [host, port] = process.argv.slice(2);
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  if (m.length < 48) return;
  const out = Buffer.alloc(48);
  out[0] = (3 << 6) | (4 << 3) | 4;
  out.write('DENY', 12, 'latin1');
  m.copy(out, 24, 40, 48);
  s.send(out, r.port, r.address);
});
s.bind(+port, host);
`;

const skip = labUnavailable(['chronyd', 'ss']);

describe('check: verdicts for the failures backup teams hit', { skip }, () => {
  let lab: Lab;
  let site: string;
  let json: CliResult;
  let table: CliResult;
  let doc: CheckJson;
  let byPort: Map<string, PortVerdict>;
  const n = () => lab.net;
  const A = (last: number) => `10.213.${n()}.${last}`;
  const flowTo = (host: string, service: string): JsonFlow => {
    const f = doc.flows.find((x) => x.to.host === host && (x as { service?: string }).service === service);
    assert.ok(f, `no flow to ${host} (${service})`);
    return f;
  };
  const port = (address: string, proto: 'tcp' | 'udp', p: number): PortVerdict => {
    const got = byPort.get(`${address}|${proto}|${p}`);
    assert.ok(got, `no result for ${proto}/${p} on ${address}\n${lab.logs()}`);
    return got;
  };

  before(async () => {
    lab = Lab.create('v', 9);
    for (const last of [3, 4, 5, 6]) lab.addServerAddress(A(last));
    lab.nft(`
table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr ${A(2)} udp dport { 123, 2049 } drop
    ip daddr ${A(3)} tcp dport 2500-3300 drop
    ip daddr ${A(6)} tcp dport 2500-3300 reject with tcp reset
  }
}
`);
    const d = lab.dir;
    lab.hosts([`${A(99)} ghost.lab.test`]);
    writeFileSync(join(d, 'kod.mjs'), KOD);
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(
        ['client', 'ntp', 'nfs', 'rpc', 'transport', 'web'],
        [
          entry('ntp', 'ntp', 'udp', [123], 'ntp'),
          entry('nfs', 'nfs', 'udp', [2049], 'nfs'),
          entry('rpc', 'rpc', 'tcp', ['49152-65535'], 'msrpc-dynamic', 'dynamic-ports: true'),
          entry('transport', 'transport', 'tcp', ['2500-3300'], 'veeam-transport', 'dynamic-ports: true'),
          entry('web', 'web', 'tcp', [8006], 'proxmox-api'),
        ],
      ),
    );
    site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: verdict-lab
catalogs: [lab.yaml]
products:
  lab: {}
hosts:
  cli: { address: ${lab.clientIp}, roles: [lab:client] }
  srv: { address: ${A(2)}, roles: [lab:ntp, lab:nfs, lab:rpc, lab:transport] }
  srv2: { address: ${A(3)}, roles: [lab:transport] }
  srv3: { address: ${A(6)}, roles: [lab:transport] }
  unsync: { address: ${A(4)}, roles: [lab:ntp] }
  kod: { address: ${A(5)}, roles: [lab:ntp] }
  ghost: { address: ghost.lab.test, roles: [lab:web] }
  ghost6: { address: "fd00:213::99", roles: [lab:web] }
`,
    );
    const chrony = (name: string, address: string, extra: string) => {
      writeFileSync(
        join(d, `${name}.conf`),
        `${extra}allow all\nport 123\nbindaddress ${address}\ncmdport 0\nbindcmdaddress /\npidfile ${d}/${name}.pid\ndriftfile ${d}/${name}.drift\n`,
      );
      // -x: never touch the clock (the namespaces share the host's).
      return lab.start(
        name,
        'server',
        ['chronyd', '-d', '-x', '-u', 'root', '-f', join(d, `${name}.conf`)],
        [{ proto: 'udp', address, port: 123 }],
      );
    };
    await Promise.all([
      chrony('chrony-synced', A(2), 'local stratum 8\n'),
      chrony('chrony-unsync', A(4), ''),
      lab.start(
        'kod',
        'server',
        [process.execPath, join(d, 'kod.mjs'), A(5), '123'],
        [{ proto: 'udp', address: A(5), port: 123 }],
      ),
      lab.start(
        'rpc endpoint',
        'server',
        [process.execPath, join(d, 'fakes.mjs'), 'tcp-silent', A(2), '50100'],
        [{ proto: 'tcp', address: A(2), port: 50100 }],
      ),
      // A job's transmission channel listens behind a firewall that rejects the range with a reset.
      lab.start(
        'transport behind a reset',
        'server',
        [process.execPath, join(d, 'fakes.mjs'), 'tcp-silent', A(6), '2600'],
        [{ proto: 'tcp', address: A(6), port: 2600 }],
      ),
      lab.start(
        'nfs silent',
        'server',
        [process.execPath, join(d, 'fakes.mjs'), 'udp-silent', A(2), '2049'],
        [{ proto: 'udp', address: A(2), port: 2049 }],
      ),
    ]);
    json = await lab.cli(['check', site, '--from', 'cli', '--format', 'json']);
    doc = JSON.parse(json.stdout) as CheckJson;
    byPort = portVerdicts(doc);
    table = await lab.cli(['check', site, '--from', 'cli', '--to', 'ghost', '--format', 'table']);
  });

  after(async () => {
    await lab?.destroy();
  });

  it('exits 1: the failing verdicts fail the check', () => {
    assert.equal(json.code, 1, json.stderr);
    assert.equal(doc.failed, true);
  });

  it('NTP behind a drop is filtered (failing): portolan speaks NTP and a live server answers', () => {
    const f = flowTo('srv', 'ntp');
    assert.equal(f.verdict, 'filtered', JSON.stringify(f.results));
    assert.match(port(A(2), 'udp', 123).detail, /spaced NTP requests/);
    assert.match(f.hint, /allow udp 123 cli -> srv/);
  });

  it('a UDP protocol portolan cannot speak stays open|filtered (not failing)', () => {
    const f = flowTo('srv', 'nfs');
    assert.equal(f.verdict, 'open|filtered');
    assert.equal((f as { failed?: boolean }).failed, false);
  });

  it('chronyd with no time source: not-serving, the hint names the server time source', () => {
    const f = flowTo('unsync', 'ntp');
    assert.equal(f.verdict, 'not-serving', JSON.stringify(f.results));
    const ntp = port(A(4), 'udp', 123).evidence.ntp as { leap: number; kiss?: string };
    assert.equal(ntp.leap, 3);
    assert.equal(ntp.kiss, undefined);
    assert.match(f.hint, /not synchronised to any time source itself/);
    assert.match(f.hint, /chronyc sources/);
  });

  it("a kiss-o'-death (fake server, DENY): not-serving, the hint names the server's access rules", () => {
    const f = flowTo('kod', 'ntp');
    assert.equal(f.verdict, 'not-serving', JSON.stringify(f.results));
    assert.equal((port(A(5), 'udp', 123).evidence.ntp as { kiss?: string }).kiss, 'DENY');
    assert.match(f.hint, /kiss-o'-death DENY/);
    assert.match(f.hint, /allow \/ ntpd restrict/);
  });

  it('no machine at an on-link address: no-host with the neighbour state, IPv4 (by name) and IPv6', () => {
    for (const [host, address] of [
      ['ghost', A(99)],
      ['ghost6', 'fd00:213::99'],
    ] as const) {
      const f = flowTo(host, 'proxmox-api');
      assert.equal(f.verdict, 'no-host', JSON.stringify(f.results));
      const r = port(address, 'tcp', 8006);
      const state = (r.evidence.neighbour as { state?: string } | undefined)?.state;
      assert.ok(state === 'FAILED' || state === 'INCOMPLETE', `neighbour state ${state}`);
      assert.match(f.hint, new RegExp(`no machine on the local link answers ARP/NDP for ${address}`));
      assert.doesNotMatch(f.hint, /firewall/);
    }
    assert.match(flowTo('ghost', 'proxmox-api').hint, /the inventory gives ghost\.lab\.test for ghost/);
    assert.match(flowTo('ghost', 'proxmox-api').hint, /DNS \/ hosts entry/);
  });

  it('the table shows no-host with its hint', () => {
    assert.equal(table.code, 1, table.stderr);
    assert.match(table.stdout, /^no-host +cli -> ghost {2}tcp\/8006/m);
    assert.match(table.stdout, /neighbour entry (FAILED|INCOMPLETE)/);
    assert.match(table.stdout, /hint: no machine on the local link answers ARP\/NDP/);
  });

  it('a dynamic range with one endpoint listening: reachable elsewhere, not closed', () => {
    const f = flowTo('srv', 'msrpc-dynamic');
    assert.equal(f.verdict, 'open-unverified', JSON.stringify(f.results.slice(0, 4)));
    const counts = (f as unknown as { summary: { counts: Record<string, number> }[] }).summary[0]?.counts;
    assert.deepEqual(counts, { 'open-unverified': 1, reachable: 16383 });
    assert.equal(port(A(2), 'tcp', 49152).verdict, 'reachable');
    assert.equal(port(A(2), 'tcp', 49152).evidence.errno, 'ECONNREFUSED');
  });

  it('a transmission range where nothing connects: closed (failing), the path not proven, the hint says why', () => {
    // Every port resets and none connects: before a job runs, or a firewall that rejects the range
    // with a reset. A connect cannot tell the two apart, so a reset is no proof of the path.
    const f = flowTo('srv', 'veeam-transport');
    assert.equal(f.verdict, 'closed');
    assert.equal((f as { failed?: boolean }).failed, true);
    const counts = (f as unknown as { summary: { counts: Record<string, number> }[] }).summary[0]?.counts;
    assert.deepEqual(counts, { closed: 801 });
    assert.match(port(A(2), 'tcp', 2500).detail, /no port of this range connected/);
    assert.match(f.hint, /assigned at run time/);
    assert.match(f.hint, /a firewall rejects it with a TCP reset/);
    assert.match(f.hint, /the path is not proven/);
    assert.match(f.hint, /run portolan listen on srv and check --secret/);
    assert.match(f.hint, /allow tcp 2500-3300 cli -> srv/);
  });

  it('a firewall that rejects a transmission range with a reset, a job listening behind it: closed, not reachable', () => {
    const f = flowTo('srv3', 'veeam-transport');
    assert.equal(f.verdict, 'closed', JSON.stringify(f.results.slice(0, 2)));
    assert.equal((f as { failed?: boolean }).failed, true);
    assert.equal(port(A(6), 'tcp', 2600).verdict, 'closed');
    assert.equal(port(A(6), 'tcp', 2600).evidence.errno, 'ECONNREFUSED');
    assert.match(f.hint, /allow tcp 2500-3300 cli -> srv3/);
  });

  it('failing advice on a range names all its ports: allow tcp 2500-3300 cli -> srv2', () => {
    const f = flowTo('srv2', 'veeam-transport');
    assert.equal(f.verdict, 'filtered');
    assert.match(f.hint, /allow tcp 2500-3300 cli -> srv2/);
  });

  it('rtt is one quiet measurement per address, the same on every port of it', () => {
    const rtts = new Set<unknown>();
    for (const f of doc.flows.filter((x) => x.to.host === 'srv' && x.protocol === 'tcp'))
      for (const r of f.results) rtts.add(r.evidence.rttMs);
    assert.equal(rtts.size, 1, `rtt per run: ${[...rtts].join(', ')}`);
    const [rtt] = [...rtts];
    assert.equal(typeof rtt, 'number');
    assert.ok((rtt as number) > 0);
  });
});

describe('check: a CIDR that holds the checking host never reports a self-connection as open', {
  skip: labUnavailable(['ss']),
}, () => {
  let lab: Lab;
  let site: string;

  before(() => {
    lab = Lab.create('w', 10);
    // One ephemeral port in the client namespace: a connect to this host's own address at that
    // port always picks it as its source and connects to itself (on a normal host this happens
    // by chance on a port or two of an ephemeral-range sweep).
    lab.sysctl({ 'net.ipv4.ip_local_port_range': '50000 50000' }, 'client');
    const d = lab.dir;
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(['client', 'guest'], [entry('agent', 'guest', 'tcp', ['49995-50005'], 'guest-agent')]),
    );
    site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: self-lab
catalogs: [lab.yaml]
products:
  lab: {}
hosts:
  cli: { address: ${lab.clientIp}, roles: [lab:client] }
  guests: { address: 10.213.${lab.net}.0/30, roles: [lab:guest] }
`,
    );
  });

  after(async () => {
    await lab?.destroy();
  });

  it('the checking host own port is closed (it connected to itself), never open', async () => {
    const r = await lab.cli(['check', site, '--from', 'cli', '--format', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const byPort = portVerdicts(JSON.parse(r.stdout) as CheckJson);
    assert.equal(byPort.get(`${lab.clientIp}|tcp|50000`)?.verdict, 'closed');
    const open = [...byPort].filter(([, v]) => v.verdict.startsWith('open') || v.verdict.startsWith('ok'));
    assert.deepEqual(
      open.map(([k]) => k),
      [],
    );
    // The port alone, so that its run carries its own detail.
    const one = await lab.cli(['check', site, '--from', 'cli', '--port', '50000', '--format', 'json']);
    const self = portVerdicts(JSON.parse(one.stdout) as CheckJson).get(`${lab.clientIp}|tcp|50000`);
    assert.equal(self?.verdict, 'closed', JSON.stringify(self));
    assert.match(self?.detail ?? '', /came back to its own socket/);
  });

  it('plan and validate warn that the host lies inside the CIDR', async () => {
    const plan = await lab.cli(['plan', site, '--format', 'json']);
    assert.equal(plan.code, 0, plan.stderr);
    const warnings = (JSON.parse(plan.stdout) as { warnings: { code: string; message: string }[] }).warnings;
    const w = warnings.find((x) => x.code === 'address-in-cidr');
    assert.ok(w, JSON.stringify(warnings));
    assert.match(
      w.message,
      new RegExp(`host cli \\(${lab.clientIp.replace(/\./g, '\\.')}\\) lies inside the CIDR of host guests`),
    );
    const v = await lab.cli(['validate', site]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stderr, /warning: host cli .* lies inside the CIDR of host guests/);
  });
});
