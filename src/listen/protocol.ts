import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The probe/responder handshake (portolan-probe v1), shared by `check --secret` and `listen`.
 *
 *   probe -> responder:  "PORTOLAN1 <proto> <port> <unix-seconds> <nonce:16 hex> <mac:32 hex>\n"
 *   responder -> probe:  "PORTOLAN1 OK <mac:32 hex>\n"
 *
 * mac = HMAC-SHA256(secret, "probe|proto|port|ts|nonce") and the reply's mac =
 * HMAC-SHA256(secret, "reply|proto|port|ts|nonce"), both cut to 128 bits. The reply (46 bytes) is
 * always shorter than a probe that verifies (77 bytes or more), so a responder can never amplify;
 * anything that does not verify gets no bytes at all. The port inside the MAC binds a probe to the port it
 * was sent to; the timestamp and a nonce cache stop replays.
 */
export const MAGIC = 'PORTOLAN1';
export const MAX_SKEW_SECONDS = 300;
const MAC_HEX = 32;

export type ProbeProtocol = 'tcp' | 'udp';

function mac(
  secret: string,
  kind: 'probe' | 'reply',
  proto: ProbeProtocol,
  port: number,
  ts: number,
  nonce: string,
): string {
  return createHmac('sha256', secret)
    .update(`${kind}|${proto}|${port}|${ts}|${nonce}`)
    .digest('hex')
    .slice(0, MAC_HEX);
}

export interface ProbeToken {
  line: string;
  proto: ProbeProtocol;
  port: number;
  ts: number;
  nonce: string;
}

export function makeProbe(secret: string, proto: ProbeProtocol, port: number, now = Date.now()): ProbeToken {
  const ts = Math.floor(now / 1000);
  const nonce = randomBytes(8).toString('hex');
  return {
    line: `${MAGIC} ${proto} ${port} ${ts} ${nonce} ${mac(secret, 'probe', proto, port, ts, nonce)}\n`,
    proto,
    port,
    ts,
    nonce,
  };
}

export type Verification = { ok: true; reply: string; nonce: string } | { ok: false; reason: string };

/** Checks a probe received on `proto`/`port`. The caller keeps the nonce cache (see NonceCache). */
export function verifyProbe(
  secret: string,
  data: string,
  proto: ProbeProtocol,
  port: number,
  now = Date.now(),
): Verification {
  const m = /^PORTOLAN1 (tcp|udp) (\d{1,5}) (\d{1,12}) ([0-9a-f]{16}) ([0-9a-f]{32})\n$/.exec(data);
  if (!m) return { ok: false, reason: 'not a portolan probe' };
  const [, p, portText, tsText, nonce = '', got = ''] = m;
  if (p !== proto || Number(portText) !== port)
    return { ok: false, reason: `probe for ${p}/${portText} arrived on ${proto}/${port}` };
  const ts = Number(tsText);
  if (Math.abs(now / 1000 - ts) > MAX_SKEW_SECONDS)
    return { ok: false, reason: 'timestamp outside the allowed clock skew' };
  const want = mac(secret, 'probe', proto, port, ts, nonce);
  if (!timingSafeEqual(Buffer.from(got), Buffer.from(want)))
    return { ok: false, reason: 'bad MAC (wrong secret?)' };
  return { ok: true, reply: `${MAGIC} OK ${mac(secret, 'reply', proto, port, ts, nonce)}\n`, nonce };
}

/** Checks the responder's reply to a probe we sent. */
export function verifyReply(secret: string, probe: ProbeToken, data: string): boolean {
  const want = `${MAGIC} OK ${mac(secret, 'reply', probe.proto, probe.port, probe.ts, probe.nonce)}\n`;
  return data.length === want.length && timingSafeEqual(Buffer.from(data), Buffer.from(want));
}

/** Remembers nonces for the skew window so a captured probe cannot be replayed. Bounded in size. */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly max = 100_000) {}
  /** True the first time a nonce is seen. */
  add(nonce: string, now = Date.now()): boolean {
    if (this.seen.has(nonce)) return false;
    if (this.seen.size >= this.max) {
      for (const [n, t] of this.seen) if (now - t > MAX_SKEW_SECONDS * 2000) this.seen.delete(n);
      if (this.seen.size >= this.max) return false;
    }
    this.seen.set(nonce, now);
    return true;
  }
}

/**
 * The key one target host's probes are signed with: the shared secret bound to the host's inventory
 * name. A responder answers only probes meant for the host it stands in for, so a NAT or a route
 * that lands host A's port on host B shows up as a failure, not as `ok (responder)` for A.
 */
export function hostSecret(secret: string, host: string): string {
  return createHmac('sha256', secret).update(`host|${host}`).digest('hex');
}

export function newSecret(): string {
  return randomBytes(18).toString('base64url');
}
