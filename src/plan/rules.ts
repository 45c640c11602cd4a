/**
 * The rule model: the plan's flows aggregated into the rules a firewall needs (network mode: forward
 * rules between hosts; host mode: one host's inbound and outbound rules). The plan stage decides
 * it; exports render it.
 */
import { createHash } from 'node:crypto';
import type { Inventory } from '../inventory/types.js';
import { collapseAddresses } from '../model/address.js';
import type { Flow, Plan, Protocol } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';

/**
 * The one normalized model every generator renders from. Addresses are split by kind and collapsed
 * once here; no generator re-derives them from flows.
 */
export interface AddressSet {
  /** Collapsed IPv4 CIDRs (a single address is /32). */
  v4: string[];
  /** Collapsed IPv6 CIDRs (a single address is /128). */
  v6: string[];
  /** DNS names (cloud endpoints): rendered where the platform takes names, else as a set the user fills. */
  names: string[];
  /** Peers the documents leave unspecified, by description: always a set the user fills, never "any". */
  unspecified: string[];
  /** The inventory hosts behind these addresses (null for unspecified peers). */
  hosts: (string | null)[];
}

export type Direction = 'in' | 'out' | 'forward';

export interface ExportRule {
  /** Stable, unique within one export: `in-tcp-443-1`. Safe as an identifier on every platform. */
  id: string;
  direction: Direction;
  protocol: Protocol;
  /** Destination ports, merged; empty for ICMP. */
  ports: PortRange[];
  icmpType?: 'echo-request' | 'any';
  /** Sources. In host mode one side is the host itself (dst for `in`, src for `out`). */
  src: AddressSet;
  /** Destinations. */
  dst: AddressSet;
  /**
   * Services, in the order of their lowest port (the order `ports` lists them in, so `tcp 22,8006
   * (ssh, https)` pairs up), and the flows behind the rule (for comments and tables).
   */
  services: string[];
  flows: Flow[];
}

export interface ExportModel {
  site: string;
  mode: 'host' | 'network';
  /** Host mode: the host the rules are for. */
  host?: { name: string; address: string };
  rules: ExportRule[];
  /** Host mode: flows that stay on this host. Called out, never turned into a rule. */
  localFlows: Flow[];
  inventorySha256: string;
  generatorVersion: string;
  /** The plan's warnings (unspecified peers, facts left out, ports the documents defer elsewhere). */
  planWarnings?: string[];
  /** The plan's advisory warnings: flows beyond the documents that were not planned, and why to add them. */
  advisories?: string[];
  /**
   * Delta change requests only: what the previous version allowed and the new one no longer needs,
   * one entry per rule of the previous version's export that loses flows. Absent (or empty) when
   * nothing is removed; a full export never has it.
   */
  removals?: RemovalRule[];
}

/**
 * A rule of the previous version's export (its id as that export printed it) and the flows of it
 * the new version drops: removed flows, and the old form of flows whose address, protocol or ports
 * changed. `whole` is true when every flow behind the rule leaves, so the rule itself goes; otherwise
 * the rule stays for its other flows and only the leaving flows' peers or ports come out of it.
 */
export interface RemovalRule {
  rule: ExportRule;
  leaving: Flow[];
  whole: boolean;
}

export function emptySet(): AddressSet {
  return { v4: [], v6: [], names: [], unspecified: [], hosts: [] };
}

export function setIsEmpty(s: AddressSet): boolean {
  return !s.v4.length && !s.v6.length && !s.names.length && !s.unspecified.length;
}

/**
 * One side of a rule while its flows are added: each peer once, in the order the flows first name
 * it (insertion-ordered sets, so adding a peer is constant time, not a scan).
 */
class SideBuilder {
  readonly hosts = new Set<string | null>();
  readonly addresses = new Set<string>();
  readonly v4: string[] = [];
  readonly v6: string[] = [];
  readonly names: string[] = [];
  readonly unspecified = new Set<string>();
  /**
   * Endpoints already added. The plan gives each host and role one endpoint object that all its
   * flows share, so a rule's thousands of flows name a few endpoints; adding one again changes nothing.
   */
  private readonly endpoints = new Set<Flow['from']>();
  private last: Flow['from'] | undefined;

  add(e: Flow['from']): void {
    if (e === this.last) return;
    this.last = e;
    if (this.endpoints.has(e)) return;
    this.endpoints.add(e);
    this.hosts.add(e.host);
    if (e.address === null) {
      this.unspecified.add(e.description ?? 'unspecified peer');
      return;
    }
    // Each address once: a rule's flows name the same hosts many times over.
    if (this.addresses.has(e.address)) return;
    this.addresses.add(e.address);
    if (IPV4_TEXT.test(e.address)) this.v4.push(e.address);
    else if (e.address.includes(':')) this.v6.push(e.address);
    else this.names.push(e.address);
  }

  /** The collapsed AddressSet: CIDRs merged, names and unspecified peers sorted. */
  finish(): AddressSet {
    return {
      v4: collapseAddresses(this.v4),
      v6: collapseAddresses(this.v6),
      names: this.names.sort(),
      unspecified: [...this.unspecified].sort(),
      hosts: [...this.hosts],
    };
  }
}

const IPV4_TEXT = /^[\d.]+(\/\d+)?$/;

/**
 * The most characters of one free-text field (a purpose, a note, a source reference, a peer
 * description) an export carries; the plan (JSON) keeps the whole text. Every generated line must
 * stay below its reading tool's limit (src/export/limits.ts: iptables-restore reads 10240-byte
 * lines), and a line joins a few such fields at most.
 */
export const EXPORT_TEXT_MAX = 1000;

/** Text cut to EXPORT_TEXT_MAX characters (whole code points), marked with "..." when cut. */
export function clipText(text: string, max = EXPORT_TEXT_MAX): string {
  if (text.length <= max) return text;
  const points = Array.from(text.slice(0, max + 1));
  return points.length <= max ? text : `${points.slice(0, max - 3).join('')}...`;
}

function clipEndpoint(e: Flow['from']): Flow['from'] {
  return e.description === undefined ? e : { ...e, description: clipText(e.description) };
}

/** Whether clipFlow would cut any text of a flow. */
function needsClip(f: Flow): boolean {
  return longPurposeOrPeer(f) || longNotes(f.notes) || longSources(f.sources);
}

function longPurposeOrPeer(f: Flow): boolean {
  const from = f.from.description;
  const to = f.to.description;
  return (
    f.purpose.length > EXPORT_TEXT_MAX ||
    (from !== undefined && from.length > EXPORT_TEXT_MAX) ||
    (to !== undefined && to.length > EXPORT_TEXT_MAX)
  );
}

function longNotes(notes: readonly string[]): boolean {
  for (const n of notes) if (n.length > EXPORT_TEXT_MAX) return true;
  return false;
}

function longSources(sources: Flow['sources']): boolean {
  for (const s of sources) if (s.doc.length > 200 || s.ref.length > 200) return true;
  return false;
}

/**
 * The flows with their free texts clipped (clipFlow): the same array when no flow needs it. Flows
 * of one catalog row share their notes and sources, so a list just checked is not checked again.
 */
function clipFlows(flows: Flow[]): Flow[] {
  let notes: readonly string[] | undefined;
  let sources: Flow['sources'] | undefined;
  for (const f of flows) {
    if (longPurposeOrPeer(f)) return flows.map(clipFlow);
    if (f.notes !== notes) {
      if (longNotes(f.notes)) return flows.map(clipFlow);
      notes = f.notes;
    }
    if (f.sources !== sources) {
      if (longSources(f.sources)) return flows.map(clipFlow);
      sources = f.sources;
    }
  }
  return flows;
}

/** A flow with its free texts clipped (clipText); the flow itself when nothing is long enough to cut. */
function clipFlow(f: Flow): Flow {
  if (!needsClip(f)) return f;
  return {
    ...f,
    from: clipEndpoint(f.from),
    to: clipEndpoint(f.to),
    purpose: clipText(f.purpose),
    notes: f.notes.map((n) => clipText(n)),
    sources: f.sources.map((s) => ({
      ...s,
      doc: clipText(s.doc, 200),
      ref: clipText(s.ref, 200),
    })),
  };
}

export interface ModelOptions {
  /** Host mode: rules for this inventory host. Network mode when absent. */
  host?: string;
  generatorVersion: string;
}

/**
 * Builds rules from the plan. Host mode: the host's inbound rules (flows to it) and outbound rules
 * (flows from it), grouped by protocol and ports with the peers merged. Network mode: forward rules,
 * grouped by protocol, ports and destination with sources merged, then by identical sources.
 */
export function buildExportModel(whole: Plan, inv: Inventory, opts: ModelOptions): ExportModel {
  const plan = { ...whole, site: clipText(whole.site), flows: clipFlows(whole.flows) };
  const base = {
    site: plan.site,
    inventorySha256: inv.sha256,
    generatorVersion: opts.generatorVersion,
    planWarnings: plan.warnings.map((w) => clipText(w.message)),
    advisories: plan.warnings.filter((w) => w.code === 'advisory').map((w) => clipText(w.message)),
  };
  if (opts.host !== undefined) {
    const network = plan.flows.filter((f) => !f.local);
    const host = inv.hosts.find((h) => h.name === opts.host);
    if (!host) throw new Error(`unknown host ${opts.host}`);
    const rules: ExportRule[] = [];
    for (const direction of ['in', 'out'] as const) {
      const mine = network.filter((f) => (direction === 'in' ? f.to.host : f.from.host) === host.name);
      const groups = new Map<string, Flow[]>();
      for (const f of mine) {
        const key = matchKey(f);
        const group = groups.get(key);
        if (group) group.push(f);
        else groups.set(key, [f]);
      }
      for (const flows of groups.values()) {
        const src = new SideBuilder();
        const dst = new SideBuilder();
        for (const f of flows) {
          src.add(f.from);
          dst.add(f.to);
        }
        rules.push(makeRule(direction, flows, src.finish(), dst.finish()));
      }
    }
    const localFlows = plan.flows.filter((f) => f.local && f.from.host === host.name);
    return {
      ...base,
      mode: 'host',
      host: { name: host.name, address: host.address.text },
      rules: numbered(mergeSameEndpoints(rules)),
      localFlows,
    };
  }
  return { ...base, mode: 'network', rules: forwardRules(plan.flows), localFlows: [] };
}

/**
 * Network mode: forward rules between hosts, grouped by protocol, ports and destination with the
 * sources merged, then by identical sources with the destinations merged. Local flows make no rule.
 */
export function forwardRules(flows: readonly Flow[]): ExportRule[] {
  // A plan of 10,000 hosts has tens of thousands of flows in about as many groups: the groups are
  // numbers and flat arrays here, not an object and a few arrays each that the garbage collector
  // would copy while they live.
  const n = flows.length;
  // Pass 1: each flow's group, by protocol, ports, ICMP type and destination, numbered in the order
  // flows first name each. A group keeps its destination endpoint (the plan gives each host and role
  // one endpoint object that all its flows share) and, rarely, the other objects naming that host.
  const matchOf = matchIds();
  const dstGroups: Map<string, number>[] = [];
  const groupOf = new Int32Array(n).fill(-1);
  const size: number[] = [];
  const groupMatch: number[] = [];
  const groupTo: Flow['to'][] = [];
  const moreTo = new Map<number, Flow['to'][]>();
  for (let i = 0; i < n; i++) {
    const f = flows[i] as Flow;
    if (f.local) continue;
    const m = matchOf(f);
    let dsts = dstGroups[m];
    if (dsts === undefined) {
      dsts = new Map();
      dstGroups[m] = dsts;
    }
    const to = f.to;
    let g = dsts.get(to.host ?? `any:${to.description}`);
    if (g === undefined) {
      g = size.length;
      dsts.set(to.host ?? `any:${to.description}`, g);
      size.push(0);
      groupMatch.push(m);
      groupTo.push(to);
    } else if (to !== groupTo[g]) {
      let more = moreTo.get(g);
      if (more === undefined) {
        more = [];
        moreTo.set(g, more);
      }
      if (!more.includes(to)) more.push(to);
    }
    groupOf[i] = g;
    size[g] = (size[g] as number) + 1;
  }
  // The flows in group order, each group's in plan order (a counting sort).
  const groups = size.length;
  const start = new Int32Array(groups + 1);
  for (let g = 0; g < groups; g++) start[g + 1] = (start[g] as number) + (size[g] as number);
  const order = new Int32Array(start[groups] as number);
  const next = start.slice(0, groups);
  for (let i = 0; i < n; i++) {
    const g = groupOf[i] as number;
    if (g >= 0) order[(next[g] as number)++] = i;
  }
  // Pass 2: each group's distinct source endpoints, and its sources by number (one per host name,
  // or `any:` and the description), each once, in flat lists.
  const endpointNo = new Map<Flow['from'], number>();
  const endpoints: Flow['from'][] = [];
  const endpointName: number[] = [];
  const endpointSeen: number[] = [];
  const nameNo = new Map<string, number>();
  const names: string[] = [];
  const nameSeen: number[] = [];
  const fromList: number[] = [];
  const fromStart = new Int32Array(groups + 1);
  const srcList: number[] = [];
  const srcStart = new Int32Array(groups + 1);
  for (let g = 0; g < groups; g++) {
    fromStart[g] = fromList.length;
    srcStart[g] = srcList.length;
    let last: Flow['from'] | undefined;
    for (let k = start[g] as number, end = start[g + 1] as number; k < end; k++) {
      const from = (flows[order[k] as number] as Flow).from;
      if (from === last) continue;
      last = from;
      let e = endpointNo.get(from);
      if (e === undefined) {
        const name = from.host ?? `any:${from.description}`;
        let id = nameNo.get(name);
        if (id === undefined) {
          id = names.length;
          nameNo.set(name, id);
          names.push(name);
          nameSeen.push(-1);
        }
        e = endpoints.length;
        endpointNo.set(from, e);
        endpoints.push(from);
        endpointName.push(id);
        endpointSeen.push(-1);
      }
      if (endpointSeen[e] === g) continue;
      endpointSeen[e] = g;
      fromList.push(e);
      const id = endpointName[e] as number;
      if (nameSeen[id] !== g) {
        nameSeen[id] = g;
        srcList.push(id);
      }
    }
  }
  fromStart[groups] = fromList.length;
  srcStart[groups] = srcList.length;
  // Pass 3: groups of the same protocol, ports and set of sources join one rule. Two groups have
  // the same sources exactly when their sorted numbers are: one number is the key itself, two are
  // one number, more are joined. (Names joined with commas were not a key: a peer described as
  // "x,any:y" alone and the peers x and y together would have joined one rule.)
  const ruleOf: Map<number | string, number>[] = [];
  const ruleGroups: number[][] = [];
  for (let g = 0; g < groups; g++) {
    const a = srcStart[g] as number;
    const b = srcStart[g + 1] as number;
    let key: number | string;
    if (b - a === 1) key = srcList[a] as number;
    else if (b - a === 2 && names.length <= PAIR_BASE) {
      const x = srcList[a] as number;
      const y = srcList[a + 1] as number;
      key = -1 - (x < y ? x * PAIR_BASE + y : y * PAIR_BASE + x);
    } else key = Int32Array.from(srcList.slice(a, b)).sort().join(',');
    const m = groupMatch[g] as number;
    let rules = ruleOf[m];
    if (rules === undefined) {
      rules = new Map();
      ruleOf[m] = rules;
    }
    const r = rules.get(key);
    if (r === undefined) {
      rules.set(key, ruleGroups.length);
      ruleGroups.push([g]);
    } else (ruleGroups[r] as number[]).push(g);
  }
  const rules: ExportRule[] = [];
  for (const gs of ruleGroups) {
    const ruleFlows: Flow[] = [];
    const src = new SideBuilder();
    const dst = new SideBuilder();
    for (const g of gs) {
      for (let k = start[g] as number, end = start[g + 1] as number; k < end; k++)
        ruleFlows.push(flows[order[k] as number] as Flow);
      for (let k = fromStart[g] as number, end = fromStart[g + 1] as number; k < end; k++)
        src.add(endpoints[fromList[k] as number] as Flow['from']);
      dst.add(groupTo[g] as Flow['to']);
      const more = moreTo.get(g);
      if (more !== undefined) for (const e of more) dst.add(e);
    }
    rules.push(makeRule('forward', ruleFlows, src.finish(), dst.finish()));
  }
  return numbered(mergeSameEndpoints(rules));
}

/** Two source numbers below this are one key number (below 2^52, so exact). */
const PAIR_BASE = 2 ** 26;

/**
 * The number of a flow's match (matchKey: protocol, ports, ICMP type), the same for the same key.
 * The plan's flows share port lists (one per catalog row), so a list already seen with the same
 * protocol and ICMP type is not formatted again.
 */
function matchIds(): (f: Flow) => number {
  const ids = new Map<string, number>();
  const known = new Map<readonly PortRange[], { protocol: Protocol; icmp: Flow['icmpType']; id: number }>();
  return (f) => {
    const k = known.get(f.ports);
    if (k !== undefined && k.protocol === f.protocol && k.icmp === f.icmpType) return k.id;
    const key = matchKey(f);
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size;
      ids.set(key, id);
    }
    known.set(f.ports, { protocol: f.protocol, icmp: f.icmpType, id });
    return id;
  };
}

/** What a rule matches besides its peers: `tcp|22,8006|` (protocol, ports, ICMP type). */
function matchKey(f: Flow): string {
  const p = f.ports;
  // Most flows carry one range: skip formatPorts' array building for them.
  const ports =
    p.length === 1
      ? (p[0] as PortRange)[0] === (p[0] as PortRange)[1]
        ? `${(p[0] as PortRange)[0]}`
        : formatPorts(p)
      : formatPorts(p);
  return `${f.protocol}|${ports}|${f.icmpType ?? ''}`;
}

/**
 * Rules between exactly the same sources and destinations become one rule with their ports merged
 * (Aerleon's port collapsing). Exact, because every source-destination pair of each rule needs all of
 * that rule's ports. Different ICMP types and protocols stay apart.
 */
function mergeSameEndpoints(rules: ExportRule[]): ExportRule[] {
  // Rules that could be the same: direction, protocol, ICMP type and the number of hosts per side.
  // Within one, hosts are compared as sets (each side lists a host once), not sorted and joined.
  const buckets = new Map<string, { rule: ExportRule; src: Set<string | null>; dst: Set<string | null> }[]>();
  const merged: ExportRule[] = [];
  const remerged = new Set<ExportRule>();
  const same = (set: Set<string | null>, hosts: readonly (string | null)[]) => hosts.every((h) => set.has(h));
  for (const r of rules) {
    // An unspecified peer is a set the user fills for this rule's own purpose (SSH clients are not
    // NFS clients): never merged with another rule's.
    if (r.src.unspecified.length || r.dst.unspecified.length) {
      merged.push(r);
      continue;
    }
    const bucket = `${r.direction}|${r.protocol}|${r.icmpType ?? ''}|${r.src.hosts.length}|${r.dst.hosts.length}`;
    let others = buckets.get(bucket);
    const seen = others?.find((o) => same(o.src, r.src.hosts) && same(o.dst, r.dst.hosts))?.rule;
    if (!seen) {
      if (!others) {
        others = [];
        buckets.set(bucket, others);
      }
      others.push({ rule: r, src: new Set(r.src.hosts), dst: new Set(r.dst.hosts) });
      merged.push(r);
      continue;
    }
    seen.ports = mergePortRanges([...seen.ports, ...r.ports]);
    pushAll(seen.flows, r.flows);
    remerged.add(seen);
  }
  // Services in port order, once per merged rule (not once per merge: linear in flows).
  for (const r of remerged) r.services = servicesByPort(r.flows);
  return merged;
}

function makeRule(direction: Direction, flows: Flow[], src: AddressSet, dst: AddressSet): ExportRule {
  const f0 = flows[0] as Flow;
  return {
    id: '',
    direction,
    protocol: f0.protocol,
    ports: distinctPorts(flows),
    ...(f0.icmpType ? { icmpType: f0.icmpType } : {}),
    src,
    dst,
    services: servicesByPort(flows),
    flows,
  };
}

/**
 * The port ranges of some flows, merged (mergePortRanges). The flows of a rule repeat a few ranges
 * many times over, so each distinct range is merged once.
 */
function distinctPorts(flows: readonly Flow[]): PortRange[] {
  const seen = new Set<number>();
  const ranges: PortRange[] = [];
  let last = -1;
  let lastPorts: readonly PortRange[] | undefined;
  for (const f of flows) {
    // Flows share port lists: the list just seen adds nothing new.
    if (f.ports === lastPorts) continue;
    lastPorts = f.ports;
    for (const r of f.ports) {
      const key = r[0] * 4294967296 + r[1];
      // Neighbouring flows mostly repeat the range just seen.
      if (key === last || seen.has(key)) continue;
      last = key;
      seen.add(key);
      ranges.push(r);
    }
  }
  return mergePortRanges(ranges);
}

type PortedService = Pick<Flow, 'protocol' | 'ports' | 'service'>;

/** Lowest port of a flow; ICMP and port-less flows sort last, in plan order. */
function lowestPort(f: PortedService): number {
  let m = Number.POSITIVE_INFINITY;
  for (const r of f.ports) if (r[0] < m) m = r[0];
  return m;
}

/**
 * The distinct services of some flows, ordered by the lowest port each uses (ties: plan order), so
 * a list of services reads in the same order as the merged port list beside it: ports `22, 8006`,
 * services `ssh, https`.
 */
export function servicesByPort(flows: readonly PortedService[]): string[] {
  const low = new Map<string, number>();
  let lastPorts: readonly PortRange[] | undefined;
  let lastService: string | undefined;
  for (const f of flows) {
    // The flow just before with the same ports and service changes nothing.
    if (f.ports === lastPorts && f.service === lastService) continue;
    lastPorts = f.ports;
    lastService = f.service;
    const port = lowestPort(f);
    const known = low.get(f.service);
    if (known === undefined || port < known) low.set(f.service, port);
  }
  return [...low.keys()].sort((a, b) => (low.get(a) as number) - (low.get(b) as number));
}

/**
 * Each port range paired with the service that uses it, in port order: `['22/ssh', '8006/https']`.
 * A range several services share lists them with `+` (`443/https+vsphere`); a flow without ports
 * (ICMP) gives its service alone. Ranges are the flows' own, not merged across services.
 */
export function portServicePairs(flows: readonly PortedService[]): string[] {
  const byRange = new Map<string, { lo: number; services: string[] }>();
  const bare: string[] = [];
  for (const f of flows) {
    if (!f.ports.length) {
      if (!bare.includes(f.service)) bare.push(f.service);
      continue;
    }
    for (const [lo, hi] of mergePortRanges(f.ports)) {
      const key = lo === hi ? `${lo}` : `${lo}-${hi}`;
      const e = byRange.get(key) ?? { lo, services: [] };
      if (!e.services.includes(f.service)) e.services.push(f.service);
      byRange.set(key, e);
    }
  }
  return [
    ...[...byRange]
      .sort(([ka, a], [kb, b]) => a.lo - b.lo || ka.length - kb.length)
      .map(([key, e]) => `${key}/${e.services.join('+')}`),
    ...bare,
  ];
}

/**
 * Protocol, ports and services of some flows in one phrase: `tcp 22/ssh, 2049/nfs; udp 111/rpcbind`.
 * ICMP flows read `icmp ping`.
 */
export function portServiceText(flows: readonly PortedService[]): string {
  const protocols = [...new Set(flows.map((f) => f.protocol))];
  return protocols
    .map((p) => `${p} ${portServicePairs(flows.filter((f) => f.protocol === p)).join(', ')}`)
    .join('; ');
}

function numbered(rules: ExportRule[]): ExportRule[] {
  return rules.map((r, i) => {
    const ports = formatPorts(r.ports, '_').replace(/-/g, 'to');
    // Short enough for every platform's name limits; the full port list is in the rule itself.
    const what =
      r.protocol === 'icmp' ? (r.icmpType ?? 'any') : ports.length <= 20 ? ports : `${r.ports[0]?.[0]}plus`;
    return { ...r, id: `${r.direction}-${r.protocol}-${what}-${i + 1}` };
  });
}

/** Host names a rule summary lists per side before it counts the rest. */
export const SUMMARY_HOSTS = 12;

/**
 * A one-line, plain-ASCII summary of a rule for comments: services and host names, never raw
 * purposes. Bounded: past SUMMARY_HOSTS names a side says `and N more`, so a rule of 100,000 hosts
 * keeps a summary that fits on a script line (the full lists are in the rule and the change request).
 */
export function ruleSummary(r: ExportRule): string {
  const hosts = (s: AddressSet) => {
    const names = s.hosts.slice(0, SUMMARY_HOSTS).map((h) => h ?? 'unspecified');
    const rest = s.hosts.length - names.length;
    return rest > 0 ? `${names.join(',')} and ${rest} more` : names.join(',');
  };
  return `${r.services.join(',')}: ${hosts(r.src)} -> ${hosts(r.dst)}`;
}

/**
 * What a ruleset comment says about one rule, in place of one line per flow (the change request,
 * `--to csv|markdown|html`, lists the flows): the rule's match, how many flows and hosts it carries,
 * then per product the catalog rows (entry ids) and the source documents behind it. Plain text
 * lines, bounded by the catalog's size, not the inventory's: `[head, ...one line per product]`.
 */
export function ruleProvenance(r: ExportRule): string[] {
  const what =
    r.protocol === 'icmp' ? `icmp ${r.icmpType ?? 'any'}` : `${r.protocol} ${formatPorts(r.ports)}`;
  const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  const hosts = (s: AddressSet) => count(s.hosts.length, 'host');
  const head = `${r.id}: ${what} (${r.services.join(', ')}): ${count(r.flows.length, 'flow')}, ${hosts(r.src)} -> ${hosts(r.dst)}`;
  return [head, ...catalogRowLines(r.flows)];
}

/**
 * Per product behind some flows, one line: its catalog rows (entry ids) and the source documents,
 * in the flows' order: `  veeam catalog rows vbr-ssh, vbr-nfs [https://...]`. Bounded by the
 * catalogs' size, not the inventory's.
 */
export function catalogRowLines(flows: readonly Flow[]): string[] {
  const byProduct = new Map<string, { entries: Set<string>; docs: Set<string> }>();
  let lastEntries: readonly string[] | undefined;
  let lastSources: readonly Flow['sources'][number][] | undefined;
  let lastProduct: string | undefined;
  for (const f of flows) {
    // Flows of one catalog row share its lists: the same lists just seen add nothing.
    if (f.entries === lastEntries && f.sources === lastSources && f.product === lastProduct) continue;
    lastEntries = f.entries;
    lastSources = f.sources;
    lastProduct = f.product;
    let p = byProduct.get(f.product);
    if (!p) {
      p = { entries: new Set(), docs: new Set() };
      byProduct.set(f.product, p);
    }
    for (const e of f.entries) p.entries.add(e);
    for (const s of f.sources) p.docs.add(s.doc);
  }
  const lines: string[] = [];
  for (const [product, p] of byProduct)
    lines.push(
      `  ${product} catalog ${p.entries.size === 1 ? 'row' : 'rows'} ${[...p.entries].join(', ')} [${[...p.docs].join(', ')}]`,
    );
  return lines;
}

/** Site names longer than this are cut (and hashed) in ruleset names. */
const SLUG_MAX = 40;

/**
 * The per-site name of a ruleset on a host: `portolan-<site>` (nftables table, Windows Firewall rule
 * group), so the rulesets of two sites loaded on one machine do not replace each other. The site name
 * is kept when it is made of ASCII letters, digits, `_` and `-` (at most 40 characters, starting with a
 * letter or digit); otherwise every other character becomes `_`, it is cut to 40 characters and
 * `-` plus the first 8 hex digits of the SHA-256 of the site name are appended, so two sites that
 * differ only in the characters replaced still get different names. Result: `^portolan-[A-Za-z0-9_-]+$`,
 * at most 58 characters (nft takes 256, Windows group names more).
 */
export function rulesetName(site: string): string {
  if (site.length <= SLUG_MAX && /^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(site)) return `portolan-${site}`;
  const slug = site.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, SLUG_MAX);
  const hash = createHash('sha256').update(site).digest('hex').slice(0, 8);
  return `portolan-${slug}-${hash}`;
}

/**
 * The collapsed address set of some endpoints, built the way the model builds a rule's sides: for a
 * generator that regroups a rule's peers (firewalld and ufw group them by the application they reach).
 */
export function addressSetOf(endpoints: Iterable<Flow['from']>): AddressSet {
  const set = new SideBuilder();
  for (const e of endpoints) set.add(e);
  return set.finish();
}

/**
 * How many rules forwardRules(flows) makes, without making them: the same grouping (protocol,
 * ports and destination, then identical sources, then identical source and destination hosts),
 * but no address is parsed or collapsed and no rule built. The plan's summary line counts rules
 * for every plan. Peers are numbered by name (a host's name, or `any:` and an unspecified peer's
 * description; a host name has no colon), once per endpoint object the flows share. Linear in
 * flows but for sorting the sources of each group with more than two, as forwardRules does.
 */
export function forwardRuleCount(flows: readonly Flow[]): number {
  const n = flows.length;
  const matchOf = matchIds();
  // The protocol and ICMP type of each match number (its key holds them).
  const matchProtocol: string[] = [];
  const matchIcmp: string[] = [];
  const nameByEndpoint = new Map<Flow['from'], number>();
  const nameNo = new Map<string, number>();
  // The host of each name (null for an unspecified peer).
  const nameHost: (string | null)[] = [];
  const nameOf = (e: Flow['from']): number => {
    let id = nameByEndpoint.get(e);
    if (id === undefined) {
      const name = e.host ?? `any:${e.description}`;
      id = nameNo.get(name);
      if (id === undefined) {
        id = nameHost.length;
        nameNo.set(name, id);
        nameHost.push(e.host);
      }
      nameByEndpoint.set(e, id);
    }
    return id;
  };
  // forwardRules' first grouping: by match and destination name, numbered as first seen.
  const dstGroups: Map<number, number>[] = [];
  const groupOf = new Int32Array(n).fill(-1);
  const fromName = new Int32Array(n);
  const size: number[] = [];
  const groupMatch: number[] = [];
  const groupDst: number[] = [];
  // Whether a flow of the group has a peer the documents leave unspecified (no address).
  const groupUnspecified: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const f = flows[i] as Flow;
    if (f.local) continue;
    const m = matchOf(f);
    if (m === matchProtocol.length) {
      matchProtocol.push(f.protocol);
      matchIcmp.push(f.icmpType ?? '');
    }
    const d = nameOf(f.to);
    let dsts = dstGroups[m];
    if (dsts === undefined) {
      dsts = new Map();
      dstGroups[m] = dsts;
    }
    let g = dsts.get(d);
    if (g === undefined) {
      g = size.length;
      dsts.set(d, g);
      size.push(0);
      groupMatch.push(m);
      groupDst.push(d);
      groupUnspecified.push(false);
    }
    groupOf[i] = g;
    size[g] = (size[g] as number) + 1;
    fromName[i] = nameOf(f.from);
    if (f.from.address === null || f.to.address === null) groupUnspecified[g] = true;
  }
  // The flows in group order (a counting sort).
  const groups = size.length;
  const start = new Int32Array(groups + 1);
  for (let g = 0; g < groups; g++) start[g + 1] = (start[g] as number) + (size[g] as number);
  const order = new Int32Array(start[groups] as number);
  const next = start.slice(0, groups);
  for (let i = 0; i < n; i++) {
    const g = groupOf[i] as number;
    if (g >= 0) order[(next[g] as number)++] = i;
  }
  // The second grouping: by match and the same source names. A side is what becomes one rule
  // before mergeSameEndpoints: its hosts on either side, and whether a peer is unspecified.
  const nameSeen = new Int32Array(nameHost.length).fill(-1);
  const sideOf: Map<number | string, number>[] = [];
  const sideMatch: number[] = [];
  const sideSrc: Set<string | null>[] = [];
  const sideDst: Set<string | null>[] = [];
  const sideUnspecified: boolean[] = [];
  const names: number[] = [];
  for (let g = 0; g < groups; g++) {
    names.length = 0;
    for (let k = start[g] as number, end = start[g + 1] as number; k < end; k++) {
      const id = fromName[order[k] as number] as number;
      if (nameSeen[id] === g) continue;
      nameSeen[id] = g;
      names.push(id);
    }
    // The set of names as one key: a number for one or two names, else the sorted numbers joined.
    let key: number | string;
    if (names.length === 1) key = names[0] as number;
    else if (names.length === 2 && nameHost.length <= PAIR_BASE) {
      const x = names[0] as number;
      const y = names[1] as number;
      key = -1 - (x < y ? x * PAIR_BASE + y : y * PAIR_BASE + x);
    } else key = Int32Array.from(names).sort().join(',');
    const m = groupMatch[g] as number;
    let sides = sideOf[m];
    if (sides === undefined) {
      sides = new Map();
      sideOf[m] = sides;
    }
    let s = sides.get(key);
    if (s === undefined) {
      s = sideMatch.length;
      sides.set(key, s);
      sideMatch.push(m);
      sideSrc.push(new Set(names.map((id) => nameHost[id] as string | null)));
      sideDst.push(new Set());
      sideUnspecified.push(false);
    }
    (sideDst[s] as Set<string | null>).add(nameHost[groupDst[g] as number] as string | null);
    if (groupUnspecified[g]) sideUnspecified[s] = true;
  }
  // mergeSameEndpoints: rules of one protocol and ICMP type between the same hosts are one, unless
  // a side has a peer the documents leave unspecified (that rule stays its own).
  const distinct = new Map<string, number[]>();
  const same = (a: Set<string | null>, b: Set<string | null>) => {
    for (const h of a) if (!b.has(h)) return false;
    return true;
  };
  let count = 0;
  for (let s = 0; s < sideMatch.length; s++) {
    if (sideUnspecified[s]) {
      count++;
      continue;
    }
    const src = sideSrc[s] as Set<string | null>;
    const dst = sideDst[s] as Set<string | null>;
    const m = sideMatch[s] as number;
    const bucket = `${matchProtocol[m]}|${matchIcmp[m]}|${src.size}|${dst.size}`;
    const others = distinct.get(bucket);
    if (
      others?.some(
        (o) => same(sideSrc[o] as Set<string | null>, src) && same(sideDst[o] as Set<string | null>, dst),
      )
    )
      continue;
    count++;
    if (others) others.push(s);
    else distinct.set(bucket, [s]);
  }
  return count;
}
