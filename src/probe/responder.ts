import { isIPv6 } from 'node:net';
import { normalizeIp } from '../listen/addresses.js';
import { MAGIC, MAGIC2, makeProbe, type ProbeToken, readReply } from '../listen/protocol.js';
import { Conn, ConnectError, round } from './conn.js';
import { isReset } from './errno.js';
import type { RateLimiter } from './rate.js';
import { udpAttempt } from './udp.js';
import type { Evidence, Verdict } from './verdict.js';

/**
 * The portolan responder (`portolan listen`): a signed probe line, answered with a signed OK line
 * that is never longer than the probe. Only a reply that verifies with the shared secret counts.
 */
const REPLY_STARTS = [`${MAGIC} OK `, `${MAGIC2} OK `];

/** Tries of a signed probe whose connection is reset before any reply, and the pauses between them. */
export const RESET_TRIES = 3;
const RESET_PAUSES_MS = [250, 750];

export interface ResponderResult {
  ok: boolean;
  /** A verdict the responder probe alone decides (a reset after the probe was sent); else the caller's. */
  verdict?: Verdict;
  evidence: Evidence;
  detail: string;
  /** The source address the responder saw (a v2 reply says so, signed). */
  seenFrom?: string;
  /** The address this machine sent from (the connection's local address). */
  sentFrom?: string;
  /** Connected, sent the probe, and nothing came back before the timeout. */
  silent?: boolean;
  /** Connected, sent the probe, and the peer closed with no byte back (as a responder does when the line came too late). */
  closed?: boolean;
}

/** At most `size` holders at once; the rest wait in arrival order. */
export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(size: number) {
    this.free = size;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * Sends the signed probe and reads the reply. A connection reset with nothing read is tried again
 * (RESET_TRIES in all, spaced): a responder refuses a connection with a reset only while it holds
 * too many at once, which passes; a reset on every try is an IPS or application-aware firewall that
 * resets sessions once data flows (or a responder still over its load limit), `reset-after-connect`.
 * `slots` bounds the probes in flight (see RESPONDER_PROBES_IN_FLIGHT).
 */
export async function tcpResponderProbe(
  secret: string,
  address: string,
  port: number,
  timeoutMs: number,
  slots?: Slots,
  limiter?: RateLimiter,
): Promise<ResponderResult> {
  let last: ResponderResult | undefined;
  for (let t = 0; t < RESET_TRIES; t++) {
    if (t) await new Promise((r) => setTimeout(r, RESET_PAUSES_MS[t - 1] ?? 1000));
    const once = () => signedProbe(secret, address, port, timeoutMs, limiter);
    last = await (slots ? slots.run(once) : once());
    if (last.verdict !== 'reset-after-connect') return last;
  }
  const r = last as ResponderResult;
  return {
    ...r,
    evidence: { ...r.evidence, attempts: RESET_TRIES },
    detail: `${r.detail}, on each of ${RESET_TRIES} tries: an IPS or application-aware firewall resets sessions once data flows, or the responder refused for load (its log says "refused")`,
  };
}

async function signedProbe(
  secret: string,
  address: string,
  port: number,
  timeoutMs: number,
  limiter?: RateLimiter,
): Promise<ResponderResult> {
  let c: Conn;
  try {
    c = await Conn.open(address, port, timeoutMs, limiter);
  } catch (err) {
    const rttMs = err instanceof ConnectError ? { rttMs: round(err.rttMs) } : {};
    // The handshake completed and the responder reset the connection before this side saw it
    // connected: a responder refusing for load does exactly that (a closed port is ECONNREFUSED).
    if (err instanceof ConnectError && isReset(err.code))
      return {
        ok: false,
        verdict: 'reset-after-connect',
        evidence: { ...rttMs, errno: err.code },
        detail: `connected, then reset (${err.code}) before the signed probe could be sent, with no reply`,
      } satisfies ResponderResult;
    // The reachability pass found the port open: a handshake that now takes longer than the wait
    // is a busy path or a starved machine (a lost SYN is sent again only after a second), and the
    // port is asked again like one whose responder was silent.
    const late = err instanceof ConnectError && err.code === 'ETIMEDOUT' ? { silent: true } : {};
    return {
      ok: false,
      evidence: { ...rttMs },
      detail: (err as Error).message,
      ...late,
    } satisfies ResponderResult;
  }
  try {
    const token = makeProbe(secret, 'tcp', port, Date.now(), 2);
    const sentFrom = c.socket.localAddress ? normalizeIp(c.socket.localAddress) : undefined;
    c.write(token.line);
    // A responder's line starts with the magic; anything else is another service: stop early.
    await c.read(
      (d) => d.includes(10) || !startsLikeReply(d.subarray(0, REPLY_STARTS[0]?.length).toString('latin1')),
      timeoutMs,
      128,
    );
    const reply = c.data.toString('latin1');
    const evidence: Evidence = { rttMs: round(c.rttMs), bytesSent: c.bytesSent, bytesSeen: c.data.length };
    const r = readReply(secret, token, reply);
    const from = sentFrom ? { sentFrom } : {};
    if (r.ok)
      return {
        ok: true,
        evidence: r.seenFrom ? { ...evidence, seenFrom: r.seenFrom } : evidence,
        detail: `responder answered the signed probe (${c.data.length} bytes back for ${c.bytesSent})`,
        ...(r.seenFrom ? { seenFrom: r.seenFrom } : {}),
        ...from,
      } satisfies ResponderResult;
    if (c.data.length === 0 && c.error && isReset(c.error))
      return {
        ok: false,
        verdict: 'reset-after-connect',
        evidence: { ...evidence, errno: c.error },
        detail: `connected, then reset (${c.error}) once the ${c.bytesSent}-byte signed probe was sent, with no reply`,
        ...from,
      } satisfies ResponderResult;
    if (reply.startsWith('PORTOLAN'))
      return {
        ok: false,
        verdict: 'wrong-service',
        evidence,
        detail:
          'a portolan responder answered, but not with our secret for this host (another --secret, or a responder for another host)',
        ...from,
      } satisfies ResponderResult;
    return {
      ok: false,
      evidence,
      ...(c.data.length ? {} : c.ended ? { closed: true } : { silent: true }),
      detail: c.data.length
        ? 'no portolan responder answered the signed probe (other bytes came back)'
        : `no portolan responder answered the signed probe (${c.ended ? 'closed' : 'silent'} with no reply)`,
      ...from,
    } satisfies ResponderResult;
  } finally {
    c.close();
  }
}

/**
 * Asks a port whose responder has answered before, one signed probe at a time, until it answers
 * again or `patienceMs` (milliseconds) have passed: a responder digesting a burst of connections
 * (another source's reachability pass: tens of thousands of connects queued at once) can leave
 * its event loop busy for tens of seconds, and probes sent meanwhile meet silence. `awake` when it
 * answered; else `detail` says what the last probe met and how long was waited (a failure that is
 * not a busy responder's silence, close or reset ends the wait at once, and says so).
 */
export async function responderAwake(
  secret: string,
  address: string,
  port: number,
  patienceMs: number,
  slots?: Slots,
  limiter?: RateLimiter,
): Promise<{ awake: true } | { awake: false; detail: string }> {
  const start = performance.now();
  const end = start + patienceMs;
  let probes = 0;
  let last: ResponderResult | undefined;
  const waited = () => `${Math.round((performance.now() - start) / 1000)} s`;
  for (;;) {
    const left = end - performance.now();
    if (left <= 0)
      return {
        awake: false,
        detail: `it did not answer a probe to port ${port} for ${waited()} (${probes} probes; the last: ${last?.detail ?? 'none sent'})`,
      };
    const r = await tcpResponderProbe(secret, address, port, Math.min(left, PILOT_WAIT_MS), slots, limiter);
    probes++;
    last = r;
    if (r.ok) return { awake: true };
    if (!r.silent && !r.closed && r.verdict !== 'reset-after-connect')
      return {
        awake: false,
        detail: `a probe to port ${port}, which it answered before, failed after ${waited()} of waiting (${probes} probes): ${r.detail}`,
      };
  }
}

/** How long each of responderAwake's probes waits for its reply. */
const PILOT_WAIT_MS = 10_000;

function startsLikeReply(head: string): boolean {
  return REPLY_STARTS.some((s) => s.startsWith(head));
}

/**
 * One signed UDP probe on its own (the sweep's own tries ride in its datagrams): sends it and waits
 * up to `timeoutMs` for the reply. `ok` with what the responder saw when a reply verifies; else
 * `silent` (no reply, or a reply that does not verify: `bytesSeen` says which) or an errno (ICMP
 * port unreachable is ECONNREFUSED). A shortage of sockets on this machine is `silent` too: it
 * says nothing about the port, and the caller asks again.
 */
export async function udpResponderProbe(
  secret: string,
  address: string,
  port: number,
  timeoutMs: number,
  limiter?: RateLimiter,
): Promise<ResponderResult> {
  await limiter?.take();
  const token = udpResponderToken(secret, port);
  const o = await udpAttempt({
    address,
    family: isIPv6(address) ? 6 : 4,
    port,
    payloads: [Buffer.from(token.line, 'latin1')],
    timeoutMs,
  });
  if (o.kind === 'reply') {
    const r = readResponderReply(secret, token, o.data);
    const evidence: Evidence = { bytesSeen: o.data.length };
    if (r.ok)
      return {
        ok: true,
        evidence: r.seenFrom ? { ...evidence, seenFrom: r.seenFrom } : evidence,
        detail: `responder answered the signed probe (${o.data.length} bytes)`,
        ...(r.seenFrom ? { seenFrom: r.seenFrom } : {}),
      };
    return { ok: false, silent: true, evidence, detail: 'other bytes came back to the signed probe' };
  }
  if (o.kind === 'error' || o.kind === 'unroutable')
    return { ok: false, evidence: { errno: o.errno }, detail: `the signed probe failed (${o.errno})` };
  return {
    ok: false,
    silent: true,
    evidence: {},
    detail: `no answer to the signed probe within ${Math.round(timeoutMs)} ms`,
  };
}

/** For UDP the probe rides in the sweep's datagram; the reply is checked here. */
export function udpResponderToken(secret: string, port: number): ProbeToken {
  return makeProbe(secret, 'udp', port, Date.now(), 2);
}

/** A UDP datagram that answers `token`: ok, and the source address the responder saw. */
export function readResponderReply(secret: string, token: ProbeToken, data: Buffer) {
  return readReply(secret, token, data.toString('latin1'));
}

export function isResponderReply(secret: string, token: ProbeToken, data: Buffer): boolean {
  return readResponderReply(secret, token, data).ok;
}
