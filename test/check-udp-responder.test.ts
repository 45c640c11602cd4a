import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hostSecret } from '../src/listen/protocol.js';
import { Answerer } from '../src/listen/responder.js';
import { checkJson, portVerdicts } from './check-lab.js';
import { runCliAsync } from './helpers.js';

/**
 * `check --secret` on UDP ports of a responder that was too busy for their datagrams: a
 * `portolan listen` whose event loop is stalled (a burst of connects from another source's range
 * check) reads each signed datagram late, and its reply meets the closed socket of a try check has
 * given up on. A small Node fake on loopback answers with the real Answerer: every signed probe on
 * its TCP port, and on two UDP ports (one an NTP flow) only from the fourth signed datagram on, so
 * the three tries of check's reachability pass all go unanswered; two more UDP ports (one NTP)
 * never answer, and a second TCP port is held by something that closes the probe line unanswered.
 * The ports the responder answers once it can must end `ok (responder)`, not `open|filtered` or,
 * for NTP, `filtered` (a firewall drops udp/123: false); the ports that never answer keep their
 * own findings while the TCP port beside them is answered (the NTP one filtered).
 */

const SECRET = 'udp-busy-test-secret-0123456789';
/** Signed datagrams each busy UDP port leaves unanswered: check's reachability tries (DEFAULTS.attempts). */
const UNANSWERED = 3;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function writeSite(ports: {
  tcp: number;
  closer: number;
  udp: number;
  ntp: number;
  dropped: number;
  ntpDropped: number;
}): string {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-udp-busy-'));
  dirs.push(dir);
  const entry = (id: string, protocol: string, port: number, service: string) =>
    `  - { id: ${id}, from: client, to: server, protocol: ${protocol}, ports: [${port}], service: ${service}, purpose: test, sources: [{ doc: t.txt, table: t, row: 1 }] }`;
  writeFileSync(
    join(dir, 'catalog.yaml'),
    [
      'product: udp-busy',
      'title: udp busy test product',
      'documents: [{ file: t.txt, title: test }]',
      'roles: { client: { title: client }, server: { title: server } }',
      'entries:',
      entry('e-tcp', 'tcp', ports.tcp, 's-tcp'),
      entry('e-closer', 'tcp', ports.closer, 's-closer'),
      entry('e-udp', 'udp', ports.udp, 's-udp'),
      entry('e-ntp', 'udp', ports.ntp, 'ntp'),
      entry('e-dropped', 'udp', ports.dropped, 's-dropped'),
      entry('e-ntp-dropped', 'udp', ports.ntpDropped, 'ntp'),
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'site.yaml'),
    [
      'site: udp-busy-lab',
      'catalogs: [catalog.yaml]',
      'products: { udp-busy: {} }',
      'hosts:',
      '  srv: { address: 127.0.0.1, roles: [udp-busy:server] }',
      '  cli: { address: 127.0.0.2, roles: [udp-busy:client] }',
      '',
    ].join('\n'),
  );
  return join(dir, 'site.yaml');
}

/** The fake responder; `signed` counts the signed datagrams each UDP port received. */
async function fake() {
  const answerer = new Answerer(hostSecret(SECRET, 'srv'));
  const signed = new Map<number, number>();
  const tcp = net.createServer((sock) => {
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!buf.includes(10)) return;
      const a = answerer.answer(buf, 'tcp', sock.localPort ?? 0, Date.now(), '127.0.0.1');
      if ('reply' in a) sock.end(a.reply);
      else sock.destroy();
    });
  });
  await new Promise<void>((r) => tcp.listen({ host: '127.0.0.1', port: 0 }, r));
  // Something other than the responder: it reads the probe line and closes without a reply.
  const closer = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      if (d.includes(10)) sock.destroy();
    });
  });
  await new Promise<void>((r) => closer.listen({ host: '127.0.0.1', port: 0 }, r));
  const udp = async (answerFrom: number) => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const port = s.address().port;
    s.on('message', (msg, rinfo) => {
      // NTP requests and anything else unsigned get nothing, as from portolan listen.
      if (!msg.toString('latin1').startsWith('PORTOLAN')) return;
      const n = (signed.get(port) ?? 0) + 1;
      signed.set(port, n);
      if (n < answerFrom) return;
      const a = answerer.answer(msg, 'udp', port, Date.now(), rinfo.address);
      if ('reply' in a) s.send(a.reply, rinfo.port, rinfo.address);
    });
    return { s, port };
  };
  const busy = await udp(UNANSWERED + 1);
  const ntp = await udp(UNANSWERED + 1);
  const dropped = await udp(Number.POSITIVE_INFINITY);
  const ntpDropped = await udp(Number.POSITIVE_INFINITY);
  return {
    ports: {
      tcp: (tcp.address() as net.AddressInfo).port,
      closer: (closer.address() as net.AddressInfo).port,
      udp: busy.port,
      ntp: ntp.port,
      dropped: dropped.port,
      ntpDropped: ntpDropped.port,
    },
    signed,
    close: () => {
      tcp.close();
      closer.close();
      for (const u of [busy, ntp, dropped, ntpDropped]) u.s.close();
    },
  };
}

describe('check --secret: UDP ports of a responder too busy for their first datagrams', () => {
  it('asks them again beside a TCP port the responder answered: ok (responder), never open|filtered or filtered', {
    timeout: 300_000,
  }, async () => {
    const f = await fake();
    try {
      const site = writeSite(f.ports);
      const r = await runCliAsync(['check', site, '--from', 'cli', '--secret', SECRET, '--format', 'json']);
      const doc = checkJson(r);
      const v = portVerdicts(doc);
      const at = (proto: string, port: number) => v.get(`127.0.0.1|${proto}|${port}`);
      assert.equal(at('tcp', f.ports.tcp)?.verdict, 'ok (responder)', JSON.stringify(at('tcp', f.ports.tcp)));
      assert.deepEqual(
        { udp: at('udp', f.ports.udp)?.verdict, ntp: at('udp', f.ports.ntp)?.verdict },
        { udp: 'ok (responder)', ntp: 'ok (responder)' },
        JSON.stringify([at('udp', f.ports.udp), at('udp', f.ports.ntp)]),
      );
      for (const port of [f.ports.udp, f.ports.ntp]) {
        const p = at('udp', port);
        assert.match(p?.detail ?? '', /responder answered the signed probe/);
        assert.equal(p?.evidence.seenFrom, '127.0.0.1');
      }
      // They were asked again: the reachability pass sent its tries, all left unanswered.
      for (const port of [f.ports.udp, f.ports.ntp])
        assert.ok(
          (f.signed.get(port) ?? 0) > UNANSWERED,
          `udp/${port} got ${f.signed.get(port)} signed datagrams`,
        );
      // Never answered while the TCP port beside it was: its own finding stays (not overloaded).
      const dropped = at('udp', f.ports.dropped);
      assert.equal(dropped?.verdict, 'open|filtered', JSON.stringify(dropped));
      assert.match(
        dropped?.detail ?? '',
        /no answer and no ICMP error to 3 spaced tries of a signed responder probe/,
      );
      // An NTP port it never answers while it answers others: a drop (filtered), and a port
      // something else holds, closing the probe line, stays open-unverified: the responder took
      // this secret, so neither silence is put down to a refused probe.
      const ntpDropped = at('udp', f.ports.ntpDropped);
      assert.equal(ntpDropped?.verdict, 'filtered', JSON.stringify(ntpDropped));
      assert.doesNotMatch(ntpDropped?.detail ?? '', /closed a signed TCP probe/);
      assert.equal(
        at('tcp', f.ports.closer)?.verdict,
        'open-unverified',
        JSON.stringify(at('tcp', f.ports.closer)),
      );
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    } finally {
      f.close();
    }
  });
});
