import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { UsageError } from '../src/errors.js';
import { loadSite } from '../src/inventory/load.js';
import type { Host } from '../src/inventory/types.js';
import { chooseBind, isLocalAddress, normalizeIp } from '../src/listen/addresses.js';
import { formatTtl, MAX_TTL_SECONDS, parseTtl } from '../src/listen/duration.js';
import { inboundFor, subtractPorts } from '../src/listen/inbound.js';
import { LOG_BURST, MAX_SOURCES, ProbeLog } from '../src/listen/log.js';
import {
  MAX_SKEW_SECONDS,
  makeProbe,
  NONCE_CACHE_MAX,
  NonceCache,
  verifyReply,
} from '../src/listen/protocol.js';
import { Answerer, MAX_PROBE_BYTES, type ProbeEvent } from '../src/listen/responder.js';
import { allot, bindReport, socketGroups } from '../src/listen/sockets.js';
import { buildPlan } from '../src/plan/plan.js';
import { ROOT } from './helpers.js';

const SECRET = 'unit-test-secret-0123456789';

describe('listen: --ttl', () => {
  it('reads seconds, minutes and hours up to 24h', () => {
    assert.equal(parseTtl('90s'), 90);
    assert.equal(parseTtl('15m'), 900);
    assert.equal(parseTtl('1h'), 3600);
    assert.equal(parseTtl('24h'), MAX_TTL_SECONDS);
    assert.equal(parseTtl('1440m'), MAX_TTL_SECONDS);
  });
  it('refuses what is not a duration from 1s to 24h', () => {
    for (const bad of ['', '15', 'm', '0s', '25h', '86401s', '1d', '1.5h', '-5m', '15 m', '1h30m'])
      assert.throws(() => parseTtl(bad), UsageError, bad);
  });
  it('formats durations for the user', () => {
    assert.equal(formatTtl(900), '15m');
    assert.equal(formatTtl(90), '1m30s');
    assert.equal(formatTtl(5400), '1h30m');
    assert.equal(formatTtl(3), '3s');
  });
});

describe('listen: what a host must accept', () => {
  const { inventory, catalogs } = loadSite(`${ROOT}examples/mixed-site.yaml`);
  const plan = buildPlan(inventory, catalogs);

  it('takes every TCP/UDP port of the flows to the host, ranges included, and local flows apart', () => {
    const sql = inboundFor(plan, 'sql-01');
    for (const range of [
      [2500, 3300],
      [49152, 65535],
    ])
      assert.ok(
        sql.remote.tcp.some(([lo, hi]) => lo === range[0] && hi === range[1]),
        JSON.stringify(sql.remote.tcp),
      );
    assert.deepEqual(sql.local.tcp, [[3545, 3545]]);
    assert.ok(
      !sql.remote.tcp.some(([lo, hi]) => lo <= 3545 && 3545 <= hi),
      'a local-only port is not bound for the network',
    );
    assert.deepEqual(sql.remote.udp, []);
    assert.ok(sql.peers.length > 0);
  });
  it('takes UDP and ICMP flows, and names the peers to run check on', () => {
    const ntp = inboundFor(plan, 'ntp-01');
    assert.deepEqual(ntp.remote.udp, [[123, 123]]);
    const toOf = (host: string) => plan.flows.filter((f) => f.to.host === host);
    for (const h of inventory.hosts) {
      const inb = inboundFor(plan, h.name);
      assert.equal(inb.icmp.length, toOf(h.name).filter((f) => f.protocol === 'icmp').length, h.name);
      for (const p of inb.peers) assert.ok(toOf(h.name).some((f) => f.from.host === p && !f.local));
    }
  });
  it('subtracts port sets', () => {
    assert.deepEqual(
      subtractPorts(
        [
          [1, 10],
          [20, 30],
        ],
        [
          [5, 6],
          [25, 40],
        ],
      ),
      [
        [1, 4],
        [7, 10],
        [20, 24],
      ],
    );
    assert.deepEqual(subtractPorts([[5, 5]], [[5, 5]]), []);
  });
});

describe('listen: sockets within the open-file limit', () => {
  const groups = [
    {
      proto: 'tcp' as const,
      address: '127.0.0.1',
      ports: [[2500, 3300] as const, [445, 445] as const],
      local: false,
    },
    { proto: 'udp' as const, address: '127.0.0.1', ports: [[123, 123] as const], local: false },
  ];
  it('binds everything when it fits', () => {
    const { sockets, over } = allot(groups, undefined);
    assert.equal(sockets.length, 803);
    assert.deepEqual(over, []);
  });
  it('binds single ports first, then as much of a range as fits, and lists the rest', () => {
    const { sockets, over } = allot(groups, 102);
    assert.equal(sockets.length, 102);
    assert.ok(sockets.some((s) => s.proto === 'udp' && s.port === 123));
    assert.ok(sockets.some((s) => s.proto === 'tcp' && s.port === 445));
    assert.deepEqual(
      over.map((g) => [g.proto, g.ports]),
      [['tcp', [[2600, 3300]]]],
    );
  });
});

describe('listen: sockets per address', () => {
  const inbound = {
    remote: { tcp: [[80, 80] as const], udp: [] },
    local: { tcp: [[80, 80] as const, [3545, 3545] as const], udp: [] },
    icmp: [],
    peers: [],
  };
  it('puts local flows on loopback, apart from a specific address', () => {
    const g = socketGroups(inbound, {
      addresses: ['10.0.0.5'],
      coversLoopback: false,
      wildcard: false,
      why: '',
    });
    assert.deepEqual(
      g.map((x) => [x.proto, x.address, x.ports, x.local]),
      [
        ['tcp', '10.0.0.5', [[80, 80]], false],
        [
          'tcp',
          '127.0.0.1',
          [
            [80, 80],
            [3545, 3545],
          ],
          true,
        ],
      ],
    );
  });
  it('does not bind loopback again for a port a wildcard already covers (it would collide)', () => {
    const g = socketGroups(inbound, { addresses: ['::'], coversLoopback: true, wildcard: true, why: '' });
    assert.deepEqual(
      g.map((x) => [x.proto, x.address, x.ports, x.local]),
      [
        ['tcp', '::', [[80, 80]], false],
        ['tcp', '127.0.0.1', [[3545, 3545]], true],
      ],
    );
  });
  it('merges bind outcomes back into ranges, failures grouped by reason', () => {
    const spec = (port: number) => ({ proto: 'tcp' as const, address: '127.0.0.1', port, local: false });
    const inUse = { code: 'EADDRINUSE', message: 'listen EADDRINUSE' };
    const r = bindReport(
      [
        { spec: spec(10) },
        { spec: spec(11) },
        { spec: spec(12), error: inUse },
        { spec: spec(13) },
        { spec: spec(14), error: inUse },
      ],
      [{ proto: 'tcp', address: '127.0.0.1', ports: [[20, 30]], local: false }],
      5,
    );
    assert.deepEqual(
      r.bound.map((g) => g.ports),
      [
        [
          [10, 11],
          [13, 13],
        ],
      ],
    );
    assert.deepEqual(
      r.notBound.map((g) => [g.code, g.ports]),
      [
        [
          'EADDRINUSE',
          [
            [12, 12],
            [14, 14],
          ],
        ],
        ['EMFILE', [[20, 30]]],
      ],
    );
    assert.equal(r.notBound[0]?.reason, 'already in use');
  });
});

describe('listen: bind addresses', () => {
  const host = (address: Host['address']): Host => ({ name: 'h', address, roles: [], facts: {} });
  const locals = ['127.0.0.1', '::1', '10.0.0.5', 'fd00::5'];
  const opts = {
    locals,
    resolve: async (n: string) => (n === 'me.example' ? ['10.0.0.5'] : ['203.0.113.9']),
  };

  it('binds the inventory address when it is on this machine', async () => {
    const b = await chooseBind(host({ kind: 'ip', text: '10.0.0.5', version: 4 }), [], opts);
    assert.deepEqual(b.addresses, ['10.0.0.5']);
    assert.equal(b.wildcard, false);
    assert.equal(b.coversLoopback, false);
  });
  it('binds the local member of a CIDR and a DNS name that resolves here', async () => {
    assert.deepEqual(
      (await chooseBind(host({ kind: 'cidr', text: '10.0.0.0/28', version: 4, prefix: 28 }), [], opts))
        .addresses,
      ['10.0.0.5'],
    );
    assert.deepEqual((await chooseBind(host({ kind: 'dns', text: 'me.example' }), [], opts)).addresses, [
      '10.0.0.5',
    ]);
  });
  it('binds all addresses (dual-stack) when the address is elsewhere, and says why', async () => {
    const b = await chooseBind(host({ kind: 'ip', text: '198.51.100.7', version: 4 }), [], opts);
    assert.deepEqual(b.addresses, ['::']);
    assert.equal(b.wildcard, true);
    assert.equal(b.coversLoopback, true);
    assert.match(b.why, /not on this machine/);
    const v4only = await chooseBind(host({ kind: 'dns', text: 'far.example' }), [], {
      ...opts,
      locals: ['127.0.0.1', '10.0.0.5'],
    });
    assert.deepEqual(v4only.addresses, ['0.0.0.0']);
  });
  it('takes --bind only for this machine or a wildcard', async () => {
    const h = host({ kind: 'ip', text: '198.51.100.7', version: 4 });
    assert.deepEqual((await chooseBind(h, ['127.0.0.1'], opts)).addresses, ['127.0.0.1']);
    assert.equal((await chooseBind(h, ['127.0.0.1'], opts)).coversLoopback, true);
    assert.deepEqual((await chooseBind(h, ['0.0.0.0'], opts)).addresses, ['0.0.0.0']);
    await assert.rejects(chooseBind(h, ['198.51.100.7'], opts), /not an address of this machine/);
    await assert.rejects(chooseBind(h, ['localhost'], opts), /not an IP address/);
  });
  it('treats 127.0.0.0/8 as local and IPv4-mapped addresses as IPv4', () => {
    assert.ok(isLocalAddress('127.0.0.2', locals));
    assert.ok(isLocalAddress('::ffff:10.0.0.5', locals));
    assert.equal(normalizeIp('::ffff:127.0.0.1'), '127.0.0.1');
    assert.ok(!isLocalAddress('10.0.0.6', locals));
  });
});

describe('listen: answers', () => {
  it('answers a verified probe with the 46-byte OK line, once', () => {
    const a = new Answerer(SECRET);
    const probe = makeProbe(SECRET, 'udp', 123);
    const first = a.answer(Buffer.from(probe.line), 'udp', 123);
    assert.ok('reply' in first);
    assert.equal(first.reply.length, 46);
    assert.ok(verifyReply(SECRET, probe, first.reply.toString('latin1')));
    assert.deepEqual(a.answer(Buffer.from(probe.line), 'udp', 123), { reason: 'replayed nonce' });
  });
  it('answers every probe of six full-range checks (two sources, three runs) sent within one skew window', () => {
    // 2500-3300 and 49152-65535 are 17,186 ports; two sources checking three times in a row send
    // 103,116 signed probes (more when a busy responder is asked again), all within minutes.
    const a = new Answerer(SECRET);
    const now = Date.now();
    const probes = 6 * 17_186 + 20_000;
    let answered = 0;
    const odd = new Map<string, number>();
    for (let i = 0; i < probes; i++) {
      const port = 2500 + (i % 801);
      const t = now + Math.floor((i / probes) * 240_000);
      const r = a.answer(Buffer.from(makeProbe(SECRET, 'tcp', port, t, 2).line), 'tcp', port, t);
      if ('reply' in r) answered++;
      else odd.set(r.reason, (odd.get(r.reason) ?? 0) + 1);
    }
    assert.equal(answered, probes, JSON.stringify([...odd]));
  });
  it('remembers a nonce until its probe leaves the window, and a full cache is load, not a replay', () => {
    const c = new NonceCache(3);
    const ts = 1_000_000;
    const at = (s: number) => s * 1000;
    assert.equal(c.add('a', ts, at(ts)), 'new');
    assert.equal(c.add('a', ts, at(ts + MAX_SKEW_SECONDS)), 'replayed', 'still inside the window');
    assert.equal(c.add('b', ts, at(ts)), 'new');
    assert.equal(c.add('c', ts + 100, at(ts)), 'new');
    assert.equal(c.add('d', ts, at(ts)), 'full');
    // One second past ts + MAX_SKEW_SECONDS: a and b are out of the window (verifyProbe refuses them
    // by their timestamp), so they make room; c is still remembered.
    assert.equal(c.add('d', ts + MAX_SKEW_SECONDS, at(ts + MAX_SKEW_SECONDS + 1)), 'new');
    assert.equal(c.size, 2);
    assert.equal(c.add('c', ts + 100, at(ts + MAX_SKEW_SECONDS + 1)), 'replayed');
    assert.ok(NONCE_CACHE_MAX >= 500_000);
    const full = new Answerer(SECRET, new NonceCache(1));
    assert.ok('reply' in full.answer(Buffer.from(makeProbe(SECRET, 'tcp', 80).line), 'tcp', 80));
    const r = full.answer(Buffer.from(makeProbe(SECRET, 'tcp', 80).line), 'tcp', 80);
    assert.ok('load' in r && r.load, JSON.stringify(r));
    assert.match(r.reason, /^load: 1 nonces of probes still inside their 300-s window held \(at most 1\)$/);
  });
  it('refuses the wrong secret, port, protocol, an old timestamp and oversized input', () => {
    const a = new Answerer(SECRET);
    const reasons = [
      makeProbe('another-secret-0123456789', 'tcp', 80).line,
      makeProbe(SECRET, 'tcp', 81).line,
      makeProbe(SECRET, 'udp', 80).line,
      makeProbe(SECRET, 'tcp', 80, Date.now() - 3_600_000).line,
      `${makeProbe(SECRET, 'tcp', 80).line.slice(0, -1)}${' '.repeat(MAX_PROBE_BYTES)}\n`,
    ].map((line) => a.answer(Buffer.from(line), 'tcp', 80));
    for (const r of reasons) assert.ok('reason' in r, JSON.stringify(r));
  });
  it('never replies with more bytes than it received, whatever arrives (property)', () => {
    const a = new Answerer(SECRET);
    const valid = fc
      .constantFrom('tcp' as const, 'udp' as const)
      .map((p) => Buffer.from(makeProbe(SECRET, p, 443).line));
    const mutated = fc
      .tuple(valid, fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([b, i, v]) => Buffer.from(b).fill(v, i % b.length, (i % b.length) + 1));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
          valid,
          mutated,
        ),
        (data) => {
          for (const proto of ['tcp', 'udp'] as const) {
            const r = a.answer(data, proto, 443);
            if ('reply' in r) assert.ok(r.reply.length <= data.length);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('listen: log', () => {
  const event = (address: string, result: ProbeEvent['result'] = 'rejected'): ProbeEvent => ({
    result,
    proto: 'udp',
    port: 123,
    from: { address, port: 40000 },
    to: { address: '127.0.0.1', port: 123 },
    received: 10,
    sent: 0,
    reason: 'not a portolan probe',
  });

  it('rate-limits lines per source but counts every probe', () => {
    const lines: string[] = [];
    const log = new ProbeLog('json', (l) => lines.push(l));
    const t = 1_000_000;
    for (let i = 0; i < 100; i++) log.probe(event('10.0.0.1'), t);
    log.probe(event('10.0.0.2', 'answered'), t);
    assert.equal(lines.length, LOG_BURST + 1, 'another source is not silenced by a noisy one');
    for (let i = 0; i < 10; i++) log.probe(event('10.0.0.1'), t + 5000);
    assert.equal(lines.length, LOG_BURST + 1 + 1 + 5, 'a suppressed line, then one line a second');
    assert.equal(JSON.parse(lines[LOG_BURST + 1] ?? '{}').event, 'suppressed');
    assert.equal(JSON.parse(lines[LOG_BURST + 1] ?? '{}').lines, 100 - LOG_BURST);
    const s = log.summary();
    assert.equal(s.rejected, 110);
    assert.equal(s.answered, 1);
    assert.deepEqual(s.sources[0], {
      source: '10.0.0.1',
      answered: 0,
      rejected: 110,
      reach: 0,
      refused: 0,
      suppressed: 85,
    });
    const parsed = JSON.parse(lines[0] ?? '{}') as { event: string; from: { address: string } };
    assert.equal(parsed.event, 'probe');
    assert.equal(parsed.from.address, '10.0.0.1');
  });
  it('keeps memory bounded under spoofed sources', () => {
    const log = new ProbeLog('text', () => {});
    for (let i = 0; i < MAX_SOURCES + 1000; i++)
      log.probe(event(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
    const s = log.summary();
    assert.equal(s.sources.length, MAX_SOURCES + 1);
    assert.equal(s.sources.find((x) => x.source === 'other sources')?.rejected, 1000);
  });
  it('writes text lines with the source address and port it saw', () => {
    const lines: string[] = [];
    new ProbeLog('text', (l) => lines.push(l)).probe(event('2001:db8::7'));
    assert.match(
      lines[0] ?? '',
      / rejected udp\/123 from \[2001:db8::7\]:40000 to 127\.0\.0\.1:123 .*: not a portolan probe\n$/,
    );
  });
});
