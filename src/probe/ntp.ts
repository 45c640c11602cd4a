import type { NtpEvidence } from './verdict.js';

/**
 * NTP (RFC 5905) client request and reply check. The request is mode 3 (client), version 4, with
 * our transmit timestamp; a server's mode 4 reply must echo it as its origin timestamp, which also
 * tells the reply apart from anything else arriving on the socket.
 */

/** Seconds from 1900-01-01 (NTP era 0) to 1970-01-01. */
const NTP_UNIX_OFFSET = 2208988800;

function writeTimestamp(buf: Buffer, offset: number, unixMs: number): void {
  const seconds = Math.floor(unixMs / 1000);
  const fraction = Math.floor(((unixMs % 1000) / 1000) * 2 ** 32);
  buf.writeUInt32BE((seconds + NTP_UNIX_OFFSET) >>> 0, offset);
  buf.writeUInt32BE(fraction >>> 0, offset + 4);
}

function readTimestamp(buf: Buffer, offset: number): number {
  const seconds = buf.readUInt32BE(offset);
  const fraction = buf.readUInt32BE(offset + 4);
  return (seconds - NTP_UNIX_OFFSET) * 1000 + (fraction / 2 ** 32) * 1000;
}

export interface NtpRequest {
  packet: Buffer;
  /** Unix milliseconds written as the transmit timestamp (T1). */
  t1: number;
}

export function ntpRequest(nowMs = performance.timeOrigin + performance.now()): NtpRequest {
  const packet = Buffer.alloc(48);
  packet[0] = (0 << 6) | (4 << 3) | 3; // LI 0, VN 4, mode 3 (client)
  writeTimestamp(packet, 40, nowMs);
  return { packet, t1: nowMs };
}

export type NtpReply =
  | ({ ok: true } & NtpEvidence & { leap: number; kiss?: string })
  | { ok: false; reason: string };

/**
 * Unsynchronised: leap indicator 3 (clock not synchronised) or stratum 16 (RFC 5905 7.3), or
 * stratum 0 without a kiss code.
 */
export function isUnsynchronised(r: { stratum: number; leap: number; kiss?: string }): boolean {
  return r.kiss === undefined && (r.leap === 3 || r.stratum >= 16 || r.stratum === 0);
}

/**
 * Checks a reply to `req`, received at `t4` (Unix ms). Offset and delay as in RFC 5905 8:
 * offset = ((T2 - T1) + (T3 - T4)) / 2, delay = (T4 - T1) - (T3 - T2).
 */
export function parseNtpReply(data: Buffer, req: NtpRequest, t4: number): NtpReply {
  if (data.length < 48) return { ok: false, reason: `${data.length} bytes, not an NTP packet (48 or more)` };
  const first = data[0] as number;
  const mode = first & 7;
  if (mode !== 4) return { ok: false, reason: `NTP mode ${mode}, expected 4 (server)` };
  if (!data.subarray(24, 32).equals(req.packet.subarray(40, 48)))
    return { ok: false, reason: 'origin timestamp does not echo our request' };
  const stratum = data[1] as number;
  const refBytes = data.subarray(12, 16);
  const refId =
    stratum <= 1
      ? refBytes.toString('latin1').replace(/[^\x20-\x7e]/g, '')
      : `${refBytes[0]}.${refBytes[1]}.${refBytes[2]}.${refBytes[3]}`;
  const t2 = readTimestamp(data, 32);
  const t3 = readTimestamp(data, 40);
  const offsetMs = (t2 - req.t1 + (t3 - t4)) / 2;
  const delayMs = t4 - req.t1 - (t3 - t2);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    ok: true,
    stratum,
    refId,
    offsetMs: round(offsetMs),
    delayMs: round(delayMs),
    leap: first >> 6,
    // RFC 5905 7.4: a kiss code is four ASCII characters in the reference id of a stratum-0
    // packet. chronyd with no time source answers stratum 0, leap 3 and a zero reference id:
    // unsynchronised, not a kiss.
    ...(stratum === 0 && /^[A-Z][A-Z0-9]{2,3}$/.test(refId) ? { kiss: refId } : {}),
  };
}
