import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type CheckJson,
  checkJson,
  Lab,
  labUnavailable,
  type PortVerdict,
  portVerdicts,
  selfSignedCert,
} from './check-lab.js';

/**
 * Servers that answer, but not as a plain client expects, against real peers in network
 * namespaces: a TLS server that requires a client certificate (TLS 1.2, where it ends the
 * handshake, and TLS 1.3, where it ends the session after it). Each must get the verdict of what
 * happened, with the reason: not a failed handshake for a server that wants a certificate.
 */

const PEERS = ['openssl', 'ss'];
const skip = labUnavailable(PEERS);

describe('probe: servers that refuse this client, or want more than it has', { skip }, () => {
  let lab: Lab;
  const S = () => lab.serverIp;
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
    await Promise.all(started);
  });

  after(async () => {
    await lab?.destroy();
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
});
