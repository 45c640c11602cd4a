import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type CheckJson,
  catalog,
  entry,
  Lab,
  labUnavailable,
  type PortVerdict,
  portVerdicts,
  selfSignedCert,
  writeSmbConf,
} from './check-lab.js';
import { ROOT } from './helpers.js';

/**
 * `portolan check` against real peers in network namespaces, run as the CLI from the client
 * namespace. Real: OpenSSH sshd, openssl s_server (TLS 1.0-only, TLS 1.3, a cipher we do not
 * offer), nginx (plain HTTP), chronyd (NTP), smbd (SMB2), samba-dcerpcd (the MS-RPC endpoint
 * mapper on 135 and its dynamic ports), `portolan listen` (the responder). Fakes (Debian has no
 * server for them): VMware authd on 902 and an RDP X.224 responder on 3389 (test/check-lab.ts).
 * Every nftables verdict kind sits in the server namespace's input chain.
 */

const PEERS = ['/usr/sbin/sshd', 'ssh-keygen', 'openssl', 'nginx', 'chronyd', 'smbd', 'ss'];
const DCERPCD = '/usr/libexec/samba/samba-dcerpcd';
const SECRET = 'lab-secret-0123456789abcdef';
const skip = labUnavailable(PEERS);

describe('check: every verdict against real peers in network namespaces', { skip }, () => {
  let lab: Lab;
  let site: string;
  let doc: CheckJson;
  let byPort: Map<string, PortVerdict>;
  let first: { code: number | null; stderr: string };
  let createdRunSshd = false;
  const S = () => lab.serverIp;
  const v = (proto: 'tcp' | 'udp', port: number, address = S()): PortVerdict => {
    const got = byPort.get(`${address}|${proto}|${port}`);
    assert.ok(got, `no result for ${proto}/${port} on ${address}\n${lab.logs()}`);
    return got;
  };

  before(async () => {
    lab = Lab.create('a', 1);
    const n = lab.net;
    const named = `10.213.${n}.5`;
    const wrongAt = `10.213.${n}.3`;
    const resp = `10.213.${n}.4`;
    for (const a of [wrongAt, resp, named, 'fd00:213::3']) lab.addServerAddress(a);

    lab.nft(`
table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 7001 drop
    tcp dport 7002 reject with tcp reset
    tcp dport { 7003, 7203 } reject with icmpx admin-prohibited
    tcp dport 7004 reject with icmpx host-unreachable
    tcp dport 7005 reject with icmpx no-route
    udp dport 7101 drop
    udp dport 7102 reject
    udp dport { 7103, 7303 } reject with icmpx admin-prohibited
    udp dport 7104 reject with icmpx host-unreachable
    udp dport 7105 reject with icmpx no-route
  }
}
`);
    lab.hosts([
      `${named} srv-name.lab.test`,
      '127.0.0.1 loop.lab.test',
      `${S()} dup.lab.test`,
      `10.213.${n}.9 wrong.lab.test`,
      // An AAAA record this machine has no route to, beside an A record that answers; and a name
      // with only such addresses.
      `${named} dual.lab.test`,
      '2001:db8::2 dual.lab.test',
      '2001:db8::3 nowhere.lab.test',
      '2001:db8::4 nowhere.lab.test',
    ]);

    const d = lab.dir;
    // Peers, each on the server side unless said otherwise.
    selfSignedCert(d, '/CN=lab.test/O=portolan');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'hostkey')]);
    if (!existsSync('/run/sshd')) {
      mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
      createdRunSshd = true;
    }
    writeFileSync(
      join(d, 'sshd_config'),
      [
        `ListenAddress ${S()}:22`,
        `ListenAddress ${S()}:8443`,
        `ListenAddress ${named}:22`,
        `ListenAddress [${lab.server6}]:22`,
        `HostKey ${join(d, 'hostkey')}`,
        `PidFile ${join(d, 'sshd.pid')}`,
        'UsePAM no',
        '',
      ].join('\n'),
    );
    const started: Promise<void>[] = [];
    started.push(
      lab.start(
        'sshd',
        'server',
        ['/usr/sbin/sshd', '-D', '-e', '-f', join(d, 'sshd_config')],
        [
          { proto: 'tcp', address: S(), port: 22 },
          { proto: 'tcp', address: S(), port: 8443 },
          { proto: 'tcp', address: lab.server6, port: 22 },
        ],
      ),
    );
    const sServer = (port: number, ...args: string[]) =>
      lab.start(
        `openssl s_server ${port}`,
        'server',
        [
          'openssl',
          's_server',
          '-quiet',
          '-accept',
          `${S()}:${port}`,
          '-cert',
          join(d, 'cert.pem'),
          '-key',
          join(d, 'key.pem'),
          '-www',
          ...args,
        ],
        [{ proto: 'tcp', address: S(), port }],
      );
    started.push(sServer(443, '-tls1_3'));
    // TLS 1.0 needs security level 0 in OpenSSL 3.
    started.push(sServer(4433, '-tls1', '-cipher', 'DEFAULT@SECLEVEL=0'));
    // A TLS 1.3 server whose only suite (CCM_8) no default client offers: the handshake fails.
    started.push(sServer(4435, '-tls1_3', '-ciphersuites', 'TLS_AES_128_CCM_8_SHA256'));

    started.push(
      lab.startNginx(
        `  server { listen ${S()}:8080; listen ${S()}:8006; listen ${S()}:7010; location / { return 200 "lab\\n"; } }`,
        [
          { proto: 'tcp', address: S(), port: 8080 },
          { proto: 'tcp', address: S(), port: 8006 },
          { proto: 'tcp', address: S(), port: 7010 },
        ],
      ),
    );
    started.push(lab.startChronyd(S(), 'all'));
    writeSmbConf(join(d, 'smb.conf'), join(d, 'samba'), S(), { share: true });
    started.push(
      lab.start(
        'smbd',
        'server',
        ['smbd', '--foreground', '--no-process-group', '-s', join(d, 'smb.conf')],
        [{ proto: 'tcp', address: S(), port: 445 }],
      ),
    );
    if (existsSync(DCERPCD))
      started.push(
        lab.start(
          'samba-dcerpcd',
          'server',
          [DCERPCD, '--foreground', '--libexec-rpcds', '-s', join(d, 'smb.conf')],
          [{ proto: 'tcp', address: S(), port: 135 }],
        ),
      );
    const fake = (
      kind: string,
      proto: 'tcp' | 'udp',
      address: string,
      port: number,
      where: 'server' | 'client' = 'server',
    ) =>
      lab.start(
        `fake ${kind}`,
        where,
        [process.execPath, join(d, 'fakes.mjs'), kind, address, String(port)],
        [{ proto, address, port }],
      );
    started.push(fake('authd', 'tcp', S(), 902));
    started.push(fake('rdp', 'tcp', S(), 3389));
    started.push(fake('udp-silent', 'udp', S(), 7150));
    started.push(fake('tcp-silent', 'tcp', '127.0.0.1', 6172, 'client'));
    await Promise.all(started);

    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(
        ['client', 'server', 'server6', 'server6r', 'named', 'responder'],
        [
          entry('ssh', 'server', 'tcp', [22], 'ssh'),
          // 443 TLS 1.3, 4433 TLS 1.0 only, 4435 no shared cipher, 8443 sshd, 8006 plain HTTP (nginx)
          entry('https', 'server', 'tcp', [443, 4433, 4435, 8443, 8006], 'https'),
          entry('http', 'server', 'tcp', [8080], 'http'),
          entry('smb', 'server', 'tcp', [445], 'smb'),
          entry('rpc', 'server', 'tcp', [135], 'msrpc'),
          entry('rpc-dynamic', 'server', 'tcp', ['49152-49200'], 'msrpc-dynamic'),
          entry('nfc', 'server', 'tcp', [902], 'vmware-nfc'),
          entry('rdp', 'server', 'tcp', [3389], 'rdp'),
          // 7001 drop, 7002 tcp reset, 7003 admin-prohibited, 7004 host-unreachable, 7005 no-route,
          // 7006 nothing listens, 7010 nginx (a service we cannot name)
          entry('transport', 'server', 'tcp', ['7001-7006', 7010], 'veeam-transport'),
          entry('ntp', 'server', 'udp', [123], 'ntp'),
          // 7101 drop, 7102 reject (port unreachable), 7103 admin-prohibited, 7104 host-unreachable,
          // 7105 no-route, 7106 nothing listens, 7150 a silent listener
          entry('udp', 'server', 'udp', ['7101-7106', 7150], 'veeam-data-mover'),
          entry('ping', 'server', 'icmp', [], 'ping'),
          entry('ssh6', 'server6', 'tcp', [22], 'ssh'),
          entry('v6-transport', 'server6', 'tcp', [7001, 7006], 'veeam-transport'),
          entry('v6-prohibited', 'server6r', 'tcp', [7003], 'veeam-transport'),
          entry('v6-udp', 'server6', 'udp', [7106], 'veeam-data-mover'),
          entry('named-ssh', 'named', 'tcp', [22], 'ssh'),
          entry('resp', 'responder', 'tcp', ['9000-9003'], 'veeam-transport'),
          entry('resp-udp', 'responder', 'udp', [9100], 'veeam-data-mover'),
          entry('local', '{ role: client, local: true }', 'tcp', [6172, 6173], 'veeam-installer'),
          entry('storage', '{ any: "the backup storage" }', 'tcp', [443], 'https'),
        ],
      ),
    );
    site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: netns-lab
catalogs: [lab.yaml]
products:
  lab: {}
hosts:
  cli: { address: ${lab.clientIp}, roles: [lab:client] }
  srv: { address: ${S()}, roles: [lab:server] }
  srv6: { address: "${lab.server6}", roles: [lab:server6] }
  srv6r: { address: "fd00:213::3", roles: [lab:server6r] }
  by-name: { address: srv-name.lab.test, roles: [lab:named] }
  loopy: { address: loop.lab.test, roles: [lab:named] }
  ghost: { address: ghost.lab.test, roles: [lab:named] }
  dup: { address: dup.lab.test, roles: [lab:named] }
  dual: { address: dual.lab.test, roles: [lab:named] }
  nowhere: { address: nowhere.lab.test, roles: [lab:named] }
  wrong.lab.test: { address: ${wrongAt}, roles: [lab:named] }
  resp: { address: ${resp}, roles: [lab:responder] }
`,
    );
    // The responder: the real `portolan listen` on the host resp, bound to its address.
    await lab.start(
      'portolan listen',
      'server',
      [
        process.execPath,
        join(ROOT, 'bin', 'portolan.js'),
        'listen',
        site,
        '--host',
        'resp',
        '--secret',
        SECRET,
        '--ttl',
        '10m',
        '--bind',
        resp,
      ],
      [
        { proto: 'tcp', address: resp, port: 9000 },
        { proto: 'udp', address: resp, port: 9100 },
      ],
    );

    const r = await lab.cli(['check', site, '--format', 'json']);
    first = r;
    assert.ok(r.stdout.startsWith('{'), `no JSON: ${r.stderr}\n${lab.logs()}`);
    doc = JSON.parse(r.stdout) as CheckJson;
    byPort = portVerdicts(doc);
    if (process.env.PORTOLAN_LAB_DUMP) writeFileSync(process.env.PORTOLAN_LAB_DUMP, r.stdout);
  });

  after(async () => {
    await lab?.destroy();
    if (createdRunSshd)
      try {
        rmdirSync('/run/sshd');
      } catch {
        // something else uses it now
      }
  });

  it('finds this host from the client namespace address, and exits 1 because flows fail', () => {
    assert.deepEqual(doc.from, ['cli']);
    assert.match(doc.how, /10\.213\.1\.1 \(cli\)/);
    assert.equal(first.code, 1, first.stderr);
    assert.equal(doc.failed, true);
  });

  it('TCP: nftables drop, reset, admin-prohibited, host-unreachable, no-route, and nothing listening', () => {
    const filtered = v('tcp', 7001);
    assert.equal(filtered.verdict, 'filtered');
    assert.ok((filtered.evidence.attempts as number) >= 3, 'filtered only after spaced retries');
    assert.deepEqual([v('tcp', 7002).verdict, v('tcp', 7002).evidence.errno], ['closed', 'ECONNREFUSED']);
    assert.deepEqual([v('tcp', 7003).verdict, v('tcp', 7003).evidence.errno], ['blocked', 'EHOSTUNREACH']);
    assert.deepEqual([v('tcp', 7004).verdict, v('tcp', 7004).evidence.errno], ['blocked', 'EHOSTUNREACH']);
    assert.equal(v('tcp', 7005).verdict, 'blocked');
    assert.match(v('tcp', 7005).evidence.errno as string, /^E(HOST|NET)UNREACH$/);
    assert.deepEqual([v('tcp', 7006).verdict, v('tcp', 7006).evidence.errno], ['closed', 'ECONNREFUSED']);
    assert.equal(v('tcp', 7010).verdict, 'open-unverified');
    for (const p of [7002, 7003, 7006]) assert.equal(typeof v('tcp', p).evidence.rttMs, 'number');
  });

  it('UDP: port unreachable is closed, admin-prohibited blocked; drop and a silent listener open|filtered', () => {
    assert.equal(v('udp', 7101).verdict, 'open|filtered');
    assert.ok((v('udp', 7101).evidence.attempts as number) >= 3, 'open|filtered only after spaced retries');
    assert.deepEqual([v('udp', 7102).verdict, v('udp', 7102).evidence.errno], ['closed', 'ECONNREFUSED']);
    assert.deepEqual([v('udp', 7103).verdict, v('udp', 7103).evidence.errno], ['blocked', 'EHOSTUNREACH']);
    assert.equal(v('udp', 7106).verdict, 'closed');
    assert.equal(v('udp', 7150).verdict, 'open|filtered');
    // Host and network unreachable are "soft" ICMP errors: Linux hands them to a UDP socket only
    // with IP_RECVERR, which Node cannot set. They look like a drop, and the detail says so.
    for (const p of [7104, 7105]) {
      assert.equal(v('udp', p).verdict, 'open|filtered');
      assert.match(v('udp', p).detail, /host or network unreachable looks the same/);
    }
  });

  it('NTP: chronyd answers mode 4 with its stratum and our clock offset', () => {
    const ntp = v('udp', 123);
    assert.equal(ntp.verdict, 'ok', ntp.detail);
    const e = ntp.evidence.ntp as { stratum: number; offsetMs: number };
    assert.equal(e.stratum, 8);
    assert.equal(typeof e.offsetMs, 'number');
  });

  it('TLS: 1.3 with an HTTP status is ok; 1.0 only is tls-weak; no shared cipher is tls-failed', () => {
    const ok = v('tcp', 443);
    assert.equal(ok.verdict, 'ok', ok.detail);
    const tls = ok.evidence.tls as {
      protocol: string;
      subject: string;
      validTo: string;
      cipher: string;
      expired: boolean;
    };
    assert.equal(tls.protocol, 'TLSv1.3');
    assert.match(tls.subject, /CN=lab\.test/);
    assert.ok(tls.validTo.length > 0 && !tls.expired);
    assert.match((ok.evidence.http as { status: string }).status, /^HTTP\/1\.[01] 200/);
    const weak = v('tcp', 4433);
    assert.equal(weak.verdict, 'tls-weak', weak.detail);
    assert.equal((weak.evidence.tls as { protocol: string }).protocol, 'TLSv1');
    assert.equal(v('tcp', 4435).verdict, 'tls-failed');
  });

  it('wrong-service: an SSH banner on a TLS port, plain HTTP where TLS is expected', () => {
    assert.equal(v('tcp', 8443).verdict, 'wrong-service');
    assert.match(v('tcp', 8443).detail, /SSH server \(SSH-2\.0-OpenSSH/);
    assert.equal(v('tcp', 8006).verdict, 'wrong-service');
    assert.match(v('tcp', 8006).detail, /plain HTTP server/);
  });

  it('application probes: SSH banner, HTTP status, SMB2 negotiate, authd banner, RDP confirm, RPC bind_ack', () => {
    assert.equal(v('tcp', 22).verdict, 'ok');
    assert.match(v('tcp', 22).evidence.banner as string, /^SSH-2\.0-OpenSSH/);
    assert.equal(v('tcp', 8080).verdict, 'ok');
    assert.equal(v('tcp', 445).verdict, 'ok', v('tcp', 445).detail);
    assert.match(v('tcp', 445).detail, /SMB2 server, dialect/);
    assert.equal(v('tcp', 902).verdict, 'ok');
    assert.match(v('tcp', 902).evidence.banner as string, /^220 VMware Authentication Daemon/);
    assert.equal(v('tcp', 3389).verdict, 'ok');
    assert.match(v('tcp', 3389).detail, /Connection Confirm, security TLS/);
  });

  it('MS-RPC: samba-dcerpcd answers the endpoint mapper bind; its dynamic ports are open in the range', {
    skip: existsSync(DCERPCD) ? false : `${DCERPCD} not installed`,
  }, () => {
    assert.equal(v('tcp', 135).verdict, 'ok', v('tcp', 135).detail);
    assert.match(v('tcp', 135).detail, /bind_ack/);
    const range = doc.flows.find((f) => f.id.includes('msrpc-dynamic'));
    assert.ok(range);
    const open = [...byPort.entries()].filter(
      ([k, x]) => k.includes('|tcp|49') && x.verdict === 'open-unverified',
    );
    assert.ok(open.length >= 1, 'samba-dcerpcd listens on at least one dynamic port');
    assert.equal(v('tcp', 49200).verdict, 'closed');
  });

  it('IPv6: the same verdicts over fd00:213::/64', () => {
    const a = lab.server6;
    assert.equal(v('tcp', 22, a).verdict, 'ok');
    assert.equal(v('tcp', 7001, a).verdict, 'filtered');
    assert.equal(v('tcp', 7006, a).verdict, 'closed');
    assert.equal(v('udp', 7106, a).verdict, 'closed');
  });

  it('IPv6: ICMPv6 administratively prohibited is blocked (EACCES)', async () => {
    // Between two namespaces on one CPU the first ICMPv6 error reaches the socket while connect()
    // still holds its lock, and Linux keeps it as a soft error (TcpExtLockDroppedIcmps); the error
    // to the SYN retransmitted a second later is reported. Over a real link the error arrives
    // after connect() returns. So this port is checked on its own, with a timeout that spans the
    // retransmission (the target answers nothing else, so the timeout stays at --timeout).
    const r = await lab.cli(['check', site, '--to', 'srv6r', '--timeout', '2500', '--format', 'json']);
    const m = portVerdicts(JSON.parse(r.stdout) as CheckJson);
    const got = m.get('fd00:213::3|tcp|7003');
    assert.deepEqual([got?.verdict, got?.evidence.errno], ['blocked', 'EACCES']);
  });

  it("DNS: a name is resolved and probed; no answer, loopback, another host's address or a mismatch is dns-failed", () => {
    const flow = (to: string) => doc.flows.find((f) => f.to.host === to);
    assert.equal(flow('by-name')?.verdict, 'ok');
    assert.equal(v('tcp', 22, `10.213.${lab.net}.5`).verdict, 'ok');
    assert.equal(flow('ghost')?.verdict, 'dns-failed');
    assert.match(flow('ghost')?.reason ?? '', /does not resolve/);
    assert.equal(flow('loopy')?.verdict, 'dns-failed');
    assert.match(flow('loopy')?.reason ?? '', /loopback/);
    assert.equal(flow('dup')?.verdict, 'dns-failed');
    assert.match(flow('dup')?.reason ?? '', /inventory gives to host srv/);
    assert.equal(flow('wrong.lab.test')?.verdict, 'dns-failed');
    assert.match(
      flow('wrong.lab.test')?.reason ?? '',
      /resolves to 10\.213\.1\.9, but the inventory gives 10\.213\.1\.3/,
    );
  });

  it('DNS: an address of a name that this machine has no route to is left out while another has one', () => {
    const dual = doc.flows.find((f) => f.to.host === 'dual');
    assert.equal(dual?.verdict, 'ok', JSON.stringify(dual?.results));
    assert.match(dual?.reason ?? '', /2001:db8::2 left out: this machine has no route to it \(ENETUNREACH\)/);
    assert.deepEqual(
      dual?.results.map((r) => r.address),
      [`10.213.${lab.net}.5`],
    );
    // With no address it can reach, each is no-route: nothing is left out.
    const nowhere = doc.flows.find((f) => f.to.host === 'nowhere');
    assert.equal(nowhere?.verdict, 'no-route');
    assert.deepEqual(nowhere?.results.map((r) => r.address).sort(), ['2001:db8::3', '2001:db8::4']);
  });

  it('a local flow is probed on loopback of this host; unspecified peers and ICMP are skipped with the reason', () => {
    assert.equal(v('tcp', 6172, '127.0.0.1').verdict, 'open-unverified');
    assert.equal(v('tcp', 6173, '127.0.0.1').verdict, 'closed');
    const any = doc.flows.find((f) => f.to.host === null);
    assert.equal(any?.verdict, 'skipped');
    assert.match(any?.reason ?? '', /unspecified \(the backup storage\)/);
    const ping = doc.flows.find((f) => f.protocol === 'icmp');
    assert.equal(ping?.verdict, 'skipped');
  });

  it('every failing flow carries a hint naming its catalog row', () => {
    for (const f of doc.flows.filter((x) => x.verdict !== 'ok'))
      assert.match(f.hint, /needed by lab: lab\.txt lab table, row 1: /, f.id);
  });

  it('--secret: the listen responder answers signed probes (TCP and UDP): ok (responder)', async () => {
    const r = await lab.cli(['check', site, '--to', 'resp', '--secret', SECRET, '--format', 'json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const m = portVerdicts(JSON.parse(r.stdout) as CheckJson);
    const resp = `10.213.${lab.net}.4`;
    for (const p of [9000, 9001, 9002, 9003])
      assert.equal(m.get(`${resp}|tcp|${p}`)?.verdict, 'ok (responder)');
    assert.equal(m.get(`${resp}|udp|9100`)?.verdict, 'ok (responder)');
    // Without the secret the responder sends nothing: the port is open but unproven.
    assert.equal(v('tcp', 9000, resp).verdict, 'open-unverified');
    assert.equal(v('udp', 9100, resp).verdict, 'open|filtered');
  });

  it('--secret with the wrong secret never reads as ok (responder)', async () => {
    const r = await lab.cli([
      'check',
      site,
      '--to',
      'resp',
      '--secret',
      'not-the-lab-secret-at-all',
      '--format',
      'json',
    ]);
    const m = portVerdicts(JSON.parse(r.stdout) as CheckJson);
    const resp = `10.213.${lab.net}.4`;
    assert.equal(m.get(`${resp}|tcp|9000`)?.verdict, 'open-unverified');
    assert.equal(m.get(`${resp}|udp|9100`)?.verdict, 'open|filtered');
  });

  it('--format table and junit show the same verdicts; JUnit failures are the failing flows', async () => {
    const t = await lab.cli(['check', site, '--to', 'srv', '--port', '22,7001-7003', '--format', 'table']);
    assert.equal(t.code, 1);
    assert.match(t.stdout, /^ok +cli -> srv {2}tcp\/22 {2}ssh$/m);
    assert.match(t.stdout, /7001: filtered: no answer to \d+ spaced connects/);
    assert.match(t.stdout, /7003: blocked: EHOSTUNREACH/);
    const j = await lab.cli(['check', site, '--to', 'srv', '--port', '22,7001-7003', '--format', 'junit']);
    assert.equal(j.code, 1);
    assert.match(j.stdout, /<testsuites name="portolan check" tests="2" failures="1" errors="0" skipped="0"/);
    assert.match(j.stdout, /<failure type="blocked" message="blocked: 10\.213\.1\.2:7003 EHOSTUNREACH/);
  });
});
