import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isInetAtonForm, isUnspecified } from '../src/model/address.js';
import { type CheckJson, catalog, entry, Lab, labUnavailable, portVerdicts } from './check-lab.js';
import { ROOT, runCli } from './helpers.js';

/**
 * What `check` may probe and what it may conclude: never this machine when a remote host is meant,
 * never more than asked (--to ADDR, the probe limits), never a crash or a firewall blamed when this
 * machine cannot send at all, and never a --from host taken on trust. Real probes from a client
 * namespace to a server namespace; the server has no listeners (every port is closed) and counts
 * what reaches it with nftables counters. No peer but the kernel's own TCP reset and ICMP port
 * unreachable answers.
 */

const CATALOG = catalog(
  ['client', 'server'],
  [
    entry('tcp', 'server', 'tcp', [7006], 'veeam-transport'),
    entry('udp', 'server', 'udp', [7106], 'veeam-data-mover'),
  ],
);

function inventory(hosts: Record<string, string>, extra = ''): string {
  return [
    'site: safety',
    'catalogs: [lab.yaml]',
    'products:',
    '  lab: {}',
    'hosts:',
    ...Object.entries(hosts).map(([name, line]) => `  ${name}: ${line}`),
    extra,
    '',
  ].join('\n');
}

describe('check: addresses that are this machine are refused at validation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-safety-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const bad: [string, RegExp][] = [
    ['0.0.0.0', /"0\.0\.0\.0" is the unspecified address: a connect to it reaches this machine/],
    ['"::"', /"::" is the unspecified address/],
    ['"::ffff:0.0.0.0"', /"::ffff:0\.0\.0\.0" is the unspecified address/],
    ['0.0.0.0/32', /"0\.0\.0\.0\/32" is the unspecified address/],
    ['"0x0"', /"0x0" is a number the system resolver reads as an IPv4 address/],
    ['0x0.0', /"0x0\.0" is a number the system resolver reads as an IPv4 address/],
    ['0x0a.0.0.1', /"0x0a\.0\.0\.1" is a number the system resolver reads as an IPv4 address/],
    ['0X7F.1', /"0X7F\.1" is a number the system resolver reads as an IPv4 address/],
    ['"010.1"', /"010\.1" has an octet with a leading zero/],
    ['"167772161"', /"167772161" is not a valid IPv4 address/],
    // A group or broadcast address names no one host: probes there fail as if a firewall dropped them.
    ['224.0.0.1', /"224\.0\.0\.1" is a multicast group address, not one host/],
    ['"ff02::1"', /"ff02::1" is a multicast group address, not one host/],
    ['"::ffff:239.1.2.3"', /"::ffff:239\.1\.2\.3" is a multicast group address/],
    ['255.255.255.255', /"255\.255\.255\.255" is the limited broadcast address, not one host/],
    ['239.1.0.0/16', /"239\.1\.0\.0\/16" lies in multicast address space/],
  ];
  for (const [address, message] of bad)
    it(`validate and check refuse address ${address} with a located exit 2`, () => {
      const file = join(dir, 'site.yaml');
      writeFileSync(join(dir, 'lab.yaml'), CATALOG);
      writeFileSync(
        file,
        inventory({
          cli: '{ address: 10.213.6.1, roles: [lab:client] }',
          srv: `{ address: ${address}, roles: [lab:server] }`,
        }),
      );
      for (const cmd of ['validate', 'check']) {
        const r = runCli([cmd, file, ...(cmd === 'check' ? ['--from', 'cli'] : [])]);
        assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
        assert.equal(r.stdout, '');
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`^portolan: ${file.replace(/[/.]/g, '\\$&')}:7:\\d+ hosts\\.srv\\.address: `),
        );
        assert.match(r.stderr, message);
      }
    });

  it('inet_aton forms and unspecified spellings are recognised, names and real addresses are not', () => {
    for (const t of ['0x0', '0x0.0', '0x0a.0.0.1', '010.1', '167772161', '1.2.3', '0x.1'])
      assert.equal(isInetAtonForm(t), true, t);
    for (const t of ['0x0a.example', 'x0.lab', 'host-1.lab', 'a0x1'])
      assert.equal(isInetAtonForm(t), false, t);
    for (const t of ['0.0.0.0', '::', '::ffff:0.0.0.0', '0:0:0:0:0:0:0:0'])
      assert.equal(isUnspecified(t), true, t);
    for (const t of ['10.0.0.1', '::1', '127.0.0.1', 'localhost']) assert.equal(isUnspecified(t), false, t);
  });
});

const skip = labUnavailable(['ss']);

describe('check: scope and safety, real probes in network namespaces', { skip }, () => {
  let lab: Lab;
  const S = () => lab.serverIp;
  const C = () => lab.clientIp;
  const n = () => lab.net;
  /** Packets that reached the server namespace on the probed ports, from the nftables counter. */
  const counted = (): number => {
    const out = execFileSync(
      'ip',
      ['netns', 'exec', lab.server, 'nft', 'list', 'counter', 'inet', 'safety', 'probes'],
      {
        encoding: 'utf8',
      },
    );
    return Number(/packets (\d+)/.exec(out)?.[1] ?? Number.NaN);
  };
  const resetCounter = () =>
    execFileSync('ip', ['netns', 'exec', lab.server, 'nft', 'reset', 'counter', 'inet', 'safety', 'probes'], {
      stdio: 'pipe',
    });
  const site = (name: string, hosts: Record<string, string>): string => {
    const file = join(lab.dir, `${name}.yaml`);
    writeFileSync(file, inventory(hosts));
    return file;
  };
  const json = (stdout: string): CheckJson => {
    try {
      return JSON.parse(stdout) as CheckJson;
    } catch {
      assert.fail(`check printed no JSON:\n${stdout}`);
    }
  };

  before(() => {
    lab = Lab.create('y', 6);
    writeFileSync(join(lab.dir, 'lab.yaml'), CATALOG);
    lab.nft(`
table inet safety {
  counter probes { }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport { 7006, 49152-65535 } counter name probes
    udp dport 7106 counter name probes
  }
}
`);
    // 300 addresses for one name; a sinkhole answer; this machine's own address under a remote name.
    const many = Array.from(
      { length: 300 },
      (_, i) => `10.215.${Math.floor(i / 200)}.${(i % 200) + 1} many.lab.test`,
    );
    lab.hosts([...many, '0.0.0.0 sink.lab.test', ':: sink6.lab.test', `${lab.clientIp} self.lab.test`]);
  });
  after(async () => {
    await lab?.destroy();
  });

  it('a UDP and a TCP flow this machine cannot send to get no-route, the other flows are still reported', async () => {
    const file = site('noroute', {
      cli: `{ address: ${C()}, roles: [lab:client] }`,
      srv: `{ address: ${S()}, roles: [lab:server] }`,
      // No route to 10.214.0.0/16 in the client namespace (no default route either).
      far: '{ address: 10.214.6.2, roles: [lab:server] }',
      // The broadcast address of the client's own /24.
      bcast: `{ address: 10.213.${n()}.255, roles: [lab:server] }`,
    });
    const r = await lab.cli(['check', file, '--format', 'json', '--timeout', '300']);
    assert.doesNotMatch(r.stderr, /RangeError|ERR_SOCKET_BAD_PORT|at Socket/, r.stderr);
    assert.equal(r.code, 1, r.stderr);
    const doc = json(r.stdout);
    const byPort = portVerdicts(doc);
    const get = (address: string, proto: string, port: number) => {
      const v = byPort.get(`${address}|${proto}|${port}`);
      assert.ok(v, `no result for ${proto}/${port} on ${address}: ${r.stdout}`);
      return v;
    };
    for (const proto of ['tcp', 'udp']) {
      const port = proto === 'tcp' ? 7006 : 7106;
      const far = get('10.214.6.2', proto, port);
      assert.equal(far.verdict, 'no-route', far.detail);
      assert.equal(far.evidence.errno, 'ENETUNREACH');
      assert.match(
        far.detail,
        /^ENETUNREACH: this machine has no route to 10\.214\.6\.2 .*no packet left this machine/,
      );
      const bcast = get(`10.213.${n()}.255`, proto, port);
      assert.equal(bcast.verdict, 'no-route', bcast.detail);
      assert.match(bcast.detail, /is a broadcast address on this machine's network/);
      // The others: a real answer from the server (nothing listens: closed).
      assert.equal(get(S(), proto, port).verdict, 'closed');
    }
    const farFlow = doc.flows.find((f) => f.to.host === 'far' && f.protocol === 'udp');
    assert.equal(farFlow?.verdict, 'no-route');
    assert.match(farFlow?.hint ?? '', /this machine cannot send to 10\.214\.6\.2 at all .*not a firewall/);
    assert.doesNotMatch(farFlow?.hint ?? '', /a firewall rejects/);
  });

  it('udpAttempt turns a failed connect into an outcome instead of throwing from send', () => {
    const script = `import { udpAttempt } from ${JSON.stringify(`${ROOT}dist/src/probe/udp.js`)};
for (const a of ['10.214.6.2', '10.213.${n()}.255'])
  console.log(JSON.stringify(await udpAttempt({ address: a, family: 4, port: 7106, payloads: [Buffer.alloc(0)], timeoutMs: 300 })));`;
    const r = spawnSync(
      'ip',
      ['netns', 'exec', lab.client, process.execPath, '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
      [
        { kind: 'unroutable', errno: 'ENETUNREACH' },
        { kind: 'unroutable', errno: 'EACCES' },
      ],
    );
  });

  it('DNS answers of 0.0.0.0, :: or this machine are dns-failed and nothing is probed', async () => {
    resetCounter();
    const file = site('sink', {
      cli: `{ address: ${C()}, roles: [lab:client] }`,
      sink: '{ address: sink.lab.test, roles: [lab:server] }',
      sink6: '{ address: sink6.lab.test, roles: [lab:server] }',
      self: '{ address: self.lab.test, roles: [lab:server] }',
    });
    const r = await lab.cli(['check', file, '--format', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const doc = json(r.stdout);
    const reason = (host: string) => {
      const fs = doc.flows.filter((f) => f.to.host === host);
      assert.equal(fs.length, 2);
      for (const f of fs) {
        assert.equal(f.verdict, 'dns-failed', `${host}: ${f.reason}`);
        assert.equal(f.results.length, 0);
      }
      return fs[0]?.reason ?? '';
    };
    assert.match(reason('sink'), /sink\.lab\.test resolves to the unspecified address \(0\.0\.0\.0\)/);
    assert.match(reason('sink6'), /sink6\.lab\.test resolves to the unspecified address \(::\)/);
    assert.match(
      reason('self'),
      new RegExp(`self\\.lab\\.test resolves to ${C().replace(/\./g, '\\.')}, an address of this machine`),
    );
  });

  it('--from a host that is not this machine warns, and every port result says where the probes left from', async () => {
    const file = site('from', {
      cli: `{ address: ${C()}, roles: [lab:client] }`,
      vbr: `{ address: 10.213.${n()}.7, roles: [lab:client] }`,
      srv: `{ address: ${S()}, roles: [lab:server] }`,
    });
    const r = await lab.cli(['check', file, '--from', 'vbr', '--format', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const warning = new RegExp(
      `^portolan check: warning: --from vbr: none of vbr's addresses \\(10\\.213\\.${n()}\\.7\\) is on this machine \\(${C().replace(/\./g, '\\.')}, .*the probes leave from this machine`,
      'm',
    );
    assert.match(r.stderr, warning);
    const doc = json(r.stdout) as CheckJson & { warnings?: string[] };
    assert.equal(doc.warnings?.length, 1);
    assert.match(doc.warnings?.[0] ?? '', /none of vbr's addresses/);
    const results = doc.flows.flatMap((f) => f.results);
    assert.equal(results.length, 2);
    for (const x of results) assert.equal(x.evidence.source, C(), JSON.stringify(x));

    // The same check run as the host this machine is: no warning, the same source.
    const own = await lab.cli(['check', file, '--from', 'cli', '--format', 'json']);
    assert.equal(own.code, 1, own.stderr);
    assert.doesNotMatch(own.stderr, /warning/);
    const d2 = json(own.stdout) as CheckJson & { warnings?: string[] };
    assert.equal(d2.warnings, undefined);
    for (const x of d2.flows.flatMap((f) => f.results)) assert.equal(x.evidence.source, C());

    // The table says it too.
    const table = await lab.cli(['check', file, '--from', 'vbr', '--format', 'table']);
    assert.match(table.stdout, /^warning: --from vbr: none of vbr's addresses/m);
    assert.match(table.stdout, new RegExp(`^probes left from ${C().replace(/\./g, '\\.')}$`, 'm'));
  });

  it('prints the planned probe count up front', async () => {
    const file = site('count', {
      cli: `{ address: ${C()}, roles: [lab:client] }`,
      srv: `{ address: ${S()}, roles: [lab:server] }`,
      net: `{ address: 10.213.${n()}.0/29, roles: [lab:server] }`,
    });
    const r = await lab.cli(['check', file, '--format', 'json', '--timeout', '300']);
    assert.equal(r.code, 1, r.stderr);
    // srv and the 6 hosts of the /29 (srv is one of them): 6 addresses, tcp and udp each.
    assert.match(r.stderr, /^portolan check: 4 flows, 6 addresses, 12 probes planned \(limit 262144\)$/m);
  });

  it('a /24 over 49152-65535 is refused before the first probe; --max-probes lifts the limit', async () => {
    resetCounter();
    writeFileSync(
      join(lab.dir, 'lab.yaml'),
      catalog(
        ['client', 'server', 'guest'],
        [
          entry('tcp', 'server', 'tcp', [7006], 'veeam-transport'),
          entry('udp', 'server', 'udp', [7106], 'veeam-data-mover'),
          entry('dyn', 'guest', 'tcp', ['49152-65535'], 'msrpc-dynamic'),
        ],
      ),
    );
    try {
      const file = site('big', {
        cli: `{ address: ${C()}, roles: [lab:client] }`,
        guests: `{ address: 10.213.${n()}.0/24, roles: [lab:guest] }`,
      });
      const r = await lab.cli(['check', file, '--format', 'json']);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        'portolan: refused: this check would make 4161536 probes (254 addresses x ports), more than the limit of 262144; narrow it with --to or --port, or give --max-probes 4161536 to run it\n',
      );
      assert.equal(counted(), 0, 'no probe reached the server');
      // With the flag the limit is the user's: one address's range (16384 probes) under --max-probes 16384.
      const one = await lab.cli(['check', file, '--to', S(), '--max-probes', '16384', '--format', 'json']);
      assert.equal(one.code, 1, one.stderr);
      assert.match(one.stderr, /16384 probes planned \(limit 16384\)/);
      const over = await lab.cli(['check', file, '--to', S(), '--max-probes', '16383', '--format', 'json']);
      assert.equal(over.code, 2);
      assert.match(over.stderr, /would make 16384 probes .* --max-probes 16384 to run it/);
    } finally {
      writeFileSync(join(lab.dir, 'lab.yaml'), CATALOG);
    }
  });

  it('a name with 300 addresses is refused before the first probe; --max-addresses lifts the limit', async () => {
    resetCounter();
    const file = site('many', {
      cli: `{ address: ${C()}, roles: [lab:client] }`,
      pool: '{ address: many.lab.test, roles: [lab:server] }',
    });
    const r = await lab.cli(['check', file, '--format', 'json']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      'portolan: refused: many.lab.test (host pool) resolves to 300 addresses, more than the 16 one name may have probed; name its hosts in the inventory, or give --max-addresses 300 to probe them all\n',
    );
    assert.equal(counted(), 0);
    // Lifted: every address is probed (none has a route here: no-route, and still nothing sent).
    const all = await lab.cli(['check', file, '--max-addresses', '300', '--format', 'json']);
    assert.equal(all.code, 1, all.stderr);
    assert.match(all.stderr, /2 flows, 300 addresses, 600 probes planned/);
    const doc = json(all.stdout);
    for (const f of doc.flows) {
      assert.equal(f.verdict, 'no-route');
      assert.equal((f as unknown as { addresses: string[] }).addresses.length, 300);
    }
    assert.equal(counted(), 0);
  });

  it('--to ADDR probes exactly ADDR, for every host whose address contains it', async () => {
    resetCounter();
    const file = site('to', {
      cli: `{ address: ${C()}, roles: [lab:client] }`,
      // First in file order, too large to expand: was picked and skipped, nothing probed, exit 0.
      everything: '{ address: 0.0.0.0/0, roles: [lab:server] }',
      lan: `{ address: 10.213.${n()}.0/24, roles: [lab:server] }`,
      srv: `{ address: ${S()}, roles: [lab:server] }`,
      other: `{ address: 10.213.${n()}.64/26, roles: [lab:server] }`,
    });
    const r = await lab.cli(['check', file, '--to', S(), '--format', 'json', '--timeout', '300']);
    assert.equal(r.code, 1, r.stderr);
    const doc = json(r.stdout) as CheckJson & { flows: { addresses: string[] }[] };
    const hosts = [...new Set(doc.flows.map((f) => f.to.host))].sort();
    assert.deepEqual(hosts, ['everything', 'lan', 'srv']);
    for (const f of doc.flows) {
      assert.deepEqual(f.addresses, [S()], `${f.id}: ${f.reason}`);
      assert.equal(f.verdict, 'closed', `${f.id}: ${f.reason}`);
    }
    assert.match(r.stderr, /6 flows, 1 address, 2 probes planned/);
    // One address, two ports, one probe each (shared by the three flows): nothing else was probed.
    // The two planned probes, plus at most three connects that measure the round trip to the
    // address that answered (evidence rttMs): all to ADDR, none to the rest of the /24.
    const c = counted();
    assert.ok(c >= 2 && c <= 5, `${c} packets`);

    // 0.0.0.0/0 contains any address; without it, an address no host contains is refused.
    const none = await lab.cli([
      'check',
      site('to2', {
        cli: `{ address: ${C()}, roles: [lab:client] }`,
        srv: `{ address: ${S()}, roles: [lab:server] }`,
      }),
      '--to',
      '10.99.0.1',
    ]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /refused: 10\.99\.0\.1 is not a target of any flow from cli/);
    const zero = await lab.cli(['check', file, '--to', '0.0.0.0']);
    assert.equal(zero.code, 2);
    assert.match(zero.stderr, /refused: --to 0\.0\.0\.0 is the unspecified address/);
  });
});
