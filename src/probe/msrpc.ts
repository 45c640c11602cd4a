import {
  Conn,
  ConnectError,
  round,
  type ServiceContext,
  type ServiceOutcome,
  unanswered,
  withConn,
} from './conn.js';
import { isReset, verdictForErrno } from './errno.js';
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

/** An RPC interface: its UUID and version, as the endpoint mapper keys its entries. */
export interface RpcInterface {
  name: string;
  uuid: string;
  major: number;
  minor: number;
}

/**
 * WMI's DCOM interface (IWbemLevel1Login, [MS-WMI] 1.9): the one `check` asks the endpoint mapper
 * about after 135, because WMI (PlateSpin discovery) moves to a dynamic port next.
 */
export const WMI: RpcInterface = {
  name: 'WMI (IWbemLevel1Login)',
  uuid: 'f309ad18-d86a-11d0-a075-00c04fb68820',
  major: 0,
  minor: 0,
};

/** EPT_S_NOT_REGISTERED (C706 appendix O; [MS-RPCE] 2.2.1.2.5): no endpoint for the interface. */
export const EPT_S_NOT_REGISTERED = 0x16c9a0d6;

/**
 * A protocol tower for ncacn_ip_tcp (C706 appendix L; [MS-RPCE] 2.2.1.1.1): interface UUID and
 * version, NDR transfer syntax, RPC connection-oriented, TCP port 0, IPv4 0.0.0.0 (any).
 */
function tcpTower(iface: RpcInterface): Buffer {
  const floor = (lhs: Buffer, rhs: Buffer) => {
    const b = Buffer.alloc(4 + lhs.length + rhs.length);
    b.writeUInt16LE(lhs.length, 0);
    lhs.copy(b, 2);
    b.writeUInt16LE(rhs.length, 2 + lhs.length);
    rhs.copy(b, 4 + lhs.length);
    return b;
  };
  const u16 = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return b;
  };
  const idFloor = (id: Buffer, major: number, minor: number) =>
    floor(Buffer.concat([Buffer.from([0x0d]), id, u16(major)]), u16(minor));
  const count = u16(5);
  return Buffer.concat([
    count,
    idFloor(uuid(iface.uuid), iface.major, iface.minor),
    idFloor(NDR, 2, 0),
    floor(Buffer.from([0x0b]), u16(0)), // RPC connection-oriented protocol, minor 0
    floor(Buffer.from([0x07]), Buffer.alloc(2)), // TCP port (big-endian), 0 = any
    floor(Buffer.from([0x09]), Buffer.alloc(4)), // IPv4 address (big-endian), 0 = any
  ]);
}

/**
 * An ept_map request (EPM opnum 3, C706 appendix O) on presentation context 0 of a bound
 * association: "which endpoint serves this interface over TCP?", up to `maxTowers` answers.
 */
export function eptMapRequest(iface: RpcInterface, callId = 2, maxTowers = 4): Buffer {
  const tower = tcpTower(iface);
  const pad = (4 - (tower.length % 4)) % 4;
  const stub = Buffer.alloc(4 + 16 + 4 + 4 + 4 + tower.length + pad + 20 + 4);
  let at = 0;
  stub.writeUInt32LE(1, at); // object: a full pointer (referent 1) to the nil UUID
  at += 4 + 16;
  stub.writeUInt32LE(2, at); // map_tower: referent 2
  at += 4;
  stub.writeUInt32LE(tower.length, at); // twr_t.tower_length
  at += 4;
  stub.writeUInt32LE(tower.length, at); // conformant array size
  at += 4;
  tower.copy(stub, at);
  at += tower.length + pad;
  at += 20; // entry_handle: the nil context handle
  stub.writeUInt32LE(maxTowers, at);
  const head = Buffer.alloc(24);
  head[0] = 5;
  head[2] = 0; // PTYPE request
  head[3] = 0x03;
  head.writeUInt32BE(0x10000000, 4);
  head.writeUInt16LE(24 + stub.length, 8);
  head.writeUInt32LE(callId, 12);
  head.writeUInt32LE(stub.length, 16); // alloc_hint
  head.writeUInt16LE(0, 20); // context id
  head.writeUInt16LE(3, 22); // opnum 3: ept_map
  return Buffer.concat([head, stub]);
}

export type EptMapReply =
  | { kind: 'endpoints'; endpoints: { port: number; ip: string }[] }
  | { kind: 'status'; status: number }
  | { kind: 'fault'; status: number }
  | { kind: 'incomplete' }
  | { kind: 'other' };

/** Parses the answer to eptMapRequest: the TCP ports (and IPv4 addresses) of the towers it hands back. */
export function parseEptMapReply(data: Buffer): EptMapReply {
  if (data.length < 16) return data.length > 0 && data[0] !== 5 ? { kind: 'other' } : { kind: 'incomplete' };
  if (data[0] !== 5) return { kind: 'other' };
  const fragLength = data.readUInt16LE(8);
  if (data.length < fragLength) return { kind: 'incomplete' };
  if (data[2] === 3) return { kind: 'fault', status: fragLength >= 28 ? data.readUInt32LE(24) : 0 };
  if (data[2] !== 2 || fragLength < 24 + 20 + 4 + 12 + 4) return { kind: 'other' };
  const end = fragLength;
  let at = 24 + 20; // after the response header and the entry handle
  const num = data.readUInt32LE(at);
  at += 4;
  const max = data.readUInt32LE(at);
  const actual = data.readUInt32LE(at + 8);
  at += 12;
  if (actual > max || at + 4 * actual + 4 > end) return { kind: 'other' };
  const refs: number[] = [];
  for (let i = 0; i < actual; i++) refs.push(data.readUInt32LE(at + 4 * i));
  at += 4 * actual;
  const endpoints: { port: number; ip: string }[] = [];
  for (const ref of refs) {
    if (ref === 0) continue;
    if (at + 8 > end - 4) return { kind: 'other' };
    const len = data.readUInt32LE(at);
    at += 8; // tower_length, then the conformant array size
    if (at + len > end - 4) return { kind: 'other' };
    const tower = data.subarray(at, at + len);
    at += len + ((4 - (len % 4)) % 4);
    let port: number | undefined;
    let ip = '';
    const floors = tower.length >= 2 ? tower.readUInt16LE(0) : 0;
    let f = 2;
    for (let k = 0; k < floors && f + 2 <= tower.length; k++) {
      const lhsLen = tower.readUInt16LE(f);
      const proto = tower[f + 2];
      f += 2 + lhsLen;
      if (f + 2 > tower.length) break;
      const rhsLen = tower.readUInt16LE(f);
      const rhs = tower.subarray(f + 2, f + 2 + rhsLen);
      f += 2 + rhsLen;
      if (proto === 0x07 && rhs.length === 2) port = rhs.readUInt16BE(0);
      if (proto === 0x09 && rhs.length === 4) ip = [...rhs].join('.');
    }
    if (port !== undefined) endpoints.push({ port, ip });
  }
  const status = at + 4 <= end ? data.readUInt32LE(end - 4) : 0;
  if (num === 0 || !endpoints.length) return { kind: 'status', status: status || EPT_S_NOT_REGISTERED };
  return { kind: 'endpoints', endpoints };
}

function statusText(status: number): string {
  return status === EPT_S_NOT_REGISTERED
    ? 'not registered (ept_s_not_registered)'
    : `status 0x${status.toString(16).padStart(8, '0')}`;
}

/**
 * Asks the endpoint mapper at `ctx` which TCP port serves `iface`, as `portqry -e 135` does: a bind
 * to the EPM, then ept_map. Resolves the reply, or an error text when the exchange failed.
 */
export async function eptMap(
  ctx: ServiceContext,
  iface: RpcInterface,
): Promise<EptMapReply | { kind: 'failed'; reason: string }> {
  let c: Conn;
  try {
    c = await Conn.open(ctx.address, ctx.port, ctx.timeoutMs, ctx.limiter);
  } catch (err) {
    return { kind: 'failed', reason: err instanceof ConnectError ? err.code : String(err) };
  }
  try {
    return await mapOn(c, iface, ctx.timeoutMs);
  } finally {
    c.close();
  }
}

async function mapOn(
  c: Conn,
  iface: RpcInterface,
  timeoutMs: number,
): Promise<EptMapReply | { kind: 'failed'; reason: string }> {
  c.write(epmBind());
  await c.read((d) => parseBindReply(d).kind !== 'incomplete', timeoutMs, 4096);
  const bind = parseBindReply(c.data);
  if (bind.kind !== 'bind_ack' || !bind.accepted) return { kind: 'failed', reason: `bind: ${bind.kind}` };
  const skip = c.data.length;
  c.write(eptMapRequest(iface));
  await c.read((d) => parseEptMapReply(d.subarray(skip)).kind !== 'incomplete', timeoutMs, 65536);
  const r = parseEptMapReply(c.data.subarray(skip));
  if (r.kind === 'incomplete') return { kind: 'failed', reason: 'no answer to ept_map' };
  return r;
}

/**
 * What `check` says after an ok on 135 when the port WMI moves to was not proved: the flow opens the
 * endpoint mapper only, and DCOM/WMI needs a dynamic port next ([MS-RPCE] 2.2.1.2; Microsoft KB
 * 154596: 49152-65535 by default since Windows Server 2008).
 */
export function dynamicRpcCaveat(why: string): string {
  return `caveat: ${why}; WMI/DCOM moves to a dynamic port (49152-65535 by default) after 135, which this flow does not open: allow it (PlateSpin setting wmi-dynamic-ports: open) or pin WMI to a fixed port`;
}

/** MS-RPC endpoint mapper on 135: a bind answered with bind_ack. */
export function msrpcProbe(ctx: ServiceContext, iface: RpcInterface = WMI): Promise<ServiceOutcome> {
  return withConn(ctx, 'MS-RPC', async (c) => {
    c.write(epmBind());
    await c.read((d) => parseBindReply(d).kind !== 'incomplete', ctx.timeoutMs, 4096);
    const r = parseBindReply(c.data);
    if (r.kind === 'bind_ack') {
      const head = `RPC endpoint mapper: bind_ack${r.accepted ? '' : ' (context not accepted)'}${r.secondaryAddress ? `, port ${r.secondaryAddress}` : ''}`;
      if (!r.accepted)
        return {
          verdict: 'ok',
          detail: `${head}; ${dynamicRpcCaveat('ept_map not asked')}`,
          evidence: { caveat: 'ept_map not asked' },
        };
      return followEndpoint(c, ctx, head, iface);
    }
    if (r.kind === 'bind_nak')
      return {
        verdict: 'open-unverified',
        detail: 'a DCE/RPC server refused the endpoint mapper bind (bind_nak)',
        evidence: {},
      };
    if (c.data.length === 0)
      return { verdict: 'open-unverified', detail: unanswered(c, 'an RPC bind'), evidence: {} };
    return {
      verdict: 'wrong-service',
      detail: `expected MS-RPC, ${answeredBy(c.data)} answers`,
      evidence: {},
    };
  });
}

/**
 * After the bind_ack: ept_map for `iface` on the same association, then a TCP connect to the port
 * it hands back. A port that does not answer fails the flow (the path to WMI is shut); one that
 * accepts, even where a reset follows before the connect is read, is open; no port to follow
 * leaves the ok with a caveat.
 */
async function followEndpoint(
  c: Conn,
  ctx: ServiceContext,
  head: string,
  iface: RpcInterface,
): Promise<ServiceOutcome> {
  const skip = c.data.length;
  c.write(eptMapRequest(iface));
  await c.read((d) => parseEptMapReply(d.subarray(skip)).kind !== 'incomplete', ctx.timeoutMs, 65536);
  const m = parseEptMapReply(c.data.subarray(skip));
  if (m.kind !== 'endpoints') {
    const why =
      m.kind === 'status' || m.kind === 'fault'
        ? `the endpoint mapper names no TCP port for ${iface.name} (ept_map: ${statusText(m.status)})`
        : `no usable answer to ept_map for ${iface.name}`;
    return { verdict: 'ok', detail: `${head}; ${dynamicRpcCaveat(why)}`, evidence: { caveat: why } };
  }
  const port = (m.endpoints[0] as { port: number }).port;
  const epm = { interface: iface.name, port };
  let dyn: Conn;
  try {
    dyn = await Conn.open(ctx.address, port, ctx.timeoutMs, ctx.limiter);
  } catch (err) {
    const code = err instanceof ConnectError ? err.code : 'EUNKNOWN';
    // Accepted, then reset before this side read the completion (isReset): the SYN got
    // through and something listens, so the path to the port is open, as the sweep counts it.
    if (isReset(code))
      return {
        verdict: 'ok',
        detail: `${head}; ept_map hands out tcp/${port} for ${iface.name}, which accepts a connection (reset right after it, ${code}: the path is open)`,
        evidence: { errno: code, epm },
      };
    const v = verdictForErrno(code) ?? 'filtered';
    return {
      verdict: v,
      detail: `${head}; ept_map hands out tcp/${port} for ${iface.name}, and a connect to it failed (${code}): allow tcp ${port} (the dynamic RPC range) too`,
      evidence: { errno: code, epm },
    };
  }
  const rtt = round(dyn.rttMs);
  dyn.close();
  return {
    verdict: 'ok',
    detail: `${head}; ept_map hands out tcp/${port} for ${iface.name}, which accepts a connection (${rtt} ms)`,
    evidence: { epm },
  };
}
