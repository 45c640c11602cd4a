import dgram from 'node:dgram';
import { isLocalResourceError } from './errno.js';

/**
 * One UDP attempt per item on a *connected* socket: only a connected socket surfaces the ICMP
 * errors (port unreachable -> ECONNREFUSED, admin-prohibited -> EHOSTUNREACH), so a closed or
 * rejected port is told apart from a silent one (docs/architecture.md, measured facts).
 */
export interface UdpAttempt {
  address: string;
  family: 4 | 6;
  port: number;
  /** Datagrams to send, built fresh per attempt (NTP timestamps, responder nonces). */
  payloads: Buffer[];
  timeoutMs: number;
}

export type UdpOutcome =
  | { kind: 'reply'; data: Buffer; rttMs: number; sentAt: number; receivedAt: number }
  | { kind: 'error'; errno: string; rttMs: number }
  | { kind: 'silent' }
  /** This machine ran out of sockets or ports: try again, it says nothing about the path. */
  | { kind: 'local'; errno: string }
  /**
   * connect(2) failed: a UDP connect sends nothing, so this is this machine's own verdict on the
   * address (no route: ENETUNREACH; a broadcast address: EACCES), never an answer from the path.
   */
  | { kind: 'unroutable'; errno: string };

export function udpAttempt(a: UdpAttempt): Promise<UdpOutcome> {
  return new Promise((resolve) => {
    let sock: dgram.Socket;
    try {
      sock = dgram.createSocket(a.family === 6 ? 'udp6' : 'udp4');
    } catch (err) {
      resolve({ kind: 'local', errno: (err as NodeJS.ErrnoException).code ?? 'EMFILE' });
      return;
    }
    let sentAt = 0;
    let done = false;
    const finish = (o: UdpOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(o);
    };
    // On a busy machine the timer can come due while the reply waits unread in the socket: a loop
    // held up in an I/O callback (the sweep's completions, shared CPU) runs its expired timers
    // before it polls the sockets again (libuv's uv_run). Look at the sockets once more
    // (setImmediate runs after the next poll) before calling the port silent.
    const timer = setTimeout(() => setImmediate(() => finish({ kind: 'silent' })), a.timeoutMs);
    const failed = (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'EUNKNOWN';
      if (isLocalResourceError(code)) finish({ kind: 'local', errno: code });
      else finish({ kind: 'error', errno: code, rttMs: sentAt ? performance.now() - sentAt : 0 });
    };
    sock.on('error', failed);
    sock.on('message', (data) => {
      const receivedAt = performance.now();
      finish({ kind: 'reply', data, rttMs: receivedAt - sentAt, sentAt, receivedAt });
    });
    // With a callback, Node hands a failed connect to it rather than to 'error'; sending on the
    // unconnected socket would throw ERR_SOCKET_BAD_PORT outside any handler.
    sock.connect(a.port, a.address, (err?: Error) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
        finish(
          isLocalResourceError(code) ? { kind: 'local', errno: code } : { kind: 'unroutable', errno: code },
        );
        return;
      }
      // Connected to itself (one of our own addresses, its own ephemeral port): our datagrams
      // would come back as a "reply". Not an attempt; the caller tries again from another port.
      const local = sock.address();
      const peer = sock.remoteAddress();
      if (local.port === peer.port && local.address === peer.address) {
        finish({ kind: 'local', errno: 'ESELFCONNECT' });
        return;
      }
      sentAt = performance.now();
      // Each send reports its own error: when the first datagram drew an ICMP port unreachable, the
      // kernel hands ECONNREFUSED to the next send (and clears it), not to the 'error' event.
      for (const p of a.payloads) sock.send(p, (err) => err && failed(err));
    });
  });
}
