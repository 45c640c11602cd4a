import { createHash } from 'node:crypto';
import type { Endpoint, Flow } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { appendTo, pushAll } from '../util/arrays.js';
import { oneLine } from './header.js';
import {
  type AddressSet,
  addressSetOf,
  catalogRowLines,
  type ExportModel,
  SUMMARY_HOSTS,
  servicesByPort,
} from './model.js';

/**
 * Internal to the host-firewall generators (firewalld, ufw, windows): plain-ASCII text, the POSIX
 * shell quoting both shell scripts share, and the grouping of a host's peers by the application
 * (port set) they reach.
 */

/**
 * Any text as one line of printable ASCII: line breaks and control characters become spaces (via
 * oneLine), every other character outside ASCII becomes `\uXXXX` (`\u{XXXXX}` beyond the BMP), so a
 * reader can still tell what it was. Formats whose readers guess the encoding (a PowerShell 5.1
 * script without BOM reads as ANSI, where UTF-8 bytes can turn into quote characters) get ASCII only.
 */
export function asciiText(text: string): string {
  return oneLine(text).replace(/[^\x20-\x7e]/gu, (c) => {
    const cp = c.codePointAt(0) ?? 0x3f;
    const hex = cp.toString(16).toUpperCase();
    return cp > 0xffff ? `\\u{${hex}}` : `\\u${hex.padStart(4, '0')}`;
  });
}

/** Text longer than `max` is cut and ends in `...`. */
export function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, Math.max(0, max - 3))}...` : text;
}

// ---- POSIX shell (firewalld and ufw scripts) ----

/**
 * The one quoting function for POSIX shell words: a word of only safe characters stays as it is,
 * anything else is single-quoted (no expansion happens inside) with each `'` written as `'\''`.
 */
export function shq(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A shell comment line: `#` runs to the end of the line, so one ASCII line cannot end it early. */
export function shComment(text: string): string {
  const s = asciiText(text).trimEnd();
  return s ? `# ${s}` : '#';
}

/** A shell variable the user fills with addresses: PORTOLAN_ADDR_ plus the rule id as a word. */
export function shellPlaceholder(id: string): string {
  return `PORTOLAN_ADDR_${id.replace(/[^A-Za-z0-9]/g, '_')}`;
}

/**
 * `10.0.0.1/32` reads better as `10.0.0.1` (and `2001:db8::1/128` as `2001:db8::1`); every platform
 * here takes both the same. Only the family's whole-address prefix goes: an IPv6 /32 is a network
 * of 2^96 addresses, and written bare it would be the one address `2001:db8::`.
 */
export function plainAddress(cidr: string): string {
  const whole = cidr.includes(':') ? '/128' : '/32';
  return cidr.endsWith(whole) ? cidr.slice(0, -whole.length) : cidr;
}

/**
 * Shell lines shared by the two scripts: the variables the user fills (one per rule with DNS names or
 * peers the documents leave open, each with a comment naming what goes in it), a notice on stderr for
 * each one left empty (an empty one adds no rule: a loop over nothing), and `check_address`, which
 * refuses anything but an IP address or CIDR, so a word such as `any` cannot widen a rule.
 */
export function shellPlaceholderBlock(fills: readonly Fill[], platform: string): string[] {
  if (!fills.length) return [];
  const out = [
    shComment(
      `Addresses to fill in: ${platform} takes no DNS names, and the documents leave some peers open.`,
    ),
    '# Give each as space-separated IP addresses or CIDRs, here or in the environment. One left empty',
    '# adds no rule (never "any"); the script says so on stderr.',
  ];
  for (const f of fills) {
    out.push(shComment(`${f.id}: ${f.what}`));
    for (const n of f.names) out.push(shComment(`  DNS name: ${n}`));
    for (const u of f.unspecified) out.push(shComment(`  peer the documents leave open: ${u}`));
    out.push(`${f.variable}=\${${f.variable}:-}`);
  }
  out.push('');
  for (const f of fills)
    out.push(
      `[ -n "$${f.variable}" ] || echo ${shq(`portolan: ${f.variable} is empty: rule ${f.id} adds nothing`)} >&2`,
    );
  out.push(
    '',
    '# check_address WORD: stops the script unless WORD is an IP address or CIDR.',
    'check_address() {',
    '  case $1 in',
    `    '' | *[!0-9A-Fa-f:./]*) echo "portolan: '$1' is not an IP address or CIDR" >&2; exit 1 ;;`,
    '  esac',
    '}',
    '',
  );
  return out;
}

/** A rule whose peers include addresses the user fills in, and the variable that holds them. */
export interface Fill {
  id: string;
  variable: string;
  /** One line: what the rule is for. */
  what: string;
  names: string[];
  unspecified: string[];
}

/** The warning for a rule left to a variable the user fills. */
export function fillWarning(f: Fill, platform: string, file: string): string {
  const parts: string[] = [];
  if (f.names.length) parts.push(`${platform} takes no DNS names (${f.names.join(', ')})`);
  if (f.unspecified.length)
    parts.push(
      `the documents leave ${f.unspecified.length === 1 ? 'a peer' : 'peers'} open (${f.unspecified.map(oneLine).join('; ')})`,
    );
  return `rule ${f.id} (${oneLine(f.what)}): ${parts.join(' and ')}; fill ${f.variable} in ${file} with their addresses`;
}

/** A name within a platform's length limit: a longer one keeps its start and ends in a short hash. */
export function limitName(name: string, max: number): string {
  if (name.length <= max) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, max - hash.length - 1).replace(/-+$/, '')}-${hash}`;
}

// ---- Applications: what a role listens on, and who may reach it ----

/** An application: the ports one role of one product listens on for some of its peers. */
export interface HostApp {
  /** `portolan-<product>-<role>`, with `-<n>` when peers of that role need different port sets. */
  name: string;
  product: string;
  role: string;
  tcp: PortRange[];
  udp: PortRange[];
  /** Services and purposes of the flows behind it, in plan order (for descriptions). */
  services: string[];
  purposes: string[];
}

/** Some peers allowed to reach an application (in) or allowed to be reached through it (out). */
export interface Grant {
  /** `in-<product>-<role>[-<n>]`: unique within one export. */
  id: string;
  direction: 'in' | 'out';
  app: HostApp;
  /** The peers, collapsed the way the model collapses a rule's side. */
  peers: AddressSet;
  flows: Flow[];
}

/** `tcp 22,2049 udp 111`. */
export function appPorts(app: Pick<HostApp, 'tcp' | 'udp'>): string {
  return [
    app.tcp.length ? `tcp ${formatPorts(app.tcp)}` : '',
    app.udp.length ? `udp ${formatPorts(app.udp)}` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

function endpointKey(e: Endpoint): string {
  return e.host ?? `unspecified:${e.description ?? ''}`;
}

/**
 * Host mode, TCP and UDP: groups the host's peers by the application they use. An application is
 * one product role (the listening side: this host inbound, the peer outbound) and the exact port set
 * a peer needs from it, so allowing a peer an application never opens a port the plan does not give
 * that peer. A role whose peers need different port sets becomes several applications.
 */
export function hostApplications(model: ExportModel, maxName: number): { apps: HostApp[]; grants: Grant[] } {
  interface Peer {
    endpoint: Endpoint;
    tcp: PortRange[];
    udp: PortRange[];
    flows: Flow[];
  }
  const byRole = new Map<
    string,
    { direction: 'in' | 'out'; product: string; role: string; peers: Map<string, Peer> }
  >();
  for (const r of model.rules) {
    if (r.protocol === 'icmp' || r.direction === 'forward') continue;
    for (const f of r.flows) {
      const role = f.to.role ?? 'unspecified';
      const key = `${r.direction}|${f.product}|${role}`;
      const group = byRole.get(key) ?? { direction: r.direction, product: f.product, role, peers: new Map() };
      byRole.set(key, group);
      const endpoint = r.direction === 'in' ? f.from : f.to;
      const peer = group.peers.get(endpointKey(endpoint)) ?? { endpoint, tcp: [], udp: [], flows: [] };
      group.peers.set(endpointKey(endpoint), peer);
      if (f.protocol === 'tcp' || f.protocol === 'udp') pushAll(peer[f.protocol], f.ports);
      peer.flows.push(f);
    }
  }
  // Port sets per product role, in order of first appearance, decide the names.
  const signatures = new Map<string, string[]>();
  const pending: {
    direction: 'in' | 'out';
    product: string;
    role: string;
    signature: string;
    peers: Peer[];
  }[] = [];
  for (const g of byRole.values()) {
    const bySig = new Map<string, Peer[]>();
    for (const p of g.peers.values()) {
      p.tcp = mergePortRanges(p.tcp);
      p.udp = mergePortRanges(p.udp);
      const sig = appPorts(p);
      appendTo(bySig, sig, p);
    }
    for (const [signature, peers] of bySig) {
      const roleKey = `${g.product}|${g.role}`;
      const sigs = signatures.get(roleKey) ?? [];
      if (!sigs.includes(signature)) sigs.push(signature);
      signatures.set(roleKey, sigs);
      pending.push({ direction: g.direction, product: g.product, role: g.role, signature, peers });
    }
  }
  const apps = new Map<string, HostApp>();
  const appFlows = new Map<HostApp, Flow[]>();
  const grants: Grant[] = [];
  for (const p of pending) {
    const sigs = signatures.get(`${p.product}|${p.role}`) ?? [];
    const base = `portolan-${p.product}-${p.role}`;
    const name = limitName(sigs.length > 1 ? `${base}-${sigs.indexOf(p.signature) + 1}` : base, maxName);
    const first = p.peers[0] as Peer;
    const flows = p.peers.flatMap((peer) => peer.flows);
    const app = apps.get(name) ?? {
      name,
      product: p.product,
      role: p.role,
      tcp: first.tcp,
      udp: first.udp,
      services: [],
      purposes: [],
    };
    apps.set(name, app);
    for (const f of flows) if (!app.purposes.includes(f.purpose)) app.purposes.push(f.purpose);
    const all = appFlows.get(app);
    if (all) pushAll(all, flows);
    else appFlows.set(app, flows);
    // In the order of their ports, as the app's port list reads.
    app.services = servicesByPort(appFlows.get(app) ?? []);
    grants.push({
      id: `${p.direction}-${name.replace(/^portolan-/, '')}`,
      direction: p.direction,
      app,
      peers: addressSetOf(p.peers.map((peer) => peer.endpoint)),
      flows,
    });
  }
  return { apps: [...apps.values()], grants };
}

/**
 * What a script comment says about the flows behind one rule, in place of one line per flow (the
 * change request, `--to csv|markdown|html`, lists the flows): how many flows and peer hosts, then per
 * product the catalog rows and source documents (catalogRowLines). Bounded by the catalog's size,
 * not the inventory's. `peers`: the rule's peer side (`from` for inbound, `to` for outbound).
 */
export function flowProvenance(flows: readonly Flow[], peers: AddressSet, side: 'from' | 'to'): string[] {
  const count = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;
  return [
    `  ${count(flows.length, 'flow')} ${side} ${count(peers.hosts.length, 'host')}`,
    ...catalogRowLines(flows),
  ];
}

/** The script header's word on what the rule comments hold and where the flows one by one are. */
export const PROVENANCE_NOTE: readonly string[] = [
  '# Each rule says its flows, peer hosts and catalog rows; the flows one by one (hosts, purposes,',
  '# sources) are in the change request: portolan export --to csv|markdown|html.',
];

/** Peer host names for a comment: past SUMMARY_HOSTS names, `and N more`. */
export function peerNames(hosts: readonly (string | null)[]): string {
  const names = hosts.slice(0, SUMMARY_HOSTS).map((h) => h ?? 'unspecified peer');
  const rest = hosts.length - names.length;
  return rest > 0 ? `${names.join(', ')} and ${rest} more` : names.join(', ');
}

/** Host mode: the flows that stay on this host, as text lines (called out, never a rule). */
export function localFlowLines(model: ExportModel): string[] {
  if (!model.localFlows.length) return [];
  return [
    'Local flows (they stay on this host, so no rule is needed or rendered):',
    ...model.localFlows.map(
      (f) =>
        `  ${f.product} ${f.service} ${f.protocol}${f.protocol === 'icmp' ? '' : ` ${formatPorts(f.ports)}`}: ${f.purpose}`,
    ),
  ];
}
