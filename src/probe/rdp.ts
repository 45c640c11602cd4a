import { type ServiceContext, type ServiceOutcome, unanswered, withConn } from './conn.js';
import { answeredBy } from './identify.js';

/**
 * RDP: an X.224 Connection Request in a TPKT ([MS-RDPBCGR] 2.2.1.1) asking for TLS or CredSSP;
 * a server answers with a Connection Confirm (TPDU code 0xD0) and usually an RDP_NEG_RSP.
 */
export function x224ConnectionRequest(): Buffer {
  return Buffer.from([
    0x03,
    0x00,
    0x00,
    0x13, // TPKT, length 19
    0x0e,
    0xe0,
    0x00,
    0x00,
    0x00,
    0x00,
    0x00, // X.224 CR, class 0
    0x01,
    0x00,
    0x08,
    0x00,
    0x03,
    0x00,
    0x00,
    0x00, // RDP_NEG_REQ: TLS | CredSSP
  ]);
}

const PROTOCOLS: Record<number, string> = {
  0: 'standard RDP security',
  1: 'TLS',
  2: 'CredSSP',
  8: 'RDSTLS',
  4: 'CredSSP EX',
};

export type X224Reply =
  | { kind: 'confirm'; selected?: string; failure?: number }
  | { kind: 'incomplete' }
  | { kind: 'other' };

export function parseX224(data: Buffer): X224Reply {
  if (data.length < 4) return { kind: 'incomplete' };
  if (data[0] !== 0x03 || data[1] !== 0x00) return { kind: 'other' };
  const length = data.readUInt16BE(2);
  if (data.length < Math.min(length, 11)) return { kind: 'incomplete' };
  if (((data[5] ?? 0) & 0xf0) !== 0xd0) return { kind: 'other' };
  if (length >= 19 && data.length >= 19) {
    const type = data[11];
    const value = data.readUInt32LE(15);
    if (type === 0x02) return { kind: 'confirm', selected: PROTOCOLS[value] ?? `protocol ${value}` };
    if (type === 0x03) return { kind: 'confirm', failure: value };
  }
  return { kind: 'confirm' };
}

export function rdpProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  return withConn(ctx, 'RDP', async (c) => {
    c.write(x224ConnectionRequest());
    await c.read((d) => parseX224(d).kind !== 'incomplete', ctx.timeoutMs, 1024);
    const r = parseX224(c.data);
    if (r.kind === 'confirm') {
      const how = r.selected
        ? `, security ${r.selected}`
        : r.failure !== undefined
          ? `, negotiation failure code ${r.failure}`
          : '';
      return { verdict: 'ok', detail: `RDP server: X.224 Connection Confirm${how}`, evidence: {} };
    }
    if (c.data.length === 0)
      return {
        verdict: 'open-unverified',
        detail: unanswered(c, 'an X.224 Connection Request'),
        evidence: {},
      };
    return { verdict: 'wrong-service', detail: `expected RDP, ${answeredBy(c.data)} answers`, evidence: {} };
  });
}
