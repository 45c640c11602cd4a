import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * The probe/responder handshake, shared by `check --secret` and `listen`.
 *
 *   v1 probe -> responder:  "PORTOLAN1 <proto> <port> <unix-seconds> <nonce:16 hex> <mac:32 hex>\n"
 *   responder -> v1 probe:  "PORTOLAN1 OK <mac:32 hex>\n"
 *   v2 probe -> responder:  "PORTOLAN2 <proto> <port> <unix-seconds> <nonce:16 hex> <mac:32 hex>\n"
 *   responder -> v2 probe:  "PORTOLAN2 OK <seen:base64url> <mac:32 hex>\n"
 *
 * mac = HMAC-SHA256(secret, "probe|proto|port|ts|nonce") (v2: "probe2|..."), and the reply's mac =
 * HMAC-SHA256(secret, "reply|proto|port|ts|nonce") (v2: "reply2|proto|port|ts|nonce|seen"), all cut
 * to 128 bits. `seen` is the source address the responder saw (4 or 16 bytes, base64url): the prober
 * compares it with its own to tell that NAT lies between them. The reply (46 bytes; v2 at most 69)
 * is always shorter than a probe that verifies (77 bytes or more), so a responder can never amplify;
 * anything that does not verify gets no bytes at all. The port inside the MAC binds a probe to the
 * port it was sent to; the timestamp and a nonce cache stop replays. A v1 prober (an older `check`)
 * is still answered in v1.
 */
export const MAGIC = 'PORTOLAN1';
export const MAGIC2 = 'PORTOLAN2';
export const MAX_SKEW_SECONDS = 300;
const MAC_HEX = 32;

/**
 * The connection budget both sides size themselves from. `listen` serves RESPONDER_CONNECTIONS
 * connections at once (fewer under a low open-file limit), at most three quarters of them from one source
 * address; a source holding more than RESPONDER_CONNECTIONS_PER_SOURCE has its connections that
 * sent no probe line within a quarter second refused with a TCP reset, so idle connections from
 * one source never take the others' slots. `check` keeps at most RESPONDER_PROBES_IN_FLIGHT
 * signed probes open at once, half a share, so two checks from one address (or from behind one
 * NAT address) still fit.
 */
export const RESPONDER_CONNECTIONS_PER_SOURCE = 256;
export const RESPONDER_CONNECTIONS = 2048;
export const RESPONDER_PROBES_IN_FLIGHT = RESPONDER_CONNECTIONS_PER_SOURCE / 2;

export type ProbeProtocol = 'tcp' | 'udp';
export type ProbeVersion = 1 | 2;

function mac(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text).digest('hex').slice(0, MAC_HEX);
}

function probeMac(
  secret: string,
  v: ProbeVersion,
  proto: ProbeProtocol,
  port: number,
  ts: number,
  nonce: string,
) {
  return mac(secret, `${v === 2 ? 'probe2' : 'probe'}|${proto}|${port}|${ts}|${nonce}`);
}

function replyLine(
  secret: string,
  v: ProbeVersion,
  proto: ProbeProtocol,
  port: number,
  ts: number,
  nonce: string,
  seen: string,
): string {
  if (v === 1) return `${MAGIC} OK ${mac(secret, `reply|${proto}|${port}|${ts}|${nonce}`)}\n`;
  return `${MAGIC2} OK ${seen} ${mac(secret, `reply2|${proto}|${port}|${ts}|${nonce}|${seen}`)}\n`;
}

/** An IP address as the 4 or 16 bytes it is, base64url; empty when it is not an address. */
export function encodeAddress(ip: string): string {
  const v = isIP(ip);
  if (v === 4) return Buffer.from(ip.split('.').map(Number)).toString('base64url');
  if (v !== 6) return '';
  const [head = '', tail = ''] = ip.split('::');
  const words = (t: string) => (t ? t.split(':') : []);
  let h = words(head);
  let t = words(tail);
  // An IPv4 tail (::ffff:10.0.0.1) is two words.
  const v4 = (w: string[]) =>
    w.flatMap((x) => {
      if (!x.includes('.')) return [x];
      const b = x.split('.').map(Number);
      return [
        (((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16),
        (((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16),
      ];
    });
  h = v4(h);
  t = v4(t);
  const all = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const bytes = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) bytes.writeUInt16BE(Number.parseInt(all[i] ?? '0', 16), i * 2);
  return bytes.toString('base64url');
}

/** The address text of encodeAddress's bytes; undefined when they are neither 4 nor 16 bytes. */
export function decodeAddress(text: string): string | undefined {
  const b = Buffer.from(text, 'base64url');
  if (b.length === 4) return [...b].join('.');
  if (b.length !== 16) return undefined;
  const words = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16));
  // The shortest form (RFC 5952): the longest run of two or more zero words becomes "::".
  let best = -1;
  let len = 0;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > len && j - i >= 2) {
      best = i;
      len = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best === -1) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + len).join(':')}`;
}

export interface ProbeToken {
  line: string;
  version: ProbeVersion;
  proto: ProbeProtocol;
  port: number;
  ts: number;
  nonce: string;
}

/** A signed probe; v2 (what `check` sends) asks the responder to say which address it saw. */
export function makeProbe(
  secret: string,
  proto: ProbeProtocol,
  port: number,
  now = Date.now(),
  version: ProbeVersion = 1,
): ProbeToken {
  const ts = Math.floor(now / 1000);
  const nonce = randomBytes(8).toString('hex');
  const magic = version === 2 ? MAGIC2 : MAGIC;
  return {
    line: `${magic} ${proto} ${port} ${ts} ${nonce} ${probeMac(secret, version, proto, port, ts, nonce)}\n`,
    version,
    proto,
    port,
    ts,
    nonce,
  };
}

/** `ts`: the probe's own timestamp (unix seconds), which bounds how long its nonce must be remembered. */
export type Verification =
  | { ok: true; reply: string; nonce: string; ts: number }
  | { ok: false; reason: string; badMac?: true };

/**
 * Checks a probe received on `proto`/`port` from `from` (the source address on the wire, which a
 * v2 reply carries back). The caller keeps the nonce cache (see NonceCache).
 */
export function verifyProbe(
  secret: string,
  data: string,
  proto: ProbeProtocol,
  port: number,
  now = Date.now(),
  from = '',
): Verification {
  const m = /^PORTOLAN([12]) (tcp|udp) (\d{1,5}) (\d{1,12}) ([0-9a-f]{16}) ([0-9a-f]{32})\n$/.exec(data);
  if (!m) return { ok: false, reason: 'not a portolan probe' };
  const [, vText, p, portText, tsText, nonce = '', got = ''] = m;
  const v: ProbeVersion = vText === '2' ? 2 : 1;
  if (p !== proto || Number(portText) !== port)
    return { ok: false, reason: `probe for ${p}/${portText} arrived on ${proto}/${port}` };
  const ts = Number(tsText);
  if (Math.abs(now / 1000 - ts) > MAX_SKEW_SECONDS)
    return { ok: false, reason: 'timestamp outside the allowed clock skew' };
  const want = probeMac(secret, v, proto, port, ts, nonce);
  if (!timingSafeEqual(Buffer.from(got), Buffer.from(want)))
    return { ok: false, reason: 'bad MAC (wrong secret?)', badMac: true };
  return { ok: true, reply: replyLine(secret, v, proto, port, ts, nonce, encodeAddress(from)), nonce, ts };
}

export type ReplyCheck = { ok: true; seenFrom?: string } | { ok: false };

/**
 * Checks the responder's reply to a probe we sent; a v2 reply also says which source address the
 * responder saw (`seenFrom`), under the MAC.
 */
export function readReply(secret: string, probe: ProbeToken, data: string): ReplyCheck {
  if (probe.version === 1) {
    const want = replyLine(secret, 1, probe.proto, probe.port, probe.ts, probe.nonce, '');
    return { ok: data.length === want.length && timingSafeEqual(Buffer.from(data), Buffer.from(want)) };
  }
  const m = /^PORTOLAN2 OK ([A-Za-z0-9_-]{0,22}) [0-9a-f]{32}\n$/.exec(data);
  if (!m) return { ok: false };
  const seen = m[1] ?? '';
  const want = replyLine(secret, 2, probe.proto, probe.port, probe.ts, probe.nonce, seen);
  if (data.length !== want.length || !timingSafeEqual(Buffer.from(data), Buffer.from(want)))
    return { ok: false };
  const seenFrom = decodeAddress(seen);
  return seenFrom ? { ok: true, seenFrom } : { ok: true };
}

/** Checks the responder's reply to a probe we sent. */
export function verifyReply(secret: string, probe: ProbeToken, data: string): boolean {
  return readReply(secret, probe, data).ok;
}

/**
 * Nonces a responder remembers at most (NonceCache): a million verified probes within one skew
 * window, over 3,000 a second for MAX_SKEW_SECONDS, tens of MB. A range check sends one signed
 * probe per port (49152-65535 and 2500-3300: 17,186), asks again when the responder was slow, and
 * several sources check at once, so a hundred thousand fill within minutes.
 */
export const NONCE_CACHE_MAX = 1_000_000;

/** What NonceCache.add found: a new nonce (remembered), a replay, or no room left. */
export type NonceOutcome = 'new' | 'replayed' | 'full';

/**
 * Remembers each verified probe's nonce for as long as the probe itself would be accepted, so a
 * captured probe cannot be replayed: verifyProbe accepts a probe stamped `ts` (unix seconds) until
 * ts + MAX_SKEW_SECONDS on this clock, and its nonce is forgotten right after that, by the probe's
 * own timestamp (not by when it arrived). Only verified probes reach the cache, so its size is
 * bounded by the rate of probes signed with the secret; past `max` nonces still inside their
 * window a new one is `full` (the responder refuses it for load), never mistaken for a replay.
 * Expiry costs one pass over at most 2 * MAX_SKEW_SECONDS + 1 buckets a second.
 */
export class NonceCache {
  private readonly seen = new Set<string>();
  /** Nonces by the unix second after which their probe is no longer accepted. */
  private readonly byExpiry = new Map<number, string[]>();
  private purgedAt = Number.NEGATIVE_INFINITY;
  constructor(readonly max = NONCE_CACHE_MAX) {}
  /** Nonces held now (each inside its probe's window), for the responder's summary. */
  get size(): number {
    return this.seen.size;
  }
  /** `ts`: the probe's timestamp (unix seconds); `now`: this clock (ms). */
  add(nonce: string, ts: number, now = Date.now()): NonceOutcome {
    this.purge(now);
    if (this.seen.has(nonce)) return 'replayed';
    if (this.seen.size >= this.max) return 'full';
    this.seen.add(nonce);
    const expiry = ts + MAX_SKEW_SECONDS;
    const bucket = this.byExpiry.get(expiry);
    if (bucket) bucket.push(nonce);
    else this.byExpiry.set(expiry, [nonce]);
    return 'new';
  }
  private purge(now: number): void {
    const second = Math.floor(now / 1000);
    if (second <= this.purgedAt) return;
    this.purgedAt = second;
    for (const [expiry, nonces] of this.byExpiry)
      if (now / 1000 > expiry) {
        for (const n of nonces) this.seen.delete(n);
        this.byExpiry.delete(expiry);
      }
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
