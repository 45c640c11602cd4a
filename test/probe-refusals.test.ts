import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type CheckJson,
  catalog,
  checkJson,
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
 * Servers that answer, but not as a plain client expects, against real peers in network
 * namespaces: a TLS server that requires a client certificate (TLS 1.2, where it ends the
 * handshake, and TLS 1.3, where it ends the session after it), sshd with its MaxStartups limit
 * full, a TLS server where SSH is expected, and smbd whose `hosts allow` leaves this client out.
 * Each must get the verdict of what happened, with the reason: not a failed handshake for a
 * server that wants a certificate, not "another service" for sshd or smbd refusing this client.
 */

const PEERS = ['/usr/sbin/sshd', 'ssh-keygen', 'openssl', 'smbd', 'nginx', 'chronyd', 'setpriv', 'ss'];
const skip = labUnavailable(PEERS);
/** Whether sshd honours /etc/hosts.deny (linked with libwrap, as Debian builds it). */
const wrapped = (() => {
  try {
    return /libwrap/.test(execFileSync('ldd', ['/usr/sbin/sshd'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
})();

describe('probe: servers that refuse this client, or want more than it has', { skip }, () => {
  let lab: Lab;
  let createdRunSshd = false;
  const S = () => lab.serverIp;
  const SMB1 = () => `10.213.${lab.net}.6`;
  const SMB311 = () => `10.213.${lab.net}.7`;
  const runs = new Map<string, CheckJson>();
  const probe = async (ports: string, service?: string): Promise<CheckJson> => {
    const key = `${ports} ${service ?? ''}`;
    const seen = runs.get(key);
    if (seen) return seen;
    const r = await lab.cli([
      'probe',
      S(),
      ports,
      ...(service ? ['--service', service] : []),
      '--format',
      'json',
    ]);
    const doc = checkJson(r);
    runs.set(key, doc);
    return doc;
  };
  const port = (doc: CheckJson, p: number): PortVerdict & { hint: string } => {
    const got = portVerdicts(doc).get(`${S()}|tcp|${p}`);
    assert.ok(got, `no result for tcp/${p}\n${lab.logs()}`);
    const hint = doc.flows.find((f) => f.id === got.flow)?.hint ?? '';
    return { ...got, hint };
  };

  before(async () => {
    lab = Lab.create('q', 21);
    const d = lab.dir;
    const { key, cert } = selfSignedCert(d, '/CN=mtls.lab.test/O=portolan');
    const sServer = (p: number, ...args: string[]) =>
      lab.start(
        `openssl s_server ${p}`,
        'server',
        [
          'openssl',
          's_server',
          '-quiet',
          '-accept',
          `${S()}:${p}`,
          '-cert',
          cert,
          '-key',
          key,
          '-www',
          ...args,
        ],
        [{ proto: 'tcp', address: S(), port: p }],
      );
    const started: Promise<void>[] = [];
    // -Verify: a client certificate is required (signed by our own CA file, the server's cert).
    started.push(sServer(4443, '-tls1_2', '-Verify', '1', '-CAfile', cert));
    started.push(sServer(4444, '-tls1_3', '-Verify', '1', '-CAfile', cert));
    // A TLS server on a port the flow expects SSH on.
    started.push(sServer(2223));
    // A TLS server whose certificate expired in 2020 (openssl ca sets the dates; req cannot).
    const ca = join(d, 'expired');
    mkdirSync(ca);
    writeFileSync(join(ca, 'index.txt'), '');
    writeFileSync(join(ca, 'serial'), '01\n');
    writeFileSync(
      join(ca, 'ca.cnf'),
      `[ca]\ndefault_ca = d\n[d]\ndatabase = ${ca}/index.txt\nserial = ${ca}/serial\nnew_certs_dir = ${ca}\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n`,
    );
    const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
    openssl(
      'req',
      '-new',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(ca, 'key.pem'),
      '-out',
      join(ca, 'csr.pem'),
      '-subj',
      '/CN=expired.lab.test',
    );
    openssl(
      'ca',
      '-batch',
      '-config',
      join(ca, 'ca.cnf'),
      '-selfsign',
      '-keyfile',
      join(ca, 'key.pem'),
      '-in',
      join(ca, 'csr.pem'),
      '-out',
      join(ca, 'cert.pem'),
      '-startdate',
      '20200101000000Z',
      '-enddate',
      '20200102000000Z',
    );
    started.push(
      lab.start(
        'openssl s_server 4447 (expired)',
        'server',
        [
          'openssl',
          's_server',
          '-quiet',
          '-accept',
          `${S()}:4447`,
          '-cert',
          join(ca, 'cert.pem'),
          '-key',
          join(ca, 'key.pem'),
          '-www',
        ],
        [{ proto: 'tcp', address: S(), port: 4447 }],
      ),
    );

    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'hostkey')]);
    if (!existsSync('/run/sshd')) {
      mkdirSync('/run/sshd', { recursive: true });
      createdRunSshd = true;
    }
    // MaxStartups 1: one unauthenticated connection at once; the holder below takes it.
    writeFileSync(
      join(d, 'sshd_config'),
      [
        `ListenAddress ${S()}:22`,
        `HostKey ${join(d, 'hostkey')}`,
        `PidFile ${join(d, 'sshd.pid')}`,
        'UsePAM no',
        'MaxStartups 1',
        'LoginGraceTime 600',
        '',
      ].join('\n'),
    );
    started.push(
      lab.start(
        'sshd',
        'server',
        ['/usr/sbin/sshd', '-D', '-e', '-f', join(d, 'sshd_config')],
        [{ proto: 'tcp', address: S(), port: 22 }],
      ),
    );

    // sshd built with libwrap (Debian's) behind /etc/hosts.deny "sshd: ALL": it accepts, holds the
    // connection 5 s in silence and closes it. The deny file is bound over /etc/hosts.deny in a
    // mount namespace of its own, so the machine's file is left alone.
    writeFileSync(join(d, 'hosts.deny'), 'sshd: ALL\n');
    writeFileSync(
      join(d, 'sshd_wrapped_config'),
      [
        `ListenAddress ${S()}:2222`,
        `HostKey ${join(d, 'hostkey')}`,
        `PidFile ${join(d, 'sshd-wrapped.pid')}`,
        'UsePAM no',
        '',
      ].join('\n'),
    );
    started.push(
      lab.start(
        'sshd behind TCP wrappers',
        'server',
        [
          'unshare',
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          `mount --bind ${join(d, 'hosts.deny')} /etc/hosts.deny && exec /usr/sbin/sshd -D -e -f ${join(d, 'sshd_wrapped_config')}`,
        ],
        [{ proto: 'tcp', address: S(), port: 2222 }],
      ),
    );

    // Two smbd: one whose hosts allow leaves this client out, one that speaks SMB1 only (on a
    // second address). Each has its own state directories.
    const smbd = (name: string, address: string, extra: string) => {
      const dir = join(d, name);
      writeSmbConf(join(dir, 'smb.conf'), dir, address, { share: true, extra });
      return lab.start(
        `smbd ${name}`,
        'server',
        ['smbd', '--foreground', '--no-process-group', '-s', join(dir, 'smb.conf')],
        [{ proto: 'tcp', address, port: 445 }],
      );
    };
    started.push(smbd('smb-deny', S(), `hosts allow = 10.213.${lab.net}.99`));
    lab.addServerAddress(SMB1());
    started.push(smbd('smb1', SMB1(), 'server min protocol = NT1\n  server max protocol = NT1'));
    lab.addServerAddress(SMB311());
    started.push(smbd('smb311', SMB311(), 'server min protocol = SMB3_11'));
    // nginx that completes a handshake only for a server name it has a certificate for.
    started.push(
      lab.startNginx(
        `  server { listen ${S()}:9443 ssl default_server; ssl_reject_handshake on; }
  server { listen ${S()}:9443 ssl; server_name sni.lab.test; ssl_certificate ${cert}; ssl_certificate_key ${key};
    location / { return 200 "lab\\n"; } }
  server { listen ${S()}:9080; return 444; }
  server { listen ${S()}:9444 ssl; ssl_certificate ${cert}; ssl_certificate_key ${key}; return 200; }
  server { listen ${S()}:9081; return 503; }
  server { listen ${S()}:9082; location / { proxy_pass http://127.0.0.1:1; } }
  server { listen ${S()}:9445 ssl; ssl_certificate ${cert}; ssl_certificate_key ${key};
    location / { proxy_pass http://127.0.0.1:1; } }`,
        [
          { proto: 'tcp', address: S(), port: 9443 },
          { proto: 'tcp', address: S(), port: 9080 },
          { proto: 'tcp', address: S(), port: 9444 },
          { proto: 'tcp', address: S(), port: 9081 },
          { proto: 'tcp', address: S(), port: 9082 },
          { proto: 'tcp', address: S(), port: 9445 },
        ],
      ),
    );
    // chronyd that serves only another client (its allow line leaves this one out).
    started.push(lab.startChronyd(S(), `10.213.${lab.net}.99`));
    lab.hosts([`${S()} sni.lab.test`]);
    await Promise.all(started);

    // Holds sshd's one unauthenticated slot: it reads the banner, says so, and stays.
    writeFileSync(
      join(d, 'hold.mjs'),
      `import net from 'node:net';
const s = net.connect(22, process.argv[2]);
s.once('data', () => console.log('holding'));
s.on('error', () => {});
setTimeout(() => process.exit(0), 600000);
`,
    );
    await lab.start('ssh holder', 'client', [process.execPath, join(d, 'hold.mjs'), S()], []);
    const deadline = Date.now() + 120_000; // a hang guard: the loop ends at the banner
    while (!lab.logs().includes('holding')) {
      assert.ok(Date.now() < deadline, `the holder never got sshd's banner\n${lab.logs()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
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

  it('a TLS 1.2 server that requires a client certificate is ok with a caveat, not tls-failed', async () => {
    for (const service of ['https', 'tls']) {
      const r = port(await probe('4443', service), 4443);
      assert.equal(r.verdict, 'ok', `${service}: ${r.detail}`);
      const tls = r.evidence.tls as { protocol: string; subject: string };
      assert.equal(tls.protocol, 'TLSv1.2');
      assert.match(tls.subject, /CN=mtls\.lab\.test/);
      assert.match(r.evidence.caveat as string, /requires a client certificate/);
      assert.match(r.detail, /caveat: the server requires a client certificate/);
    }
  });

  it('a TLS 1.3 server that requires a client certificate is ok with a caveat, not open-unverified', async () => {
    const r = port(await probe('4444', 'https'), 4444);
    assert.equal(r.verdict, 'ok', r.detail);
    assert.equal((r.evidence.tls as { protocol: string }).protocol, 'TLSv1.3');
    assert.match(r.evidence.caveat as string, /requires a client certificate/);
  });

  it("sshd with its MaxStartups full is not-serving with what it said, not 'another service'", async () => {
    const r = port(await probe('22', 'ssh'), 22);
    assert.equal(r.verdict, 'not-serving', r.detail);
    assert.match(r.detail, /without its SSH identification line, after "Exceeded MaxStartups"/);
    assert.match(r.hint, /MaxStartups/);
    assert.doesNotMatch(r.hint, /another service/);
  });

  it('sshd refusing this client through TCP wrappers (silent 5 s, then a close) is not-serving, and the hint names hosts.deny', {
    skip: wrapped ? false : 'sshd is not built with libwrap',
  }, async () => {
    const doc = await probe('2222', 'ssh');
    const r = port(doc, 2222);
    assert.equal(r.verdict, 'not-serving', r.detail);
    assert.equal(doc.failed, true);
    assert.match(r.detail, /held the connection [\d.]+ s in silence, then closed it/);
    assert.match(r.hint, /TCP wrappers/);
    assert.match(r.hint, /\/etc\/hosts\.allow and \/etc\/hosts\.deny on /);
  });

  it('nginx answering 503, or 502 for a backend that is down (HTTP and HTTPS): not-serving, not ok', async () => {
    for (const [p, service, status] of [
      [9081, 'http', '503'],
      [9082, 'http', '502'],
      [9445, 'https', '502'],
    ] as const) {
      const doc = await probe(String(p), service);
      const r = port(doc, p);
      assert.equal(r.verdict, 'not-serving', `${p}: ${r.detail}`);
      assert.equal(doc.failed, true);
      assert.match((r.evidence.http as { status: string }).status, new RegExp(`^HTTP/1\\.1 ${status}`));
      assert.match(r.hint, /the service it fronts cannot serve now/);
      assert.match(r.hint, /the path is open/);
    }
    // The same nginx answering 200 stays ok.
    assert.equal(port(await probe('9444', 'https'), 9444).verdict, 'ok');
  });

  it('a TLS server where SSH is expected is wrong-service, named, not a silent open-unverified', async () => {
    const r = port(await probe('2223', 'ssh'), 2223);
    assert.equal(r.verdict, 'wrong-service', r.detail);
    assert.match(r.detail, /expected SSH, a TLS server \(TLSv1\.3 .*CN=mtls\.lab\.test/);
  });

  it("smbd refusing this client (hosts allow) is not-serving, and the hint names hosts allow, not 'another service'", async () => {
    const r = port(await probe('445'), 445);
    assert.equal(r.verdict, 'not-serving', r.detail);
    assert.match(r.detail, /negative session response 0x81/);
    assert.deepEqual(r.evidence.smb, { refused: '0x81 (not listening for calling name)' });
    assert.match(r.hint, /hosts allow \/ hosts deny/);
  });

  it('a TLS server that wants a server name (SNI) is tls-failed for its address, saying so; ok by its name', async () => {
    const r = port(await probe('9443', 'https'), 9443);
    assert.equal(r.verdict, 'tls-failed', r.detail);
    assert.match(r.detail, /without a server name \(SNI\).*alert 112/);
    assert.match(r.hint, /server name \(SNI\)/);
    const named = checkJson(
      await lab.cli(['probe', 'sni.lab.test', '9443', '--service', 'https', '--format', 'json']),
    );
    assert.equal(named.flows[0]?.verdict, 'ok', JSON.stringify(named.flows[0]?.results));
  });

  it('an HTTP server that closes without answering (nginx return 444) is said to have closed, not to be slow', async () => {
    const r = port(await probe('9080', 'http'), 9080);
    assert.equal(r.verdict, 'open-unverified', r.detail);
    assert.match(r.detail, /then the server closed the connection with no answer to an HTTP request/);
    assert.match(r.hint, /closed the connection without answering http/);
    assert.doesNotMatch(r.hint, /in time|slow or busy/);
  });

  it('check --secret: a port listen could not bind (below 1024, without the capability) is closed, and the hint says listen did not bind it', async () => {
    const resp = `10.213.${lab.net}.4`;
    lab.addServerAddress(resp);
    const d = lab.dir;
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(
        ['client', 'server'],
        [entry('ssh', 'server', 'tcp', [22], 'ssh'), entry('api', 'server', 'tcp', [9006], 'https')],
      ),
    );
    const site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: bind-lab\ncatalogs: [lab.yaml]\nproducts:\n  lab: {}\nhosts:\n  cli: { address: ${lab.clientIp}, roles: [lab:client] }\n  resp: { address: ${resp}, roles: [lab:server] }\n`,
    );
    const secret = 'bind-lab-secret-0123456789';
    // Root without CAP_NET_BIND_SERVICE, as an unprivileged user runs listen: 22 is not bound.
    await lab.start(
      'portolan listen (no CAP_NET_BIND_SERVICE)',
      'server',
      [
        'setpriv',
        '--bounding-set=-net_bind_service',
        process.execPath,
        join(ROOT, 'bin', 'portolan.js'),
        'listen',
        site,
        '--host',
        'resp',
        '--secret',
        secret,
        '--ttl',
        '5m',
      ],
      [{ proto: 'tcp', address: resp, port: 9006 }],
    );
    // It prints what it bound once every socket is tried, just after the last one listens.
    const deadline = Date.now() + 120_000; // a hang guard: the loop ends at the line
    while (!/answering signed probes/.test(lab.logs()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(lab.logs(), /not bound on 10\.213\.\d+\.4: tcp 22: privileged port/);
    const r = checkJson(
      await lab.cli(['check', site, '--from', 'cli', '--secret', secret, '--format', 'json']),
    );
    const ssh = r.flows.find((f) => f.id.includes(' ssh'));
    assert.equal(
      r.flows.find((f) => f.id.includes(' https'))?.verdict,
      'ok (responder)',
      JSON.stringify(r.flows),
    );
    assert.equal(ssh?.verdict, 'closed');
    assert.match(
      ssh?.hint ?? '',
      /not even the portolan responder: portolan listen on resp answered other ports of 10\.213\.\d+\.4 but did not bind this one/,
    );
  });

  it('an SMB1-only server is not-serving, not ok and not a closed connection', async () => {
    const r = checkJson(await lab.cli(['probe', SMB1(), '445', '--format', 'json']));
    const flow = r.flows[0];
    assert.equal(flow?.verdict, 'not-serving', JSON.stringify(flow?.results));
    assert.match(flow?.results[0]?.detail ?? '', /SMB1-only server/);
    assert.deepEqual(flow?.results[0]?.evidence.smb, { dialect: 'SMB1' });
    assert.match(flow?.hint ?? '', /offers only SMB1/);
  });

  it('plain HTTP expected where HTTPS answers (nginx 400 to a plain request, s_server closing) is wrong-service', async () => {
    const doc = await probe('2223,9444', 'http');
    for (const p of [2223, 9444]) {
      const r = port(doc, p);
      assert.equal(r.verdict, 'wrong-service', `${p}: ${r.detail}`);
      assert.match(r.detail, /expected plain HTTP, a TLS server \(TLSv1\.[23] /);
    }
    assert.match(port(doc, 9444).detail, /a plain request gets HTTP\/1\.1 400/);
  });

  it('chronyd that does not serve this client is filtered, and the hint names its allow lines, not only a firewall', async () => {
    const doc = await probe('123/udp');
    const got = portVerdicts(doc).get(`${S()}|udp|123`);
    assert.equal(got?.verdict, 'filtered', got?.detail);
    const hint = doc.flows[0]?.hint ?? '';
    assert.match(hint, /does not serve this machine \(chronyd serves only the clients an allow line names/);
  });

  it('an SMB server that requires 3.1.1 is ok, and says so rather than that it refused', async () => {
    const r = checkJson(await lab.cli(['probe', SMB311(), '445', '--format', 'json']));
    const flow = r.flows[0];
    assert.equal(flow?.verdict, 'ok', JSON.stringify(flow?.results));
    assert.match(flow?.results[0]?.detail ?? '', /requires SMB 3\.1\.1/);
    assert.deepEqual(flow?.results[0]?.evidence.smb, { dialect: '3.1.1 required' });
  });

  it('a TLS server whose certificate expired is ok with a caveat saying so', async () => {
    const r = port(await probe('4447', 'https'), 4447);
    assert.equal(r.verdict, 'ok', r.detail);
    assert.equal((r.evidence.tls as { expired: boolean }).expired, true);
    assert.match(r.evidence.caveat as string, /certificate expired \(Jan {2}2 00:00:00 2020 GMT\)/);
  });
});
