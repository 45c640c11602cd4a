import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { makeProbe, RESPONDER_CONNECTIONS_PER_SOURCE } from '../src/listen/protocol.js';
import { Answerer, type ProbeEvent, Responder } from '../src/listen/responder.js';
import { freePort, OWN_LOOPBACK } from './helpers.js';

/**
 * The responder's per-source share against a real Responder on loopback (no fakes): what it holds
 * per source is what is open, so a source's count comes back to zero however its connections end,
 * and a later check from that source is never refused for connections it closed long ago.
 */

const SECRET = 'listen-share-secret-0123456789';
// This process's own loopback address (helpers.ts): the port found free there is still free when the
// responder binds it; on 127.0.0.1 a test file running alongside could take it in between.
const ADDRESS = OWN_LOOPBACK;

/** Connects, runs `then` on the connected socket, and resolves once the socket is closed. */
function conn(port: number, then: (s: net.Socket) => void): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, ADDRESS);
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
    });
    s.on('error', () => {});
    s.on('connect', () => then(s));
    s.on('close', () => resolve(got));
  });
}

async function until(what: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

describe('listen: one source, every way a connection ends', () => {
  it('holds per source only what is open: back to 0 once every connection is closed, whoever closed it', {
    timeout: 300_000,
  }, async () => {
    const events: ProbeEvent[] = [];
    const responder = new Responder(new Answerer(SECRET), (e) => events.push(e));
    const port = await freePort(ADDRESS);
    const [bound] = await responder.bindAll([{ proto: 'tcp', address: ADDRESS, port, local: true }]);
    assert.equal(bound?.error, undefined, JSON.stringify(bound?.error));
    try {
      // More idle connections than one source's share (the responder resets some after a quarter
      // second, the rest after its read timeout), and beside them every other way a connection ends.
      const idle = Array.from({ length: RESPONDER_CONNECTIONS_PER_SOURCE + 44 }, () => conn(port, () => {}));
      const over = await until(
        () => responder.held().connections > RESPONDER_CONNECTIONS_PER_SOURCE,
        120_000,
      );
      const others = [
        ...Array.from({ length: 50 }, () => conn(port, (s) => s.end())),
        ...Array.from({ length: 50 }, () => conn(port, (s) => s.resetAndDestroy())),
        ...Array.from({ length: 20 }, () =>
          conn(port, (s) => {
            s.write('PORTOLAN2 tcp');
            s.end();
          }),
        ),
        ...Array.from({ length: 20 }, () => conn(port, (s) => s.write('GET / HTTP/1.0\r\n\r\n'))),
      ];
      await Promise.all([...idle, ...others]);
      // Then signed probes from the same source: answered, and closed by the responder.
      const replies = await Promise.all(
        Array.from({ length: 50 }, () =>
          conn(port, (s) => s.write(makeProbe(SECRET, 'tcp', port, Date.now(), 2).line)),
        ),
      );
      const drained = await until(() => responder.held().connections === 0, 120_000);
      const held = responder.held();
      assert.ok(over, `the source held more than its share at once: ${JSON.stringify(held)}`);
      assert.ok(drained, `still held after every connection closed: ${JSON.stringify(held)}`);
      assert.deepEqual(held.sources, {});
      assert.equal(held.nonces, 50);
      const unanswered = replies.filter((r) => !r.startsWith('PORTOLAN2 OK ')).length;
      assert.equal(unanswered, 0, `signed probes not answered: ${unanswered} of 50`);
      assert.ok(
        events.some((e) => e.result === 'refused'),
        'the idle connections past the share were refused',
      );
    } finally {
      await responder.close();
    }
  });
});
