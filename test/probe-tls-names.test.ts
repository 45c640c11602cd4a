import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkJson, Lab, labUnavailable } from './check-lab.js';

/**
 * A TLS server whose certificate does not name the DNS name a client connects by (the commonest
 * certificate fault after expiry: a server renamed, a certificate made for another host, a
 * default self-signed one). The path and TLS work, so probe says ok, but a client that verifies
 * the name refuses the connection: the ok must carry that as its caveat, naming the names the
 * certificate does have. A certificate that names the host, and a probe by address (no name to
 * check), carry none.
 */

const skip = labUnavailable(['openssl', 'ss']);

function cert(dir: string, name: string, subject: string, san?: string): { key: string; cert: string } {
  const key = join(dir, `${name}-key.pem`);
  const crt = join(dir, `${name}-cert.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      crt,
      '-days',
      '30',
      '-subj',
      subject,
      ...(san ? ['-addext', `subjectAltName=${san}`] : []),
    ],
    { stdio: 'ignore' },
  );
  return { key, cert: crt };
}

describe('probe: a TLS certificate that does not name the host', { skip }, () => {
  let lab: Lab;
  const S = () => lab.serverIp;

  before(async () => {
    lab = Lab.create('n', 32);
    lab.hosts([`${S()} good.lab.test`, `${S()} renamed.lab.test`, `${S()} cn-only.lab.test`]);
    const good = cert(lab.dir, 'good', '/CN=good.lab.test', 'DNS:good.lab.test,DNS:*.pool.lab.test');
    const cnOnly = cert(lab.dir, 'cn', '/CN=old-name.example');
    const serve = (port: number, c: { key: string; cert: string }) =>
      lab.start(
        `openssl s_server ${port}`,
        'server',
        ['openssl', 's_server', '-quiet', '-www', '-accept', String(port), '-cert', c.cert, '-key', c.key],
        [{ proto: 'tcp', address: S(), port }],
      );
    await serve(9443, good);
    await serve(9444, cnOnly);
  });
  after(async () => {
    await lab?.destroy();
  });

  const one = async (host: string, port: number) => {
    const r = await lab.cli(['probe', host, String(port), '--service', 'https', '--format', 'json']);
    const doc = checkJson(r);
    const res = doc.flows[0]?.results[0];
    assert.ok(res, r.stdout + r.stderr);
    return { r, res };
  };

  it('a certificate whose subjectAltName leaves out the name: ok, with a caveat naming its names', async () => {
    const { r, res } = await one('renamed.lab.test', 9443);
    assert.equal(res.verdict, 'ok', r.stdout);
    assert.equal(r.code, 0, 'a caveat does not fail the flow');
    const caveat = String(res.evidence.caveat);
    assert.match(caveat, /does not name renamed\.lab\.test/);
    assert.match(caveat, /DNS:good\.lab\.test, DNS:\*\.pool\.lab\.test/);
    assert.match(res.detail, /caveat: the server's certificate does not name renamed\.lab\.test/);
  });

  it('a certificate with a subject CN and no subjectAltName for another name: the caveat says so', async () => {
    const { res } = await one('cn-only.lab.test', 9444);
    assert.equal(res.verdict, 'ok');
    assert.match(String(res.evidence.caveat), /no subjectAltName, and its subject is CN=old-name\.example/);
  });

  it('a certificate that names the host, and a probe by address, carry no caveat', async () => {
    const { r, res } = await one('good.lab.test', 9443);
    assert.equal(res.verdict, 'ok', r.stdout);
    assert.equal(res.evidence.caveat, undefined, r.stdout);
    const byAddress = await one(S(), 9444);
    assert.equal(byAddress.res.verdict, 'ok');
    assert.equal(byAddress.res.evidence.caveat, undefined, byAddress.r.stdout);
  });
});
