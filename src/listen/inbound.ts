import type { Flow, Plan } from '../model/flow.js';
import { mergePortRanges, type PortRange } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import type { ProbeProtocol } from './protocol.js';

/** What the plan says one host must accept: the responder's whole scope. */
export interface Inbound {
  /** Ports reached from other hosts (or from unspecified peers), merged per protocol. */
  remote: Record<ProbeProtocol, PortRange[]>;
  /** Ports of flows inside the host (from and to the same host): bound on loopback. */
  local: Record<ProbeProtocol, PortRange[]>;
  /** ICMP flows to the host: nothing to bind, the kernel answers echo requests. */
  icmp: Flow[];
  /** Inventory hosts that start a TCP/UDP flow to this host, in plan order: where to run `check`. */
  peers: string[];
}

export function inboundFor(plan: Plan, host: string): Inbound {
  const remote: Record<ProbeProtocol, PortRange[]> = { tcp: [], udp: [] };
  const local: Record<ProbeProtocol, PortRange[]> = { tcp: [], udp: [] };
  const icmp: Flow[] = [];
  const peers: string[] = [];
  for (const f of plan.flows) {
    if (f.to.host !== host) continue;
    if (f.protocol === 'icmp') {
      icmp.push(f);
      continue;
    }
    pushAll((f.local ? local : remote)[f.protocol], f.ports);
    if (!f.local && f.from.host !== null && !peers.includes(f.from.host)) peers.push(f.from.host);
  }
  return {
    remote: { tcp: mergePortRanges(remote.tcp), udp: mergePortRanges(remote.udp) },
    local: { tcp: mergePortRanges(local.tcp), udp: mergePortRanges(local.udp) },
    icmp,
    peers,
  };
}

/** The ports of `a` that are not in `b` (both merged). */
export function subtractPorts(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  let out: PortRange[] = [...a];
  for (const [blo, bhi] of b) {
    out = out.flatMap(([lo, hi]): PortRange[] => {
      if (bhi < lo || blo > hi) return [[lo, hi]];
      const keep: PortRange[] = [];
      if (lo < blo) keep.push([lo, blo - 1]);
      if (hi > bhi) keep.push([bhi + 1, hi]);
      return keep;
    });
  }
  return out;
}
