import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CheckJson, catalog, entry, Lab, labUnavailable, portVerdicts } from './check-lab.js';

/**
 * Verdicts under ICMP rate limiting. Linux sends at most a burst of 6 ICMP errors to one peer,
 * then one a second (net.ipv4.icmp_ratelimit, its default, set in the server namespace), so
 * when many closed UDP ports or many rejected TCP ports are probed at once, most of them get no
 * answer in the first round. They must still come out closed / blocked, not filtered: a port is
 * called silent only after spaced retries that each had a fresh token.
 */

const skip = labUnavailable(['ss']);

describe('check: correct verdicts while the peer rate-limits ICMP errors', { skip }, () => {
  let lab: Lab;
  let site: string;

  before(() => {
    lab = Lab.create('b', 2);
    // Linux's defaults, set explicitly in the server namespace (they are per namespace), so the
    // test does not depend on how the host is tuned: destination unreachable is rate-limited to
    // one per second per peer after a burst.
    lab.sysctl({ 'net.ipv4.icmp_ratelimit': '1000', 'net.ipv4.icmp_ratemask': '6168' });
    lab.nft(`
table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 7200-7299 reject with icmpx admin-prohibited
    tcp dport 7400-7403 drop
    udp dport 7500-7501 drop
  }
}
`);
    const d = lab.dir;
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(
        ['client', 'server', 'server2'],
        [
          // 12 rejected TCP ports and 4 dropped ones; 12 closed UDP ports (nothing listens: port
          // unreachable) and 2 dropped ones. Far more ICMP errors than the burst of 6.
          entry('tcp', 'server', 'tcp', ['7200-7211', '7400-7403'], 'veeam-transport'),
          entry('udp', 'server', 'udp', ['7300-7311', '7500-7501'], 'veeam-data-mover'),
          // A range too large for the retry budget given below.
          entry('big', 'server2', 'tcp', ['7220-7259'], 'veeam-transport'),
        ],
      ),
    );
    site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: ratelimit-lab
catalogs: [lab.yaml]
products:
  lab: {}
hosts:
  cli: { address: ${lab.clientIp}, roles: [lab:client] }
  srv: { address: ${lab.serverIp}, roles: [lab:server] }
  srv2: { address: 10.213.${lab.net}.3, roles: [lab:server2] }
`,
    );
    lab.addServerAddress(`10.213.${lab.net}.3`);
  });

  after(async () => {
    await lab?.destroy();
  });

  it('many closed UDP ports stay closed and rejected TCP ports blocked; only drops are silent', async () => {
    const r = await lab.cli(['check', site, '--to', 'srv', '--retry-budget', '60000', '--format', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const m = portVerdicts(JSON.parse(r.stdout) as CheckJson);
    const S = lab.serverIp;
    const at = (proto: string, p: number) => m.get(`${S}|${proto}|${p}`);
    const late = { tcp: 0, udp: 0 };
    for (let p = 7200; p <= 7211; p++) {
      assert.equal(at('tcp', p)?.verdict, 'blocked', `tcp/${p}: ${at('tcp', p)?.detail}`);
      if ((at('tcp', p)?.evidence.attempts as number) > 1) late.tcp++;
    }
    for (let p = 7300; p <= 7311; p++) {
      assert.equal(at('udp', p)?.verdict, 'closed', `udp/${p}: ${at('udp', p)?.detail}`);
      if ((at('udp', p)?.evidence.attempts as number) > 1) late.udp++;
    }
    // The rate limit was real: some answers only came on a retry.
    assert.ok(late.tcp + late.udp >= 6, `only ${late.tcp + late.udp} ports answered late`);
    for (let p = 7400; p <= 7403; p++) {
      assert.equal(at('tcp', p)?.verdict, 'filtered');
      assert.ok((at('tcp', p)?.evidence.attempts as number) >= 3);
      assert.equal(at('tcp', p)?.evidence.rateLimited, undefined);
    }
    for (const p of [7500, 7501]) {
      assert.equal(at('udp', p)?.verdict, 'open|filtered');
      assert.ok((at('udp', p)?.evidence.attempts as number) >= 3);
    }
  });

  it('when the retry budget runs out, the silent rest is marked as not confirmed, never as proven', async () => {
    await new Promise((r) => setTimeout(r, 6500)); // let the peer's token bucket fill again
    const r = await lab.cli(['check', site, '--to', 'srv2', '--retry-budget', '1000', '--format', 'json']);
    const doc = JSON.parse(r.stdout) as CheckJson;
    const m = portVerdicts(doc);
    const all = [...m.values()];
    const blocked = all.filter((x) => x.verdict === 'blocked');
    const filtered = all.filter((x) => x.verdict === 'filtered');
    assert.equal(blocked.length + filtered.length, 40);
    assert.ok(
      blocked.length >= 6 && filtered.length > 0,
      `${blocked.length} blocked, ${filtered.length} filtered`,
    );
    for (const f of filtered) {
      assert.equal(f.evidence.rateLimited, true);
      assert.match(f.detail, /retry budget ran out.*ICMP rate limit/);
    }
  });
});
