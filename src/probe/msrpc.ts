import { type ServiceContext, type ServiceOutcome, withConn } from './conn.js';
import { answeredBy } from './identify.js';

/** A DCE/RPC UUID in NDR little-endian layout (first three fields byte-swapped). */
function uuid(text: string): Buffer {
  const h = text.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  return Buffer.concat([
    Buffer.from(b.subarray(0, 4)).reverse(),
    Buffer.from(b.subarray(4, 6)).reverse(),
    Buffer.from(b.subarray(6, 8)).reverse(),
    b.subarray(8),
  ]);
}

/** The endpoint mapper interface, v3.0 ([MS-RPCE] 2.1.1.1 / C706 appendix O). */
const EPM = uuid('e1af8308-5d1f-11c9-91a4-08002b14a0fa');
/** NDR transfer syntax, v2. */
const NDR = uuid('8a885d04-1ceb-11c9-9fe8-08002b104860');

/** A connection-oriented bind PDU (C706 12.6.4.3) to the endpoint mapper. */
export function epmBind(): Buffer {
  const b = Buffer.alloc(72);
  b[0] = 5; // rpc_vers
  b[1] = 0; // rpc_vers_minor
  b[2] = 11; // PTYPE bind
  b[3] = 0x03; // first and last fragment
  b.writeUInt32BE(0x10000000, 4); // data representation: little-endian, ASCII, IEEE
  b.writeUInt16LE(72, 8); // frag_length
  b.writeUInt16LE(0, 10); // auth_length
  b.writeUInt32LE(1, 12); // call_id
  b.writeUInt16LE(4280, 16); // max_xmit_frag
  b.writeUInt16LE(4280, 18); // max_recv_frag
  b.writeUInt32LE(0, 20); // assoc_group_id
  b[24] = 1; // one presentation context
  b.writeUInt16LE(0, 28); // context id
  b[30] = 1; // one transfer syntax
  EPM.copy(b, 32);
  b.writeUInt16LE(3, 48); // interface version 3.0
  b.writeUInt16LE(0, 50);
  NDR.copy(b, 52);
  b.writeUInt32LE(2, 68);
  return b;
}

export type BindReply =
  | { kind: 'bind_ack'; accepted: boolean; secondaryAddress: string }
  | { kind: 'bind_nak' }
  | { kind: 'incomplete' }
  | { kind: 'other' };

export function parseBindReply(data: Buffer): BindReply {
  if (data.length < 16) return data.length > 0 && data[0] !== 5 ? { kind: 'other' } : { kind: 'incomplete' };
  if (data[0] !== 5) return { kind: 'other' };
  const fragLength = data.readUInt16LE(8);
  if (data[2] === 13) return { kind: 'bind_nak' };
  if (data[2] !== 12) return { kind: 'other' };
  if (data.length < fragLength) return { kind: 'incomplete' };
  const addrLen = data.readUInt16LE(24);
  const secondaryAddress = data
    .subarray(26, 26 + addrLen)
    .toString('latin1')
    .replace(/\0+$/, '');
  let at = 26 + addrLen;
  at += (4 - (at % 4)) % 4;
  const accepted = data.length >= at + 6 && (data[at] ?? 0) >= 1 && data.readUInt16LE(at + 4) === 0;
  return { kind: 'bind_ack', accepted, secondaryAddress };
}

/** MS-RPC endpoint mapper on 135: a bind answered with bind_ack. */
export function msrpcProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  return withConn(ctx, 'MS-RPC', async (c) => {
    c.write(epmBind());
    await c.read((d) => parseBindReply(d).kind !== 'incomplete', ctx.timeoutMs, 4096);
    const r = parseBindReply(c.data);
    if (r.kind === 'bind_ack')
      return {
        verdict: 'ok',
        detail: `RPC endpoint mapper: bind_ack${r.accepted ? '' : ' (context not accepted)'}${r.secondaryAddress ? `, port ${r.secondaryAddress}` : ''}`,
        evidence: {},
      };
    if (r.kind === 'bind_nak')
      return {
        verdict: 'open-unverified',
        detail: 'a DCE/RPC server refused the endpoint mapper bind (bind_nak)',
        evidence: {},
      };
    if (c.data.length === 0)
      return { verdict: 'open-unverified', detail: 'connected; no answer to an RPC bind', evidence: {} };
    return {
      verdict: 'wrong-service',
      detail: `expected MS-RPC, ${answeredBy(c.data)} answers`,
      evidence: {},
    };
  });
}
