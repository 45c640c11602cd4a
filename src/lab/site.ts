import { join } from 'node:path';
import { excludeCidr, expandCidr } from 'cidr-tools';
import { parseDocument } from 'yaml';
import type { ExportFile } from '../export/generator.js';
import { loadGenerator } from '../export/index.js';
import type { ExportModel, ExportRule } from '../export/model.js';
import { buildExportModel } from '../export/model.js';
import { loadSite, type Site } from '../inventory/load.js';
import type { Inventory } from '../inventory/types.js';
import type { Plan } from '../model/flow.js';
import type { PortRange } from '../model/ports.js';
import { buildPlan } from '../plan/plan.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { Broken, LabHost, LabState } from './state.js';

/**
 * What a site looks like inside a lab. Each host gets one address per family it has: an IP host its
 * own; a CIDR host the first usable address of its network; a DNS-name host a lab address from
 * 198.18.0.0/15 (RFC 2544, set aside for benchmark networks, so it never collides with a real one),
 * or from 2001:2::/48 (RFC 5180, the IPv6 benchmarking range) when the site's other hosts are all
 * IPv6, with the name put in the lab's resolver map.
 *
 * Two copies of the inventory live in the lab's directory, so no command after `up` reads the
 * user's file: `site.yaml` (each CIDR host at its lab address; names stay names and resolve through
 * the lab's hosts file), which check and the responders use, and `rules.yaml` (each DNS name
 * replaced by its lab address; CIDRs stay whole), from which each host's generated ruleset is made,
 * so the sets nftables cannot fill from a name are filled the way a user fills them.
 */

/** RFC 2544 benchmark range: addresses for hosts the inventory gives as DNS names. */
export const LAB_V4_BASE = [198, 18, 0, 0] as const;
/** RFC 5180 IPv6 benchmarking range: the DNS-name hosts of a site whose other hosts are all IPv6. */
export const LAB_V6_PREFIX = '2001:2::';

export interface LabAddress {
  address: string;
  note: string;
}

/** The first address of a CIDR a host could use: the network's second address when it has more than two. */
export function firstUsable(cidr: string, version: 4 | 6, prefix: number): string {
  const it = expandCidr(cidr);
  const first = it.next().value as string;
  const skip = version === 4 ? prefix <= 30 : prefix <= 126;
  return skip ? (it.next().value as string) : first;
}

/**
 * Lab addresses for every host of an inventory, in inventory order. A DNS-name host is given an
 * address its peers can reach: IPv4, unless every host with an address is IPv6 (a name of an
 * IPv6-only site resolves to IPv6).
 */
export function labAddresses(inv: Inventory): Map<string, LabAddress> {
  const out = new Map<string, LabAddress>();
  const taken = new Set(inv.hosts.filter((h) => h.address.kind === 'ip').map((h) => h.address.text));
  const addressed = inv.hosts.flatMap((h) => (h.address.kind === 'dns' ? [] : [h.address.version]));
  const v6Names = addressed.length > 0 && addressed.every((v) => v === 6);
  let next = 1;
  for (const h of inv.hosts) {
    const a = h.address;
    if (a.kind === 'ip') out.set(h.name, { address: a.text, note: 'its inventory address' });
    else if (a.kind === 'cidr')
      out.set(h.name, {
        address: firstUsable(a.text, a.version, a.prefix),
        note: `the first usable address of ${a.text}`,
      });
    else {
      let ip: string;
      do {
        ip = v6Names
          ? `${LAB_V6_PREFIX}${next.toString(16)}`
          : `${LAB_V4_BASE[0]}.${LAB_V4_BASE[1] + (next >> 16)}.${(next >> 8) & 255}.${next & 255}`;
        next++;
      } while (taken.has(ip) || (!v6Names && (next & 255) === 0));
      taken.add(ip);
      out.set(h.name, { address: ip, note: `a lab address for ${a.text} (in the lab's resolver map)` });
    }
  }
  return out;
}

/**
 * Writes `site.yaml` and `rules.yaml` (see above) into `dir`: the user's YAML (`text`, the inventory
 * as read) with only host addresses changed and catalog paths made absolute.
 */
export function writeLabInventories(
  text: string,
  inv: Inventory,
  addresses: Map<string, LabAddress>,
  dir: string,
): { site: string; rules: string } {
  const write = (file: string, pick: (kind: string) => boolean) => {
    const doc = parseDocument(text);
    for (const h of inv.hosts) {
      if (!pick(h.address.kind)) continue;
      doc.setIn(['hosts', h.name, 'address'], addresses.get(h.name)?.address);
    }
    if (doc.has('catalogs')) doc.set('catalogs', inv.catalogs);
    const path = join(dir, file);
    writeFileAtomic(path, doc.toString(), { follow: false });
    return path;
  };
  return { site: write('site.yaml', (k) => k === 'cidr'), rules: write('rules.yaml', (k) => k === 'dns') };
}

/** The resolver map every namespace of the lab sees as /etc/hosts. */
export function hostsFile(inv: Inventory, addresses: Map<string, LabAddress>): string {
  const lines = ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback'];
  for (const h of inv.hosts) {
    const a = addresses.get(h.name)?.address;
    if (!a) continue;
    const names = [h.name];
    if (h.address.kind === 'dns' && !h.address.text.startsWith('*.')) names.unshift(h.address.text);
    lines.push(`${a} ${names.join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

export const labSitePath = (s: LabState) => join(s.dir, 'site.yaml');
export const labRulesPath = (s: LabState) => join(s.dir, 'rules.yaml');

export interface LoadedLab {
  site: Site;
  plan: Plan;
}

/** The lab's copy of the site (CIDR hosts at their lab address) and its plan. */
export function loadLabSite(s: LabState): LoadedLab {
  const site = loadSite(labSitePath(s), s.catalogs);
  return { site, plan: buildPlan(site.inventory, site.catalogs) };
}

/** The lab's rules copy (DNS names at their lab address) and its plan. */
export function loadRulesSite(s: LabState): LoadedLab {
  const site = loadSite(join(s.dir, 'rules.yaml'), s.catalogs);
  return { site, plan: buildPlan(site.inventory, site.catalogs) };
}

/**
 * Takes one flow out of a host model: the port comes out of every inbound rule that carries it, and
 * a rule for that port alone keeps every other source (so exactly FROM -> this host on PORT breaks).
 */
export function carve(model: ExportModel, b: Broken, fromCidrs: readonly string[]): ExportModel {
  const rules: ExportRule[] = [];
  for (const r of model.rules) {
    const hit =
      r.direction === 'in' &&
      r.protocol === b.protocol &&
      r.src.hosts.includes(b.from) &&
      r.ports.some(([lo, hi]) => lo <= b.port && b.port <= hi);
    if (!hit) {
      rules.push(r);
      continue;
    }
    const rest: PortRange[] = r.ports.flatMap(([lo, hi]): PortRange[] => {
      if (b.port < lo || b.port > hi) return [[lo, hi]];
      const keep: PortRange[] = [];
      if (lo < b.port) keep.push([lo, b.port - 1]);
      if (hi > b.port) keep.push([b.port + 1, hi]);
      return keep;
    });
    if (rest.length) rules.push({ ...r, ports: rest });
    const v4 = fromCidrs.filter((c) => !c.includes(':'));
    const v6 = fromCidrs.filter((c) => c.includes(':'));
    const src = {
      ...r.src,
      v4: v4.length && r.src.v4.length ? excludeCidr(r.src.v4, v4) : r.src.v4,
      v6: v6.length && r.src.v6.length ? excludeCidr(r.src.v6, v6) : r.src.v6,
      hosts: r.src.hosts.filter((h) => h !== b.from),
    };
    if (src.v4.length || src.v6.length || src.names.length || src.unspecified.length)
      rules.push({ ...r, id: `${r.id}-not-${b.from}`.slice(0, 60), ports: [[b.port, b.port]], src });
  }
  return { ...model, rules };
}

/** The addresses a host has in the rules copy, as CIDRs. */
export function ruleCidrs(rules: LoadedLab, host: string): string[] {
  const h = rules.site.inventory.hosts.find((x) => x.name === host);
  if (!h || h.address.kind === 'dns') return [];
  return [
    h.address.kind === 'ip' ? `${h.address.text}/${h.address.version === 4 ? 32 : 128}` : h.address.text,
  ];
}

/** The host's generated model, with what `break` took out. */
export function hostModel(rules: LoadedLab, host: LabHost, version: string): ExportModel {
  let model = buildExportModel(rules.plan, rules.site.inventory, {
    host: host.name,
    generatorVersion: version,
  });
  for (const b of host.broken) model = carve(model, b, ruleCidrs(rules, b.from));
  return model;
}

/** Renders a host model for the lab's firewall. */
export async function renderRuleset(
  model: ExportModel,
  firewall: 'nftables' | 'iptables',
): Promise<ExportFile[]> {
  const gen = await loadGenerator(firewall);
  return gen.render(model).files;
}
