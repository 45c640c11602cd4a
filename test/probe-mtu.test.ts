import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkJson, Lab, labUnavailable, portVerdicts, selfSignedCert } from './check-lab.js';

/**
 * A path MTU black hole in front of a real TLS server (openssl s_server): nftables in the server
 * namespace drops every packet over 1200 bytes the server sends, and no ICMP says so. The TCP
 * handshake and the ClientHello pass; the server's certificate flight (full-size packets) never
 * arrives. The probe cannot tell this from a server that holds the connection, but its detail and
 * hint must name the black hole, not only a slow server or an IPS.
 */

const skip = labUnavailable(['openssl', 'nft', 'ss']);

describe('probe: a TLS server behind a path MTU black hole', { skip }, () => {
  let lab: Lab;

  before(async () => {
    lab = Lab.create('t', 24);
    const S = lab.serverIp;
    const { key, cert } = selfSignedCert(lab.dir, '/CN=mtu.lab.test');
    lab.nft(`
table inet lab {
  chain output {
    type filter hook output priority 0; policy accept;
    ip saddr ${S} tcp sport 4443 ip length > 1200 drop
  }
}
`);
    await lab.start(
      'openssl s_server',
      'server',
      ['openssl', 's_server', '-accept', `${S}:4443`, '-cert', cert, '-key', key, '-www', '-quiet'],
      [{ proto: 'tcp', address: S, port: 4443 }],
    );
  });

  after(async () => {
    await lab?.destroy();
  });

  it('the silent handshake names the MTU black hole in its detail and hint', async () => {
    const r = await lab.cli(['probe', lab.serverIp, '4443', '--service', 'https', '--format', 'json']);
    const doc = checkJson(r);
    const got = portVerdicts(doc).get(`${lab.serverIp}|tcp|4443`);
    assert.ok(got, lab.logs());
    assert.equal(got.verdict, 'open-unverified', got.detail);
    assert.match(got.detail, /no answer to the TLS ClientHello/);
    assert.match(got.detail, /an MTU black hole/);
    const hint = doc.flows[0]?.hint ?? '';
    assert.match(hint, /a path MTU black hole/);
    assert.match(hint, /fragmentation-needed \/ packet-too-big/);
  });
});
