import type { Flow, Protocol } from '../model/flow.js';
import { formatPorts, type PortRange } from '../model/ports.js';

/** One firewall rule: sources may reach destinations on these ports. Built only from network flows. */
export interface Rule {
  protocol: Protocol;
  ports: PortRange[];
  icmpType?: 'echo-request' | 'any';
  /** Addresses as the inventory gives them; null stands for an unspecified peer ("any"). */
  from: (string | null)[];
  to: (string | null)[];
  /** Host names on each side (null for an unspecified peer). */
  fromHosts: (string | null)[];
  toHosts: (string | null)[];
  services: string[];
  flows: Flow[];
}

/**
 * Aggregates flows into rules: flows to the same destination with the same protocol and ports share
 * one rule with all their sources; then rules with the same sources and ports share destinations.
 * Local flows never cross the network and make no rule.
 */
export function aggregateRules(flows: readonly Flow[]): Rule[] {
  const step1 = new Map<string, Rule>();
  for (const f of flows) {
    if (f.local) continue;
    const key = [f.protocol, formatPorts(f.ports), f.icmpType ?? '', f.to.address ?? '*', f.to.host ?? '*'].join('|');
    const r = step1.get(key) ?? {
      protocol: f.protocol,
      ports: f.ports,
      ...(f.icmpType ? { icmpType: f.icmpType } : {}),
      from: [],
      to: [f.to.address],
      fromHosts: [],
      toHosts: [f.to.host],
      services: [],
      flows: [],
    };
    addOnce(r.from, f.from.address);
    addOnce(r.fromHosts, f.from.host);
    addOnce(r.services, f.service);
    r.flows.push(f);
    step1.set(key, r);
  }
  const step2 = new Map<string, Rule>();
  for (const r of step1.values()) {
    const key = [r.protocol, formatPorts(r.ports), r.icmpType ?? '', [...r.fromHosts].sort().join(',')].join('|');
    const seen = step2.get(key);
    if (!seen) {
      step2.set(key, r);
      continue;
    }
    for (const a of r.to) addOnce(seen.to, a);
    for (const h of r.toHosts) addOnce(seen.toHosts, h);
    for (const s of r.services) addOnce(seen.services, s);
    seen.flows.push(...r.flows);
  }
  return [...step2.values()];
}

function addOnce<T>(list: T[], v: T): void {
  if (!list.includes(v)) list.push(v);
}
