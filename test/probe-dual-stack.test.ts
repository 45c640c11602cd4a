import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkJson, Lab, labUnavailable } from './check-lab.js';

/**
 * A DNS name with an A and an AAAA record, its web server reached over IPv4 while a firewall drops
 * it over IPv6 (a ruleset written for IPv4 only, the commonest dual-stack fault). Both addresses
 * are probed, the flow fails (a client that connects to the IPv6 address first fails or waits),
 * and the hint says that it fails on the IPv6 address only, and what that does to a client.
 * When both addresses fail alike, nothing of the kind is said.
 */

const skip = labUnavailable(['ss']);

describe('probe: a name whose IPv4 address passes and IPv6 address is dropped', { skip }, () => {
  let lab: Lab;

  before(async () => {
    lab = Lab.create('6', 33);
    lab.hosts([`${lab.serverIp} dual.lab.test`, `${lab.server6} dual.lab.test`]);
    writeFileSync(
      join(lab.dir, 'web.mjs'),
      `import net from 'node:net';
for (const port of [8080, 8081])
  net.createServer((s) => { s.on('error', () => {}); s.once('data', () => s.end('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok')); }).listen(port, '::');
`,
    );
    await lab.start(
      'web',
      'server',
      [process.execPath, join(lab.dir, 'web.mjs')],
      [
        { proto: 'tcp', address: '::', port: 8080 },
        { proto: 'tcp', address: '::', port: 8081 },
      ],
    );
    lab.nft(`table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    meta nfproto ipv6 tcp dport 8080 drop
    tcp dport 8081 drop
  }
}
`);
  });
  after(async () => {
    await lab?.destroy();
  });

  it('probes both addresses; the flow fails, and the hint says only the IPv6 address fails and what a client meets', async () => {
    const r = await lab.cli(['probe', 'dual.lab.test', '8080', '--service', 'http', '--format', 'json']);
    const doc = checkJson(r);
    const flow = doc.flows[0];
    assert.ok(flow);
    const by = new Map(flow.results.map((x) => [x.address, x.verdict]));
    assert.equal(by.get(lab.serverIp), 'ok', r.stdout);
    assert.equal(by.get(lab.server6), 'filtered', r.stdout);
    assert.equal(flow.verdict, 'filtered');
    assert.equal(r.code, 1);
    assert.match(
      flow.hint,
      new RegExp(
        `dual\\.lab\\.test has several addresses, and this fails on ${lab.server6} only \\(${lab.serverIp.replaceAll('.', '\\.')} passes\\)`,
      ),
    );
    assert.match(flow.hint, /Happy Eyeballs, RFC 8305/);
  });

  it('says nothing of the kind when every address fails alike', async () => {
    const r = await lab.cli(['probe', 'dual.lab.test', '8081', '--service', 'http', '--format', 'json']);
    const flow = checkJson(r).flows[0];
    assert.ok(flow);
    assert.deepEqual(
      flow.results.map((x) => x.verdict),
      ['filtered', 'filtered'],
    );
    assert.doesNotMatch(flow.hint, /several addresses/);
  });
});
