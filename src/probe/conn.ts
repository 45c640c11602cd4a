import net from 'node:net';
import { isReset, verdictForErrno } from './errno.js';
import type { RateLimiter } from './rate.js';
import {
  CLOSED_UNANSWERED,
  type Evidence,
  RESET_BEFORE_DATA,
  SILENT_SERVICE,
  type Verdict,
} from './verdict.js';

/** What an application probe is given: where to go and how long it may wait for the service. */
export interface ServiceContext {
  address: string;
  port: number;
  /** The DNS name the address came from, for TLS SNI. */
  servername?: string;
  timeoutMs: number;
  /** Paces the connect (--max-rate): a token is taken before it starts. */
  limiter?: RateLimiter;
}

export interface ServiceOutcome {
  verdict: Verdict;
  detail: string;
  evidence: Evidence;
}

export class ConnectError extends Error {
  constructor(
    readonly code: string,
    readonly rttMs: number,
    address: string,
    port: number,
  ) {
    super(`TCP connect to ${net.isIPv6(address) ? `[${address}]` : address}:${port} failed: ${code}`);
    this.name = 'ConnectError';
  }
}

/**
 * A TCP connection that collects what the peer sends, for request/response probes. Every read
 * waits for a predicate over all bytes so far, the end of the stream, or a timeout.
 */
export class Conn {
  private chunks: Buffer[] = [];
  private size = 0;
  ended = false;
  error: string | undefined;
  private wake: (() => void) | undefined;
  bytesSent = 0;

  private constructor(
    readonly socket: net.Socket,
    readonly rttMs: number,
  ) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.size += d.length;
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message;
      this.ended = true;
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  /** Adopts an already connected socket (a TLS socket after its handshake). */
  static wrap(socket: net.Socket, rttMs: number): Conn {
    return new Conn(socket, rttMs);
  }

  /** Connects, after taking a token from `limiter` when given; the timeout starts with the connect. */
  static async open(address: string, port: number, timeoutMs: number, limiter?: RateLimiter): Promise<Conn> {
    await limiter?.take();
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const socket = net.connect({ host: address, port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectError('ETIMEDOUT', performance.now() - t0, address, port));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new Conn(socket, performance.now() - t0));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new ConnectError(err.code ?? 'EUNKNOWN', performance.now() - t0, address, port));
      });
    });
  }

  get data(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  write(data: Buffer | string): void {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    this.bytesSent += b.length;
    if (!this.socket.destroyed) this.socket.write(b);
  }

  /** Resolves true when `enough(data)` holds; false on end, error or timeout. */
  read(enough: (data: Buffer) => boolean, timeoutMs: number, max = 65536): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.size > 0 && (enough(this.data) || this.size >= max)) return done(true);
        if (this.ended) return done(false);
      };
      let settled = false;
      // On a busy machine the timer can come due while the answer waits unread in the socket:
      // look at the sockets once more (setImmediate runs after the poll) before giving up.
      const timer = setTimeout(() => setImmediate(() => done(false)), timeoutMs);
      const done = (v: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.wake = undefined;
        resolve(v);
      };
      this.wake = check;
      check();
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * The detail of a connection reset after its handshake and before the probe sent a byte: `what`
 * is the probe ("SSH"). A firewall that resets sessions acts on the data it sees; a reset before
 * any is the service (or what fronts it) refusing the connection.
 */
export function resetBeforeDataDetail(code: string, what: string): string {
  return `${what}: connected, then reset (${code}) ${RESET_BEFORE_DATA}: the service accepts and resets (a connection limit, TCP wrappers, or a portolan responder at its limit)`;
}

/** A failed service connect after the sweep saw the port open: the errno decides, as in the sweep. */
export function connectFailure(err: unknown, what: string): ServiceOutcome {
  if (err instanceof ConnectError) {
    const v = verdictForErrno(err.code);
    return {
      verdict: v ?? 'open-unverified',
      detail: isReset(err.code)
        ? resetBeforeDataDetail(err.code, what)
        : v
          ? `${what}: connect failed on the second connection (${err.code})`
          : `${what}: the port answered the sweep, then the service connection failed (${err.code})`,
      evidence: { errno: err.code, rttMs: round(err.rttMs) },
    };
  }
  throw err;
}

/**
 * Connected, then reset once `what` was sent and before any byte came back: an IPS or
 * application-aware firewall, or a service that resets what it does not understand.
 */
export function resetAfterConnect(code: string, what: string, rttMs?: number): ServiceOutcome {
  return {
    verdict: 'reset-after-connect',
    detail: `connected, then reset (${code}) once ${what} was sent, before any reply`,
    evidence: { errno: code, ...(rttMs === undefined ? {} : { rttMs: round(rttMs) }) },
  };
}

/**
 * The detail of a service probe that got no byte back for `what` ("an HTTP request"): the server
 * closed the connection (a FIN, or a reset: its code is named), or nothing came within the wait.
 */
export function unanswered(c: Conn, what: string): string {
  return c.ended
    ? `connected, then the server ${CLOSED_UNANSWERED} ${what}${c.error ? ` (${c.error})` : ''}`
    : `${SILENT_SERVICE}answer to ${what}`;
}

export function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Opens a connection, runs `talk`, always closes. Connect failures become outcomes. */
export async function withConn(
  ctx: ServiceContext,
  what: string,
  talk: (c: Conn) => Promise<ServiceOutcome>,
): Promise<ServiceOutcome> {
  let c: Conn;
  try {
    c = await Conn.open(ctx.address, ctx.port, ctx.timeoutMs, ctx.limiter);
  } catch (err) {
    return connectFailure(err, what);
  }
  try {
    const out = await talk(c);
    return {
      ...out,
      evidence: { rttMs: round(c.rttMs), bytesSent: c.bytesSent, bytesSeen: c.data.length, ...out.evidence },
    };
  } finally {
    c.close();
  }
}
