import { randomBytes } from 'node:crypto';
import { type ServiceContext, type ServiceOutcome, unanswered, withConn } from './conn.js';
import { answeredBy } from './identify.js';

/** SMB2 dialects we offer: 2.0.2 to 3.0.2 (3.1.1 needs negotiate contexts; 3.0.2 answers suffice). */
const DIALECTS = [0x0202, 0x0210, 0x0300, 0x0302];
const DIALECT_NAMES: Record<number, string> = {
  514: '2.0.2',
  528: '2.1',
  768: '3.0',
  770: '3.0.2',
  785: '3.1.1',
  767: '2.x (multi-protocol)',
};

/** An SMB2 NEGOTIATE request ([MS-SMB2] 2.2.3) in a direct-TCP (port 445) session header. */
export function smb2Negotiate(): Buffer {
  const header = Buffer.alloc(64);
  header.write('\xfeSMB', 0, 'latin1');
  header.writeUInt16LE(64, 4); // StructureSize
  header.writeUInt16LE(0, 12); // Command: NEGOTIATE
  header.writeUInt16LE(1, 14); // CreditRequest
  const body = Buffer.alloc(36 + DIALECTS.length * 2);
  body.writeUInt16LE(36, 0); // StructureSize
  body.writeUInt16LE(DIALECTS.length, 2);
  body.writeUInt16LE(1, 4); // SecurityMode: signing enabled
  randomBytes(16).copy(body, 12); // ClientGuid
  DIALECTS.forEach((d, i) => {
    body.writeUInt16LE(d, 36 + i * 2);
  });
  const msg = Buffer.concat([header, body]);
  const session = Buffer.alloc(4);
  session.writeUInt32BE(msg.length, 0); // type 0 (session message) + 24-bit length
  return Buffer.concat([session, msg]);
}

export type SmbReply =
  | { kind: 'smb2'; dialect: string; status: number }
  | { kind: 'smb1' }
  | { kind: 'refused'; code: number }
  | { kind: 'incomplete' }
  | { kind: 'other' };

/**
 * NetBIOS NEGATIVE SESSION RESPONSE error codes (RFC 1002 4.3.4), as an SMB server sends them in
 * place of an answer: Samba sends 0x81 to a client its `hosts allow` / `hosts deny` exclude.
 */
const NEGATIVE_SESSION: Record<number, string> = {
  128: 'not listening on called name',
  129: 'not listening for calling name',
  130: 'called name not present',
  131: 'called name present, but insufficient resources',
  143: 'unspecified error',
};

/** Words for a NEGATIVE SESSION RESPONSE code: "0x81 (not listening for calling name)". */
export function negativeSessionText(code: number): string {
  const words = NEGATIVE_SESSION[code];
  return `0x${code.toString(16)}${words ? ` (${words})` : ''}`;
}

export function parseSmbReply(data: Buffer): SmbReply {
  // A NetBIOS session packet of type 0x83 with a one-byte body: the session is refused.
  if (data[0] === 0x83) {
    if (data.length < 5) return { kind: 'incomplete' };
    if (data[1] === 0 && data.readUInt16BE(2) === 1) return { kind: 'refused', code: data[4] as number };
    return { kind: 'other' };
  }
  if (data.length < 8) return { kind: 'incomplete' };
  if (data[0] !== 0) return { kind: 'other' };
  const magic = data.subarray(4, 8).toString('latin1');
  if (magic === '\xffSMB') return { kind: 'smb1' };
  if (magic !== '\xfeSMB') return { kind: 'other' };
  if (data.length < 4 + 64 + 6) return { kind: 'incomplete' };
  const status = data.readUInt32LE(4 + 8);
  const rev = data.readUInt16LE(4 + 64 + 4);
  return { kind: 'smb2', status, dialect: DIALECT_NAMES[rev] ?? `0x${rev.toString(16)}` };
}

/**
 * An SMB1 NEGOTIATE ([MS-CIFS] 2.2.4.52.1) offering NT LM 0.12 and the SMB2 dialects, as clients
 * that speak both open a connection ([MS-SMB2] 3.2.4.2.2.1): an SMB2 server answers it with an
 * SMB2 NEGOTIATE response, an SMB1-only server with an SMB1 one.
 */
export function smb1Negotiate(): Buffer {
  const dialects = Buffer.concat(
    ['NT LM 0.12', 'SMB 2.002', 'SMB 2.???'].map((d) => Buffer.from(`\x02${d}\0`, 'latin1')),
  );
  const header = Buffer.alloc(32);
  header.write('\xffSMB', 0, 'latin1');
  header[4] = 0x72; // Command: NEGOTIATE
  header[9] = 0x18; // Flags: case-insensitive paths, canonicalized
  header.writeUInt16LE(0xc843, 10); // Flags2: Unicode, NT status, extended security, long names
  const params = Buffer.alloc(3); // WordCount 0, ByteCount
  params.writeUInt16LE(dialects.length, 1);
  const msg = Buffer.concat([header, params, dialects]);
  const session = Buffer.alloc(4);
  session.writeUInt32BE(msg.length, 0);
  return Buffer.concat([session, msg]);
}

/** NTSTATUS STATUS_NOT_SUPPORTED ([MS-ERREF] 2.3.1): a NEGOTIATE none of whose dialects the server takes. */
const STATUS_NOT_SUPPORTED = 0xc00000bb;

/** What clients that cannot use an SMB1-only server are: SMB1 is off by default on them. */
const SMB1_ONLY =
  'clients with SMB1 disabled (the default since Windows 10 1709 and Windows Server 2019, and Samba 4.11) cannot use it';

/**
 * SMB on 445: a NEGOTIATE answered with the SMB2 (or SMB1) magic is an SMB server; one answered
 * with a NetBIOS negative session response is an SMB server that refuses this client (not-serving).
 */
export async function smbProbe(ctx: ServiceContext): Promise<ServiceOutcome> {
  let closed = false;
  const out = await withConn(ctx, 'SMB', async (c) => {
    c.write(smb2Negotiate());
    await c.read((d) => parseSmbReply(d).kind !== 'incomplete', ctx.timeoutMs, 4096);
    const r = parseSmbReply(c.data);
    if (r.kind === 'smb2')
      return r.status === 0
        ? {
            verdict: 'ok',
            detail: `SMB2 server, dialect ${r.dialect}`,
            evidence: { smb: { dialect: r.dialect } },
          }
        : {
            verdict: 'ok',
            detail: `SMB2 server that takes none of the dialects offered, 2.0.2 to 3.0.2 (status 0x${r.status.toString(16)}${r.status === STATUS_NOT_SUPPORTED ? ', STATUS_NOT_SUPPORTED' : ''}): it requires SMB 3.1.1, which clients speak since Windows 10 / Server 2016 and Samba 4.3`,
            evidence: { smb: { dialect: '3.1.1 required' } },
          };
    if (r.kind === 'smb1')
      return {
        verdict: 'not-serving',
        detail: `SMB1-only server (SMB2 not offered): ${SMB1_ONLY}`,
        evidence: { smb: { dialect: 'SMB1' } },
      };
    if (r.kind === 'refused')
      return {
        verdict: 'not-serving',
        detail: `SMB server refused the session: NetBIOS negative session response ${negativeSessionText(r.code)}, as Samba answers a client its hosts allow / hosts deny exclude`,
        evidence: { smb: { refused: negativeSessionText(r.code) } },
      };
    if (c.data.length === 0) {
      closed = c.ended;
      return {
        verdict: 'open-unverified',
        detail: unanswered(c, 'an SMB2 NEGOTIATE'),
        evidence: {},
      };
    }
    return { verdict: 'wrong-service', detail: `expected SMB, ${answeredBy(c.data)} answers`, evidence: {} };
  });
  if (!closed) return out;
  // Closed on an SMB2 NEGOTIATE: an SMB1-only server does that (Samba with server max protocol =
  // NT1). The negotiate of a client that speaks both tells it.
  const again = await withConn(ctx, 'SMB', async (c) => {
    c.write(smb1Negotiate());
    await c.read((d) => parseSmbReply(d).kind !== 'incomplete', ctx.timeoutMs, 4096);
    if (parseSmbReply(c.data).kind !== 'smb1') return out;
    return {
      verdict: 'not-serving',
      detail: `SMB1-only server: it closed the connection on an SMB2 NEGOTIATE and answered an SMB1 one; ${SMB1_ONLY}`,
      evidence: { smb: { dialect: 'SMB1' } },
    };
  });
  return again.verdict === 'not-serving' ? again : out;
}
