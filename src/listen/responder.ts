import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { normalizeIp } from './addresses.js';
import {
  MAX_SKEW_SECONDS,
  NonceCache,
  type ProbeProtocol,
  RESPONDER_CONNECTIONS,
  RESPONDER_CONNECTIONS_PER_SOURCE,
  verifyProbe,
} from './protocol.js';
import type { BindOutcome, SocketSpec } from './sockets.js';

/** A probe line is about 80 bytes; anything past this is not a probe and is not read further. */
export const MAX_PROBE_BYTES = 128;
/**
 * A prober writes its line right after connecting, but on a loaded machine its event loop can take
 * seconds to see the connection that the kernel completed; a connection with no line is closed this
 * long after accept. Idle connections cost little beyond that: a source past its share has them
 * refused after OVER_SHARE_MS.
 */
export const READ_TIMEOUT_MS = 10_000;
/** How long a connection may stay without a probe line while its source holds more than its share (see onTcp). */
export const OVER_SHARE_MS = 250;
/**
 * Accept queue per listening socket: a range check opens thousands of connections in a burst, and
 * a full queue drops the handshake's last ACK, which the prober only learns of seconds later.
 */
const BACKLOG = 1024;
/** Sockets bound at once while starting (16k listeners bind in about a second this way). */
const BIND_CONCURRENCY = 256;

export interface Peer {
  address: string;
  port: number;
}

/**
 * One connection or datagram as the responder saw it. `from` is the source address on the wire, so
 * NAT shows up. `answered`: a signed probe, answered. `reach`: a TCP connection closed without a
 * byte, as `check` makes first to see whether the port is reachable at all. `refused`: not served
 * because its source (or all sources together) already held as many connections as the responder
 * serves at once, or a verified probe found the nonce cache full (NonceCache); reset with no bytes
 * (UDP: no reply). `rejected`: anything else, closed or ignored with no bytes.
 */
export interface ProbeEvent {
  result: 'answered' | 'rejected' | 'reach' | 'refused';
  proto: ProbeProtocol;
  port: number;
  from: Peer;
  to: Peer;
  /** Bytes received (TCP: up to the end of the line, or what came before giving up). */
  received: number;
  /** Bytes sent back: the OK line when answered, 0 otherwise. */
  sent: number;
  reason?: string;
}

/**
 * `load`: a verified probe not answered because the responder cannot take it now (its nonce cache
 * is full); the responder refuses it as it refuses for load, not as a bad probe.
 */
export type Answer = { reply: Buffer } | { reason: string; load?: true };

/** The most other host names a bad MAC is tried against (see Answerer): bounds the work one bad probe costs. */
export const MAX_OTHER_NAMES = 256;

/**
 * Who the responder stands in for, to say why a probe with a bad MAC failed: `host` is its own
 * inventory name; `others` are host keys (hostSecret of the shared secret) of names a prober may
 * have signed for instead: the inventory's other hosts, and this host's addresses, which is what
 * `probe` signs for without --name. At most MAX_OTHER_NAMES are tried.
 */
export interface SignedFor {
  host: string;
  others: readonly { name: string; key: string }[];
}

/** Decides what to send back for one received probe: the OK line, or nothing and why. */
export class Answerer {
  private readonly others: readonly { name: string; key: string }[];
  constructor(
    private readonly secret: string,
    private readonly nonces = new NonceCache(),
    private readonly signedFor?: SignedFor,
  ) {
    this.others = signedFor?.others.slice(0, MAX_OTHER_NAMES) ?? [];
  }

  /** Nonces remembered now (see NonceCache). */
  get nonceCount(): number {
    return this.nonces.size;
  }

  /** `from` is the source address on the wire: a v2 reply carries it back, signed. */
  answer(data: Buffer, proto: ProbeProtocol, port: number, now = Date.now(), from = ''): Answer {
    if (data.length > MAX_PROBE_BYTES) return { reason: `longer than ${MAX_PROBE_BYTES} bytes` };
    // latin1 maps each byte to one character, so nothing non-ASCII can sneak past the probe pattern.
    const line = data.toString('latin1');
    const v = verifyProbe(this.secret, line, proto, port, now, from);
    if (!v.ok) return { reason: v.badMac ? this.whySigned(line, proto, port, now) : v.reason };
    // Only verified probes reach the cache, so unauthenticated traffic cannot fill it.
    const seen = this.nonces.add(v.nonce, v.ts, now);
    if (seen === 'replayed') return { reason: 'replayed nonce' };
    if (seen === 'full')
      return {
        reason: `load: ${this.nonces.size} nonces of probes still inside their ${MAX_SKEW_SECONDS}-s window held (at most ${this.nonces.max})`,
        load: true,
      };
    const reply = Buffer.from(v.reply, 'latin1');
    // No amplification: the reply (46 or at most 69 bytes) is shorter than any probe that verifies (77+ bytes).
    assert.ok(reply.length <= data.length, `reply of ${reply.length} bytes to a ${data.length}-byte probe`);
    return { reply };
  }

  /**
   * Why a well-formed probe's MAC did not verify: signed with the right secret for another host
   * name (one of `others`: the prober names this host differently), or another secret (or a name
   * not among `others`). Only a holder of the secret can make a probe verify under any name, so
   * this tells nothing to anyone without it.
   */
  private whySigned(line: string, proto: ProbeProtocol, port: number, now: number): string {
    if (!this.signedFor) return 'bad MAC (wrong secret?)';
    const me = JSON.stringify(this.signedFor.host);
    for (const o of this.others)
      if (verifyProbe(o.key, line, proto, port, now).ok)
        return `signed for host ${JSON.stringify(o.name)}, not ${me}: the secret is right, the host name is not (probe: give --name ${this.signedFor.host}; check: the inventory's host at this address is not ${me})`;
    return `bad MAC: another secret, or signed for a host name other than ${me} (probe: give --name ${this.signedFor.host})`;
  }
}

const noop = () => {};

/**
 * The listening sockets and their handlers. TCP: read at most one line of MAX_PROBE_BYTES within
 * READ_TIMEOUT_MS, answer a verified probe with the OK line and close; anything else is closed
 * with no bytes sent. UDP: answer a verified datagram with the OK line, ignore the rest.
 */
export class Responder {
  private readonly servers: net.Server[] = [];
  private readonly dgrams: dgram.Socket[] = [];
  private readonly conns = new Set<net.Socket>();
  /** Open connections per source address: one source cannot take the slots of the others. */
  private readonly perSource = new Map<string, number>();
  private closing = false;

  /**
   * `maxConnections`: connections served at once over all sources (RESPONDER_CONNECTIONS, or fewer
   * under a low open-file limit); each source gets at most RESPONDER_CONNECTIONS_PER_SOURCE of them.
   */
  constructor(
    private readonly answerer: Answerer,
    private readonly onProbe: (e: ProbeEvent) => void,
    private readonly maxConnections = RESPONDER_CONNECTIONS,
  ) {}

  /** Binds every socket, a pool at a time. After one EMFILE/ENFILE the rest are not tried. */
  async bindAll(specs: readonly SocketSpec[]): Promise<BindOutcome[]> {
    const out: BindOutcome[] = new Array(specs.length);
    let next = 0;
    let exhausted: BindOutcome['error'];
    const worker = async () => {
      while (next < specs.length && !this.closing) {
        const i = next++;
        const spec = specs[i] as SocketSpec;
        if (exhausted) {
          out[i] = { spec, error: exhausted };
          continue;
        }
        const err = await (spec.proto === 'tcp' ? this.bindTcp(spec) : this.bindUdp(spec));
        out[i] = err ? { spec, error: { code: err.code ?? 'EUNKNOWN', message: err.message } } : { spec };
        if (err?.code === 'EMFILE' || err?.code === 'ENFILE')
          exhausted = { code: err.code, message: err.message };
      }
    };
    await Promise.all(Array.from({ length: Math.min(BIND_CONCURRENCY, specs.length) }, worker));
    // Stopped while binding: what was never tried is reported as such.
    for (let i = 0; i < specs.length; i++)
      out[i] ??= {
        spec: specs[i] as SocketSpec,
        error: { code: 'ESTOPPED', message: 'stopped before binding' },
      };
    return out;
  }

  private bindTcp(spec: SocketSpec): Promise<NodeJS.ErrnoException | undefined> {
    return new Promise((resolve) => {
      const server = net.createServer({ allowHalfOpen: false });
      server.once('error', resolve);
      server.listen(
        { host: spec.address, port: spec.port, exclusive: true, backlog: BACKLOG, ipv6Only: false },
        () => {
          server.removeAllListeners('error');
          server.on('error', noop);
          server.on('connection', (sock) => this.onTcp(sock, spec.port));
          this.servers.push(server);
          resolve(undefined);
        },
      );
    });
  }

  private bindUdp(spec: SocketSpec): Promise<NodeJS.ErrnoException | undefined> {
    return new Promise((resolve) => {
      const type = net.isIP(spec.address) === 6 ? 'udp6' : 'udp4';
      let sock: dgram.Socket;
      try {
        sock = dgram.createSocket({ type, ipv6Only: false });
      } catch (err) {
        resolve(err as NodeJS.ErrnoException);
        return;
      }
      sock.once('error', (err) => {
        sock.close();
        resolve(err);
      });
      sock.bind({ address: spec.address, port: spec.port, exclusive: true }, () => {
        sock.removeAllListeners('error');
        sock.on('error', noop);
        sock.on('message', (msg, rinfo) => this.onUdp(sock, spec, msg, rinfo));
        this.dgrams.push(sock);
        resolve(undefined);
      });
    });
  }

  private onUdp(sock: dgram.Socket, spec: SocketSpec, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = { address: normalizeIp(rinfo.address), port: rinfo.port };
    const a = this.answerer.answer(msg, 'udp', spec.port, Date.now(), from.address);
    const to = { address: spec.address, port: spec.port };
    if ('reply' in a) {
      sock.send(a.reply, rinfo.port, rinfo.address, noop);
      this.onProbe({
        result: 'answered',
        proto: 'udp',
        port: spec.port,
        from,
        to,
        received: msg.length,
        sent: a.reply.length,
      });
    } else {
      this.onProbe({
        result: 'load' in a ? 'refused' : 'rejected',
        proto: 'udp',
        port: spec.port,
        from,
        to,
        received: msg.length,
        sent: 0,
        reason: a.reason,
      });
    }
  }

  private onTcp(sock: net.Socket, port: number): void {
    const from = { address: normalizeIp(sock.remoteAddress ?? '?'), port: sock.remotePort ?? 0 };
    const to = { address: normalizeIp(sock.localAddress ?? '?'), port: sock.localPort ?? port };
    let received = 0;
    let done = false;
    const chunks: Buffer[] = [];
    const finish = (result: 'rejected' | 'reach', reason: string) => {
      if (done) return;
      done = true;
      sock.destroy(); // no bytes back, ever
      this.onProbe({ result, proto: 'tcp', port, from, to, received, sent: 0, reason });
    };
    const reject = (reason: string) => finish('rejected', reason);
    sock.on('error', noop);
    if (this.closing) {
      sock.destroy();
      return;
    }
    const held = this.perSource.get(from.address) ?? 0;
    const share = RESPONDER_CONNECTIONS_PER_SOURCE;
    // A reset, not a quiet close: the prober sees its probe refused, not answered by silence.
    const refuse = (reason: string) => {
      if (done) return;
      done = true;
      sock.resetAndDestroy();
      this.onProbe({ result: 'refused', proto: 'tcp', port, from, to, received, sent: 0, reason });
    };
    // Counted at accept, a burst of connects (thousands accepted in one turn of the event loop,
    // most closed a moment later) looks like load; so only the descriptor limits refuse here.
    const sourceCap = Math.floor((this.maxConnections * 3) / 4);
    if (held >= sourceCap || this.conns.size >= this.maxConnections) {
      refuse(
        held >= sourceCap
          ? `load: ${held} connections from this source at once (at most ${sourceCap})`
          : `load: ${this.conns.size} connections at once (at most ${this.maxConnections})`,
      );
      return;
    }
    this.conns.add(sock);
    this.perSource.set(from.address, held + 1);
    // Deadlines from accept, not idle timeouts: a byte every second must not hold a slot for
    // minutes. After OVER_SHARE_MS a connection with no probe line yet is refused when its source
    // holds more than its share, so one source's idle connections never take the others' slots;
    // else it may wait until READ_TIMEOUT_MS. The decision waits for one more poll of the sockets
    // (setImmediate), so a probe line already received but not yet read still counts.
    let deadline = setTimeout(() => {
      setImmediate(() => {
        if (done) return;
        const now = this.perSource.get(from.address) ?? 0;
        if (now > share)
          return refuse(
            `load: ${now} connections from this source at once (its share is ${share}), this one idle for ${OVER_SHARE_MS} ms`,
          );
        deadline = setTimeout(
          () =>
            setImmediate(() =>
              done ? sock.destroy() : reject(`no probe line within ${READ_TIMEOUT_MS} ms`),
            ),
          READ_TIMEOUT_MS - OVER_SHARE_MS,
        );
      });
    }, OVER_SHARE_MS);
    sock.on('close', () => {
      clearTimeout(deadline);
      this.conns.delete(sock);
      const n = (this.perSource.get(from.address) ?? 1) - 1;
      if (n > 0) this.perSource.set(from.address, n);
      else this.perSource.delete(from.address);
      // Reset by the prober before any byte: a reachability probe too.
      if (!done && !received) finish('reach', 'connected and closed without data');
    });
    sock.on('end', () =>
      received ? reject('closed before a full line') : finish('reach', 'connected and closed without data'),
    );
    sock.on('data', (chunk: Buffer) => {
      if (done) return;
      received += chunk.length;
      chunks.push(chunk);
      if (received > MAX_PROBE_BYTES) return reject(`longer than ${MAX_PROBE_BYTES} bytes`);
      const nl = chunk.indexOf(0x0a);
      if (nl === -1) return;
      // One line and nothing after it: a prober sends its line and waits.
      if (nl !== chunk.length - 1) return reject('bytes after the probe line');
      const line = Buffer.concat(chunks);
      const a = this.answerer.answer(line, 'tcp', port, Date.now(), from.address);
      if (!('reply' in a)) return 'load' in a ? refuse(a.reason) : reject(a.reason);
      done = true;
      // Once the reply is with the kernel the descriptor is released: a range check may open
      // thousands of connections and none should wait here for the prober to close its end.
      sock.end(a.reply, () => sock.destroy());
      this.onProbe({ result: 'answered', proto: 'tcp', port, from, to, received, sent: a.reply.length });
    });
  }

  /**
   * What the responder holds right now: open TCP connections (all sources), the same per source
   * address (only sources holding one or more), and nonces remembered (see NonceCache). Once every
   * prober has closed, connections and sources are back to 0 and {}: the per-source share counts
   * what is open, never a total that only grows.
   */
  held(): { connections: number; sources: Record<string, number>; nonces: number } {
    return {
      connections: this.conns.size,
      sources: Object.fromEntries(this.perSource),
      nonces: this.answerer.nonceCount,
    };
  }

  /** Stops accepting, drops open connections and closes every socket. */
  async close(): Promise<void> {
    this.closing = true;
    for (const c of this.conns) c.destroy();
    await Promise.all([
      ...this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      ...this.dgrams.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    ]);
    this.servers.length = 0;
    this.dgrams.length = 0;
  }
}
