import { readdirSync, readFileSync } from 'node:fs';
import { mergePortRanges, type PortRange } from '../model/ports.js';
import { type BindChoice, LOOPBACK } from './addresses.js';
import { type Holder, holderText, portHolders } from './holder.js';
import { type Inbound, subtractPorts } from './inbound.js';
import { type ProbeProtocol, RESPONDER_CONNECTIONS } from './protocol.js';

/** Descriptors kept free for stdio, the event loop, DNS and the like. */
export const RESERVED_FDS = 64;

/** A set of ports to bind on one address. */
export interface PortGroup {
  proto: ProbeProtocol;
  address: string;
  ports: PortRange[];
  /** Bound for flows inside the host (on loopback). */
  local: boolean;
}

/** Ports that could not be bound, and why. */
export interface NotBound extends PortGroup {
  code: string;
  reason: string;
}

/** One listening socket. */
export interface SocketSpec {
  proto: ProbeProtocol;
  address: string;
  port: number;
  local: boolean;
}

/**
 * Descriptors for accepted connections, out of `free` descriptors: RESPONDER_CONNECTIONS, or a
 * quarter of what is free under a low open-file limit, so listeners and connections both fit.
 */
export function connectionReserve(free: number): number {
  return Math.max(1, Math.min(RESPONDER_CONNECTIONS, Math.floor(free / 4)));
}

/**
 * Listening sockets this process can still open, and the connections it can then serve at once:
 * the open-file soft limit (Node raises it to the hard limit at start-up) minus what is open now,
 * the reserve and the connections' share (connectionReserve). Undefined where /proc is not there
 * to ask; binding then stops at the first EMFILE instead.
 */
export function socketBudget(): { listeners: number; connections: number } | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    if (!soft || soft === 'unlimited') return undefined;
    const free = Math.max(0, Number(soft) - readdirSync('/proc/self/fd').length - RESERVED_FDS);
    const connections = connectionReserve(free);
    return { listeners: Math.max(0, free - connections), connections };
  } catch {
    return undefined;
  }
}

/**
 * Chooses the sockets to open within `budget`: single ports first (they are the named services),
 * then ranges from the smallest; a range that does not fit is bound as far as it goes. Returns the
 * sockets and, per group, the ports left over.
 */
export function allot(
  groups: readonly PortGroup[],
  budget: number | undefined,
): { sockets: SocketSpec[]; over: PortGroup[] } {
  const pieces = groups.flatMap((g) => g.ports.map((r) => ({ group: g, range: r })));
  pieces.sort((a, b) => a.range[1] - a.range[0] - (b.range[1] - b.range[0]));
  let left = budget ?? Number.POSITIVE_INFINITY;
  const sockets: SocketSpec[] = [];
  const over = new Map<PortGroup, PortRange[]>();
  for (const { group, range } of pieces) {
    const [lo, hi] = range;
    const take = Math.min(hi - lo + 1, left);
    for (let p = lo; p < lo + take; p++)
      sockets.push({ proto: group.proto, address: group.address, port: p, local: group.local });
    left -= take;
    if (lo + take <= hi) over.set(group, [...(over.get(group) ?? []), [lo + take, hi]]);
  }
  return { sockets, over: [...over].map(([g, ports]) => ({ ...g, ports: mergePortRanges(ports) })) };
}

/**
 * What to bind: the ports other hosts reach on the chosen addresses, and the ports of flows inside
 * the host on loopback, unless those addresses already cover loopback.
 */
export function socketGroups(inbound: Inbound, bind: BindChoice): PortGroup[] {
  const groups: PortGroup[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    const remote = inbound.remote[proto];
    if (remote.length)
      for (const address of bind.addresses) groups.push({ proto, address, ports: remote, local: false });
    const local = bind.coversLoopback ? subtractPorts(inbound.local[proto], remote) : inbound.local[proto];
    if (local.length) groups.push({ proto, address: LOOPBACK, ports: local, local: true });
  }
  return groups;
}

/** The outcome of binding one socket: absent `error` when bound. */
export interface BindOutcome {
  spec: SocketSpec;
  error?: { code: string; message: string };
}

const REASONS: Record<string, string> = {
  EADDRINUSE: 'already in use',
  EACCES: 'privileged port; needs root or CAP_NET_BIND_SERVICE',
  EADDRNOTAVAIL: 'address not on this machine',
  EMFILE: 'over the open-file limit (raise it with ulimit -n)',
  ENFILE: 'over the system-wide open-file limit',
};

/**
 * Bind outcomes merged back into port ranges: what listens, and what does not and why. A port in
 * use names what holds it where `holders` finds it (default: portHolders, from Linux's /proc),
 * and the ports of one holder stay one range.
 */
export function bindReport(
  outcomes: readonly BindOutcome[],
  over: readonly PortGroup[],
  budget: number | undefined,
  holders: (binds: readonly SocketSpec[]) => ReadonlyMap<string, Holder> = portHolders,
): { bound: PortGroup[]; notBound: NotBound[] } {
  const bound = new Map<string, PortGroup & { ports: PortRange[] }>();
  const failed = new Map<string, NotBound & { ports: PortRange[] }>();
  const inUse = outcomes.filter((o) => o.error?.code === 'EADDRINUSE').map((o) => o.spec);
  const held = inUse.length ? holders(inUse) : new Map<string, Holder>();
  for (const { spec, error } of outcomes) {
    const { proto, address, local, port } = spec;
    if (!error) {
      const key = `${proto}|${address}|${local}`;
      const g = bound.get(key) ?? { proto, address, local, ports: [] };
      g.ports.push([port, port]);
      bound.set(key, g);
      continue;
    }
    const holder = error.code === 'EADDRINUSE' ? held.get(`${proto}|${address}|${port}`) : undefined;
    const reason = holder
      ? `already in use ${holderText(holder, proto)}`
      : (REASONS[error.code] ?? error.message);
    const key = `${proto}|${address}|${local}|${error.code}|${reason}`;
    const g = failed.get(key) ?? { proto, address, local, code: error.code, reason, ports: [] };
    g.ports.push([port, port]);
    failed.set(key, g);
  }
  const merged = <T extends PortGroup>(g: T): T => ({ ...g, ports: mergePortRanges(g.ports) });
  return {
    bound: [...bound.values()].map(merged).sort(byGroup),
    notBound: [
      ...[...failed.values()].map(merged).sort(byGroup),
      ...over.map((g) => ({
        ...g,
        code: 'EMFILE',
        reason: `over the open-file limit (room for ${budget} listening sockets; raise it with ulimit -n)`,
      })),
    ],
  };
}

/** tcp before udp, then the network-facing sockets before the loopback ones for local flows. */
function byGroup(a: PortGroup, b: PortGroup): number {
  return (
    a.proto.localeCompare(b.proto) || Number(a.local) - Number(b.local) || a.address.localeCompare(b.address)
  );
}
