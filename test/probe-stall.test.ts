import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import { msrpcProbe } from '../src/probe/msrpc.js';
import { tlsProbe } from '../src/probe/tls.js';
import { udpAttempt } from '../src/probe/udp.js';
import {
  type CheckJson,
  catalog,
  checkJson,
  entry,
  labUnavailable,
  onPath,
  selfSignedCert,
} from './check-lab.js';
import { BIN, ROOT, runCliAsync } from './helpers.js';

/**
 * Slow peers and a held-up prober: an answer that comes late, or that waits unread while this
 * machine was busy, is never a failing verdict.
 *
 * A prober whose event loop is held up (shared CPU, thousands of sweep completions in one turn)
 * while a peer's answer arrives: the answer is in the socket when the loop runs again, and it must
 * be read, never taken for silence. libuv runs expired timers before it polls the sockets again
 * when the loop was held up in an I/O callback, so a timeout that fires then must look once more.
 *
 * The peer runs in a worker thread (its own event loop) and talks to this thread through shared
 * memory, so the order is forced: the peer has the datagram, then this thread's loop blocks inside
 * an I/O callback, then the peer answers, then the block lasts past the attempt's timeout.
 */

const GOT = 0;
const GO = 1;
const ANSWERED = 2;

/** A UDP peer in a worker: it answers each datagram with "pong", but only once told to. */
function udpPeer(): Promise<{ port: number; flags: Int32Array; worker: Worker }> {
  const flags = new Int32Array(new SharedArrayBuffer(12));
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const dgram = require('node:dgram');
     const flags = workerData;
     const s = dgram.createSocket('udp4');
     s.on('message', (m, r) => {
       Atomics.store(flags, ${GOT}, 1);
       Atomics.notify(flags, ${GOT});
       Atomics.wait(flags, ${GO}, 0, 30000);
       s.send(Buffer.from('pong'), r.port, r.address, () => {
         Atomics.store(flags, ${ANSWERED}, 1);
         Atomics.notify(flags, ${ANSWERED});
       });
     });
     s.bind(0, '127.0.0.1', () => parentPort.postMessage(s.address().port));`,
    { eval: true, workerData: flags },
  );
  return new Promise((resolve) => worker.once('message', (port: number) => resolve({ port, flags, worker })));
}

/** Resolves once `flags[i]` is set, without blocking this thread's loop. */
async function until(flags: Int32Array, i: number): Promise<void> {
  const end = Date.now() + 30_000;
  while (Atomics.load(flags, i) === 0) {
    assert.ok(Date.now() < end, `flag ${i} never set`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * Runs `hold` inside an I/O callback of this thread (a datagram to itself), where a held-up loop
 * is held up in a busy prober: the sweep's completions run there.
 */
async function inIoCallback(hold: () => void): Promise<void> {
  const kick = dgram.createSocket('udp4');
  await new Promise<void>((r) => kick.bind(0, '127.0.0.1', r));
  await new Promise<void>((resolve) => {
    kick.once('message', () => {
      hold();
      resolve();
    });
    kick.send(Buffer.from('k'), kick.address().port, '127.0.0.1');
  });
  kick.close();
}

describe('a prober held up while the answer arrives', () => {
  const workers: Worker[] = [];
  after(async () => {
    for (const w of workers) await w.terminate();
  });

  it('reads a UDP reply that came while its loop was held up past the timeout (never silent)', async () => {
    const peer = await udpPeer();
    workers.push(peer.worker);
    const timeoutMs = 200;
    const t0 = Date.now();
    const attempt = udpAttempt({
      address: '127.0.0.1',
      family: 4,
      port: peer.port,
      payloads: [Buffer.from('ping')],
      timeoutMs,
    });
    await until(peer.flags, GOT);
    await inIoCallback(() => {
      Atomics.store(peer.flags, GO, 1);
      Atomics.notify(peer.flags, GO);
      const lock = new Int32Array(new SharedArrayBuffer(4));
      // Blocks this thread (its event loop too) until the reply is on its way and the timeout due.
      while (Atomics.load(peer.flags, ANSWERED) === 0 || Date.now() < t0 + timeoutMs + 100)
        Atomics.wait(lock, 0, 0, 5);
    });
    const out = await attempt;
    assert.equal(out.kind, 'reply', `the reply waited unread in the socket: ${JSON.stringify(out)}`);
    assert.equal(out.kind === 'reply' ? out.data.toString() : '', 'pong');
  });
});

describe('a TLS server slower than the service timeout', () => {
  // A working TLS server that answers a ClientHello only once told to (a prefork server with every
  // worker busy, an event loop held up): the probe's wait runs out first. Nothing is wrong with its
  // certificate or TLS settings, so the port is open-unverified, never tls-failed (it once was, with
  // the hint to check the certificate).
  let dir = '';
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is open-unverified, never tls-failed, and the same server completes a handshake later', {
    skip: onPath('openssl') ? false : 'openssl is not installed',
  }, async () => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-slow-tls-'));
    const pem = selfSignedCert(dir, '/CN=slow.test');
    const server = tls.createServer({
      key: readFileSync(pem.key),
      cert: readFileSync(pem.cert),
    });
    server.on('tlsClientError', () => {});
    const held: net.Socket[] = [];
    let go = false;
    const front = net.createServer((sock) => {
      sock.on('error', () => {});
      if (go) server.emit('connection', sock);
      else held.push(sock);
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const port = (front.address() as net.AddressInfo).port;
    try {
      const out = await tlsProbe({ address: '127.0.0.1', port, timeoutMs: 300 }, { http: false });
      assert.equal(out.verdict, 'open-unverified', JSON.stringify(out));
      assert.match(out.detail, /no answer to the TLS ClientHello within 300 ms: a slow or busy server/);
      // At least both: how many connects a starved machine makes is not this test's business.
      assert.ok(
        held.length >= 2,
        `the handshake and the look at who else answers both waited (${held.length})`,
      );
      // What the admin reads: the same, and a hint that does not send them to the certificate.
      const r = await runCliAsync([
        'probe',
        '127.0.0.1',
        String(port),
        '--service',
        'tls',
        '--format',
        'json',
      ]);
      const flow = (JSON.parse(r.stdout) as CheckJson).flows[0];
      assert.equal(flow?.verdict, 'open-unverified', r.stdout);
      assert.match(
        flow?.hint ?? '',
        /did not answer on tcp\/\d+ on 127\.0\.0\.1 in time: a slow or busy service/,
      );
      assert.doesNotMatch(flow?.hint ?? '', /certificate|cannot be recognised/);
      // Silence is also what a device that holds the session looks like: the hint says so.
      assert.match(flow?.hint ?? '', /an IPS or application-aware firewall/);
      assert.equal(r.code, 0, r.stderr);
      // Once the server gets to it, the handshake completes: a slow server, not a failing one.
      go = true;
      const c = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => {
        c.once('secureConnect', resolve);
        c.once('error', reject);
      });
      c.destroy();
    } finally {
      for (const h of held) h.destroy();
      front.close();
    }
  });
});

describe("a drop that outlasts the kernel's SYN retries", () => {
  // With a --timeout longer than the kernel's own patience (net.ipv4.tcp_syn_retries: 1 here, so
  // it gives up after about 3 s), the connect to a port behind a drop ends with ETIMEDOUT before
  // check's timeout does. Nothing answered: filtered, never blocked ("a firewall rejects ... ICMP
  // unreachable", which it once said). In a network namespace of its own (unshare -n), gone with it.
  const skip = labUnavailable(['unshare']);
  let dir = '';
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is filtered, never blocked', { skip: skip ?? false, timeout: 120_000 }, () => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-syn-timeout-'));
    writeFileSync(
      join(dir, 'catalog.yaml'),
      catalog(['client', 'server'], [entry('drop', 'server', 'tcp', [9], 'discard')]),
    );
    writeFileSync(
      join(dir, 'site.yaml'),
      [
        'site: syn-timeout',
        'catalogs: [catalog.yaml]',
        'products: { lab: {} }',
        'hosts:',
        '  srv: { address: 127.0.0.1, roles: [lab:server] }',
        '  cli: { address: 127.0.0.2, roles: [lab:client] }',
        '',
      ].join('\n'),
    );
    const setup = [
      'ip link set lo up',
      'sysctl -qw net.ipv4.tcp_syn_retries=1',
      'nft add table inet t',
      "nft 'add chain inet t i { type filter hook input priority 0; }'",
      'nft add rule inet t i tcp dport 9 drop',
      'exec "$@"',
    ].join(' && ');
    const r = spawnSync(
      'unshare',
      [
        '-n',
        'sh',
        '-c',
        setup,
        'sh',
        process.execPath,
        BIN,
        'check',
        join(dir, 'site.yaml'),
        '--from',
        'cli',
      ].concat(['--timeout', '8000', '--format', 'json']),
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1', PORTOLAN_MAX_RATE: '0' },
        timeout: 110_000,
      },
    );
    const doc = checkJson(r);
    const result = doc.flows[0]?.results[0];
    assert.equal(doc.flows[0]?.verdict, 'filtered', JSON.stringify(result));
    assert.match(result?.detail ?? '', /^no answer to \d+ spaced connects/);
    assert.equal(result?.evidence.errno, undefined);
    assert.equal(r.status, 1);
  });
});

describe('the WMI port ept_map hands out accepts, then resets before the prober reads the connect', () => {
  // A fake endpoint mapper (bind_ack, then ept_map naming a port) and, on that port, a listener that
  // accepts and resets at once (a connection limit), both in a worker thread; this thread's loop is
  // held up from just after the connect to that port until the reset has come. The connect then
  // completes with ECONNRESET: the SYN got through and something accepted, so the path is open,
  // never reset-after-connect with the advice to allow the port (it once was).
  const RESETS = 0;
  it('is ok: the port accepts a connection', async () => {
    const shared = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const { parentPort, workerData: resets } = require('node:worker_threads');
       const net = require('node:net');
       const dyn = net.createServer((c) => { c.on('error', () => {}); c.resetAndDestroy(); Atomics.add(resets, ${RESETS}, 1); Atomics.notify(resets, ${RESETS}); });
       dyn.listen(0, '127.0.0.1', () => {
         const port = dyn.address().port;
         const ack = Buffer.alloc(60);
         ack.set([5, 0, 12, 3, 0x10, 0, 0, 0]);
         ack.writeUInt16LE(60, 8);
         ack.writeUInt16LE(4, 24);
         ack.write('135\\0', 26, 'latin1');
         ack[32] = 1;
         // ept_map response: one tower whose only floor is TCP port \`port\`.
         const map = Buffer.alloc(92);
         map.set([5, 0, 2, 3, 0x10, 0, 0, 0]);
         map.writeUInt16LE(92, 8);
         map.writeUInt32LE(1, 44); // num_towers
         map.writeUInt32LE(4, 48); // max_count
         map.writeUInt32LE(1, 56); // actual_count
         map.writeUInt32LE(3, 60); // referent
         map.writeUInt32LE(9, 64); // tower_length
         map.writeUInt32LE(9, 68); // conformant size
         map.writeUInt16LE(1, 72); // one floor
         map.writeUInt16LE(1, 74); // lhs length
         map[76] = 0x07; // TCP port
         map.writeUInt16LE(2, 77); // rhs length
         map.writeUInt16BE(port, 79);
         const epm = net.createServer((c) => {
           c.on('error', () => {});
           let got = 0;
           c.on('data', (d) => { got += d.length; if (got === 72) c.write(ack); else if (got > 72) c.write(map); });
         });
         epm.listen(0, '127.0.0.1', () => parentPort.postMessage({ epm: epm.address().port, dyn: port }));
       });`,
      { eval: true, workerData: shared },
    );
    const ports = await new Promise<{ epm: number; dyn: number }>((resolve) =>
      worker.once('message', resolve),
    );
    const connect = net.Socket.prototype.connect;
    let held = 0;
    try {
      // Just after the connect to the handed-out port starts (the check phase of the same turn, before
      // the loop polls for its completion), hold this thread until the worker has reset it.
      net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
        // net.connect hands its options on as the first element of an array.
        const o = (Array.isArray(args[0]) ? args[0][0] : args[0]) as { port?: number } | undefined;
        if (o && typeof o === 'object' && Number(o.port) === ports.dyn)
          setImmediate(() => {
            held++;
            const end = Date.now() + 30_000;
            while (Atomics.load(shared, RESETS) === 0 && Date.now() < end)
              Atomics.wait(shared, RESETS, 0, 50);
          });
        return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
      } as typeof connect;
      const out = await msrpcProbe({ address: '127.0.0.1', port: ports.epm, timeoutMs: 5000 });
      assert.equal(
        Atomics.load(shared, RESETS),
        1,
        `the handed-out port was dialled and reset: ${JSON.stringify(out)}`,
      );
      assert.equal(held, 1, 'this thread was held up after the connect started');
      assert.equal(out.verdict, 'ok', JSON.stringify(out));
      assert.equal(out.evidence.errno, 'ECONNRESET', JSON.stringify(out));
      assert.match(out.detail, new RegExp(`ept_map hands out tcp/${ports.dyn} .*which accepts a connection`));
      assert.doesNotMatch(out.detail, /allow tcp/);
    } finally {
      net.Socket.prototype.connect = connect;
      await worker.terminate();
    }
  });
});
