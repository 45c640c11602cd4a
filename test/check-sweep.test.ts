import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CheckJson, catalog, entry, Lab, labUnavailable, portVerdicts } from './check-lab.js';

/**
 * The range sweep against every kind of answer at once, over IPv4 and IPv6: 6000 ports per
 * address (so the round is shared between threads), of which some reset, some are rejected with
 * ICMP admin-prohibited or host-unreachable (IPv4), some dropped, some open, and the rest have
 * nothing listening. The sweep dials again on sockets whose connect failed (see dialAgain in
 * src/probe/tcp.ts); PORTOLAN_SWEEP=fresh takes a new socket per port. Both must give the same
 * verdict and errno on every port, and the expected one. How many attempts a port took is not
 * compared: it depends on how much CPU the sweep got (a port whose answer came after its learned
 * timeout is tried again), and this test does not control the load of the machine it runs on.
 */

const skip = labUnavailable(['ss']);
const LO = 20000;
const HI = 25999;
const OPEN = [22500, 22222, 25999];

/** What each port must come out as, by the rules below. */
function expected(port: number, v6: boolean): { verdict: string; errno?: string } {
  if (OPEN.includes(port)) return { verdict: 'open-unverified' };
  if (!v6 && port >= 21000 && port <= 21999) return { verdict: 'blocked', errno: 'EHOSTUNREACH' };
  if (!v6 && port >= 23000 && port <= 23999) return { verdict: 'blocked', errno: 'EHOSTUNREACH' };
  if (port >= 24000 && port <= 24019) return { verdict: 'filtered' };
  return { verdict: 'closed', errno: 'ECONNREFUSED' };
}

describe('check: the range sweep, with and without socket reuse', { skip }, () => {
  let lab: Lab;
  let site: string;
  const runs: Record<'reuse' | 'fresh', CheckJson | undefined> = { reuse: undefined, fresh: undefined };

  before(async () => {
    lab = Lab.create('r', 4);
    // No ICMP rate limit in the server namespace, so the rejected ports answer in the first round. The ICMP rejects are IPv4 only: between namespaces on one CPU an ICMPv6 error
    // to a SYN lands while connect() holds the socket and is kept as a soft error (see the IPv6
    // admin-prohibited test in check-netns.test.ts); over IPv6 those ports have nothing listening.
    lab.sysctl({
      'net.ipv4.icmp_ratelimit': '0',
      'net.ipv4.icmp_msgs_per_sec': '100000',
      'net.ipv4.icmp_msgs_burst': '100000',
    });
    lab.nft(`
table inet lab {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 20000-20999 reject with tcp reset
    meta nfproto ipv4 tcp dport 21000-21999 reject with icmpx admin-prohibited
    meta nfproto ipv4 tcp dport 23000-23999 reject with icmpx host-unreachable
    tcp dport 24000-24019 drop
  }
}
`);
    const d = lab.dir;
    writeFileSync(
      join(d, 'lab.yaml'),
      catalog(['client', 'server'], [entry('range', 'server', 'tcp', [`${LO}-${HI}`], 'veeam-data-mover')]),
    );
    site = join(d, 'site.yaml');
    writeFileSync(
      site,
      `site: sweep-lab
catalogs: [lab.yaml]
products:
  lab: {}
hosts:
  cli: { address: ${lab.clientIp}, roles: [lab:client] }
  srv: { address: ${lab.serverIp}, roles: [lab:server] }
  srv6: { address: "${lab.server6}", roles: [lab:server] }
`,
    );
    await Promise.all(
      OPEN.flatMap((port) =>
        [lab.serverIp, lab.server6].map((address) =>
          lab.start(
            `open ${address} ${port}`,
            'server',
            [process.execPath, join(d, 'fakes.mjs'), 'tcp-silent', address, String(port)],
            [{ proto: 'tcp', address, port }],
          ),
        ),
      ),
    );
    for (const mode of ['reuse', 'fresh'] as const) {
      const r = await lab.cli(['check', site, '--from', 'cli', '--format', 'json'], {
        env: mode === 'fresh' ? { PORTOLAN_SWEEP: 'fresh' } : {},
      });
      assert.equal(r.code, 1, r.stderr);
      runs[mode] = JSON.parse(r.stdout) as CheckJson;
    }
  });

  after(async () => {
    await lab?.destroy();
  });

  it('every port of both addresses gets the verdict and errno its rule gives', () => {
    const got = portVerdicts(runs.reuse as CheckJson);
    const wrong: string[] = [];
    for (const address of [lab.serverIp, lab.server6])
      for (let port = LO; port <= HI; port++) {
        const want = expected(port, address.includes(':'));
        const v = got.get(`${address}|tcp|${port}`);
        if (v?.verdict !== want.verdict || (want.errno && v.evidence.errno !== want.errno))
          wrong.push(`${address} ${port}: ${v?.verdict} ${v?.evidence.errno ?? ''} (want ${want.verdict})`);
      }
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} ports wrong`);
  });

  it('a new socket per port gives the same verdict and errno on every port', () => {
    const a = portVerdicts(runs.reuse as CheckJson);
    const b = portVerdicts(runs.fresh as CheckJson);
    assert.equal(a.size, 2 * (HI - LO + 1));
    const differ: string[] = [];
    for (const [k, v] of a) {
      const w = b.get(k);
      if (w?.verdict !== v.verdict) differ.push(`${k}: verdict ${v.verdict} with reuse, ${w?.verdict} fresh`);
      else if (w.evidence.errno !== v.evidence.errno)
        differ.push(`${k}: errno ${v.evidence.errno} with reuse, ${w.evidence.errno} fresh`);
    }
    assert.deepEqual(differ.slice(0, 10), [], `${differ.length} ports differ`);
  });
});
