import { MAGIC, makeProbe, type ProbeToken, verifyReply } from '../listen/protocol.js';
import { Conn, round } from './conn.js';
import type { Evidence } from './verdict.js';

/**
 * The portolan responder (`portolan listen`): a signed probe line, answered with a signed OK line
 * that is never longer than the probe. Only a reply that verifies with the shared secret counts.
 */
const MAGIC_LINE = `${MAGIC} OK `;

export interface ResponderResult {
  ok: boolean;
  evidence: Evidence;
  detail: string;
}

export async function tcpResponderProbe(
  secret: string,
  address: string,
  port: number,
  timeoutMs: number,
): Promise<ResponderResult> {
  let c: Conn;
  try {
    c = await Conn.open(address, port, timeoutMs);
  } catch (err) {
    return { ok: false, evidence: {}, detail: (err as Error).message };
  }
  try {
    const token = makeProbe(secret, 'tcp', port);
    c.write(token.line);
    // A responder's line starts with the magic; anything else is another service: stop early.
    await c.read(
      (d) => d.includes(10) || !MAGIC_LINE.startsWith(d.subarray(0, MAGIC_LINE.length).toString('latin1')),
      timeoutMs,
      128,
    );
    const reply = c.data.toString('latin1');
    const evidence: Evidence = { rttMs: round(c.rttMs), bytesSent: c.bytesSent, bytesSeen: c.data.length };
    if (verifyReply(secret, token, reply))
      return {
        ok: true,
        evidence,
        detail: `responder answered the signed probe (${c.data.length} bytes back for ${c.bytesSent})`,
      };
    return {
      ok: false,
      evidence,
      detail: reply.startsWith('PORTOLAN1')
        ? 'a responder answered, but not with our secret'
        : 'no responder',
    };
  } finally {
    c.close();
  }
}

/** For UDP the probe rides in the sweep's datagram; the reply is checked here. */
export function udpResponderToken(secret: string, port: number): ProbeToken {
  return makeProbe(secret, 'udp', port);
}

export function isResponderReply(secret: string, token: ProbeToken, data: Buffer): boolean {
  return verifyReply(secret, token, data.toString('latin1'));
}
