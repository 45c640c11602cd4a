/**
 * Cisco IOS / IOS XE: object-groups and one extended named ACL per address family
 * (`ip access-list extended PORTOLAN-<SITE>`, `ipv6 access-list PORTOLAN-<SITE>-V6`), one config
 * file to paste in configuration mode.
 *
 * IPv4: `object-group network` per address set (deduplicated by content), and ACEs of the form
 * `permit tcp object-group SRC object-group DST eq 443` (or `range`), a `object-group service` when a
 * rule has several port ranges, `permit icmp ... echo` for ping. IPv6: `object-group v6-network` and
 * `object-group v6-service` in `ipv6 access-list` (IOS XE object-group ACLs). A rule renders once per
 * address family present on both sides; a source of one family with destinations only of the other
 * is reported, not rendered.
 *
 * IOS object-groups cannot hold DNS names, and some peers are left unspecified by the documents:
 * each becomes an empty placeholder object-group (one per DNS name, one per rule side for peers)
 * whose description says what to fill, with a warning. An empty object-group matches nothing, so an
 * unfilled placeholder never widens a rule to "any".
 *
 * Remarks and descriptions are user text: one escaping function, `iosText`, keeps them to one line
 * of printable ASCII without `?` (which IOS's CLI takes as a help request) within IOS's lengths.
 */
import type { PortRange } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import {
  FAMILIES,
  type Family,
  FillNames,
  type FillSet,
  familyOrphans,
  fillSets,
  hostList,
  literals,
  type Side,
} from './_cloud.js';
import type { ExportResult, Generator } from './generator.js';
import { headerLines } from './header.js';
import { cutAtWord, wrapWithin } from './limits.js';
import type { AddressSet, ExportModel, ExportRule } from './model.js';

/** IOS limits: ACL remark text, object-group description text, object-group and ACL names. */
export const REMARK_MAX = 100;
/** Remark lines per ACE at most: the host lists behind a rule are in its object-groups anyway. */
export const REMARK_LINES = 3;
export const DESCRIPTION_MAX = 200;
export const NAME_MAX = 64;

/**
 * The one escaping function for IOS text (remarks, descriptions, `!` comments): a single line of
 * printable ASCII, accents folded, `?` removed (it triggers CLI help when pasted), at most `max`
 * characters, shortened at a word boundary with `...` (cutAtWord) rather than mid-word.
 */
export function iosText(text: string, max: number): string {
  const folded = text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^\x20-\x7e]/g, ' ')
    .replace(/\?/g, '')
    .replace(/ {2,}/g, ' ')
    .trim();
  return cutAtWord(folded, max);
}

/** An IOS object name: upper-case letters, digits, `-` and `_`, starting with a letter. */
export function iosName(text: string, max = NAME_MAX): string {
  const name = text
    .toUpperCase()
    .normalize('NFKD')
    .replace(/[^A-Z0-9_]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return (/^[A-Z]/.test(name) ? name : `X${name}`).slice(0, max).replace(/-+$/, '');
}

interface NetGroup {
  name: string;
  family: Family;
  description: string;
  entries: string[];
  placeholder: boolean;
}

/** An IPv4 prefix length as IOS's dotted netmask: 24 -> 255.255.255.0. */
export function netmask(length: number): string {
  const bits = length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (bits >>> shift) & 255).join('.');
}

/** `host 10.0.0.1` / `10.0.0.0 255.255.255.0` for IPv4; `host 2001:db8::1` / `2001:db8::/64` for IPv6. */
function networkEntry(cidr: string): string {
  const [ip, len] = cidr.split('/') as [string, string];
  if (cidr.includes(':')) return len === '128' ? `host ${ip}` : cidr;
  return len === '32' ? `host ${ip}` : `${ip} ${netmask(Number(len))}`;
}

function portClause([lo, hi]: PortRange): string {
  return lo === hi ? `eq ${lo}` : `range ${lo} ${hi}`;
}

class Config {
  readonly groups: NetGroup[] = [];
  private readonly byContent = new Map<string, NetGroup>();
  private readonly names = new Set<string>();
  readonly placeholders: FillNames;
  readonly services: { name: string; family: Family; entries: string[] }[] = [];

  constructor() {
    this.placeholders = new FillNames((f) =>
      f.kind === 'dns'
        ? iosName(`PORTOLAN-DNS-${f.key}`, NAME_MAX - 3)
        : iosName(`PORTOLAN-${f.key}-PEERS`, NAME_MAX - 3),
    );
  }

  unique(base: string): string {
    let name = base;
    for (let i = 2; this.names.has(name); i++) name = `${base.slice(0, NAME_MAX - 4)}-${i}`;
    this.names.add(name);
    return name;
  }

  /** The placeholder group of one fill set and family, declared once. */
  placeholder(fill: FillSet, family: Family): string {
    const base = this.placeholders.name(fill);
    const name = family === 'v4' ? base : `${base}-V6`;
    if (!this.byContent.has(`placeholder:${name}`)) {
      const fam = `IPv${family === 'v4' ? 4 : 6}`;
      const what =
        fill.kind === 'dns'
          ? `${fam} addresses of ${fill.what[0]}`
          : `${fam} addresses of the peers ${fill.rule} leaves unspecified: ${fill.what.join('; ')}`;
      const group: NetGroup = {
        name: this.unique(name),
        family,
        description: iosText(`FILL IN: ${what}`, DESCRIPTION_MAX),
        entries: [],
        placeholder: true,
      };
      this.byContent.set(`placeholder:${name}`, group);
      this.groups.push(group);
    }
    return (this.byContent.get(`placeholder:${name}`) as NetGroup).name;
  }

  /** The object-group for one side of a rule in one family: literal entries plus placeholders. */
  side(rule: ExportRule, side: Side, family: Family): string {
    const set: AddressSet = side === 'src' ? rule.src : rule.dst;
    const nested = fillSets(rule, side).map((f) => this.placeholder(f, family));
    const entries = [...literals(set, family).map(networkEntry), ...nested.map((n) => `group-object ${n}`)];
    if (entries.length === 1 && nested.length === 1) return nested[0] as string;
    const key = `${family}:${entries.join('|')}`;
    const known = this.byContent.get(key);
    if (known) return known.name;
    const hosts = set.hosts.filter((h): h is string => h !== null);
    // One inventory host: named after it and shared by every rule that names it.
    const single = hosts.length === 1 && set.hosts.length === 1 && nested.length === 0;
    const base = single ? `PORTOLAN-H-${hosts[0]}` : `PORTOLAN-${rule.id}-${side.toUpperCase()}`;
    const group: NetGroup = {
      name: this.unique(iosName(base, NAME_MAX - 3) + (family === 'v6' ? '-V6' : '')),
      family,
      description: iosText(
        single
          ? `host ${hosts[0]}`
          : `${side === 'src' ? 'sources' : 'destinations'} of ${rule.id}: ${hostList(set)}`,
        DESCRIPTION_MAX,
      ),
      entries,
      placeholder: false,
    };
    this.byContent.set(key, group);
    this.groups.push(group);
    return group.name;
  }

  /** A service object-group, named after its content and shared by every rule with the same ports. */
  service(rule: ExportRule, family: Family): string {
    const entries =
      rule.protocol === 'icmp'
        ? [rule.icmpType === 'echo-request' ? 'icmp echo-request' : 'icmp']
        : rule.ports.map((r) => `${rule.protocol} ${portClause(r)}`);
    const key = `service:${family}:${entries.join('|')}`;
    const known = this.byContent.get(key);
    if (known) return known.name;
    const what =
      rule.protocol === 'icmp'
        ? `ICMP-${rule.icmpType === 'echo-request' ? 'ECHO' : 'ANY'}`
        : `${rule.protocol}-${rule.ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}TO${hi}`)).join('-')}`;
    const name = this.unique(iosName(`PORTOLAN-${what}`, NAME_MAX - 3) + (family === 'v6' ? '-V6' : ''));
    this.byContent.set(key, { name, family, description: '', entries, placeholder: false });
    this.services.push({ name, family, entries });
    return name;
  }
}

/** The ACEs of one rule in one family, each preceded by its remark. */
function aces(cfg: Config, rule: ExportRule, family: Family): string[] {
  const src = cfg.side(rule, 'src', family);
  const dst = cfg.side(rule, 'dst', family);
  // A long remark continues on the next remark lines, broken between words (IOS keeps them in order).
  const remark = wrapWithin(
    iosText(
      `${rule.id} ${rule.services.join(',')}: ${hostList(rule.src)} -> ${hostList(rule.dst)}`,
      Infinity,
    ),
    REMARK_MAX,
    REMARK_LINES,
  ).map((l) => ` remark ${l}`);
  const between = `object-group ${src} object-group ${dst}`;
  if (family === 'v6') return [...remark, ` permit object-group ${cfg.service(rule, family)} ${between}`];
  if (rule.protocol === 'icmp')
    return [...remark, ` permit icmp ${between}${rule.icmpType === 'echo-request' ? ' echo' : ''}`];
  if (rule.ports.length === 1)
    return [...remark, ` permit ${rule.protocol} ${between} ${portClause(rule.ports[0] as PortRange)}`];
  return [...remark, ` permit object-group ${cfg.service(rule, family)} ${between}`];
}

export const generator: Generator = {
  name: 'cisco',
  family: 'firewall',
  summary: 'Cisco IOS/IOS XE extended named ACLs with object-groups, IPv4 and IPv6 (cisco-ios.cfg)',
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false },
  render(model: ExportModel): ExportResult {
    const cfg = new Config();
    const warnings: string[] = [];
    const scope = model.mode === 'host' && model.host ? `${model.site}-${model.host.name}` : model.site;
    const acl = {
      v4: iosName(`PORTOLAN-${scope}`, NAME_MAX - 3),
      v6: `${iosName(`PORTOLAN-${scope}`, NAME_MAX - 3)}-V6`,
    };
    const body: Record<Family, string[]> = { v4: [], v6: [] };
    for (const rule of model.rules) {
      for (const family of FAMILIES) {
        const both = [rule.src, rule.dst].every(
          (s) => literals(s, family).length > 0 || s.names.length > 0 || s.unspecified.length > 0,
        );
        if (both) pushAll(body[family], aces(cfg, rule, family));
      }
      const orphan = familyOrphans(rule);
      if (orphan) warnings.push(`${orphan} (an IOS ACL entry is IPv4 or IPv6)`);
    }
    const lines: string[] = [...headerLines(model, 'cisco').map((l) => `! ${iosText(l, 200)}`)];
    lines.push(
      '!',
      '! IOS ACLs are stateless: apply each ACL inbound on the interfaces facing the sources',
      `! (ip access-group ${acl.v4} in / ipv6 traffic-filter ${acl.v6} in) and let return traffic`,
      '! through with your existing policy. Fill every FILL IN object-group before applying.',
    );
    for (const g of cfg.groups) {
      lines.push(
        '!',
        `object-group ${g.family === 'v4' ? 'network' : 'v6-network'} ${g.name}`,
        ` description ${g.description}`,
      );
      pushAll(
        lines,
        g.entries.map((e) => ` ${e}`),
      );
    }
    for (const s of cfg.services) {
      lines.push('!', `object-group ${s.family === 'v4' ? 'service' : 'v6-service'} ${s.name}`);
      pushAll(
        lines,
        s.entries.map((e) => ` ${e}`),
      );
    }
    if (body.v4.length) pushAll(lines, ['!', `ip access-list extended ${acl.v4}`, ...body.v4]);
    if (body.v6.length) pushAll(lines, ['!', `ipv6 access-list ${acl.v6}`, ...body.v6]);
    if (model.localFlows.length)
      lines.push(
        '!',
        `! ${model.localFlows.length} flow(s) stay on host ${iosText(model.host?.name ?? '', 64)}: not ACL entries`,
      );
    lines.push('!');
    for (const g of cfg.groups.filter((x) => x.placeholder))
      warnings.push(
        `IOS object-groups cannot hold DNS names or unnamed peers: fill object-group ${g.name} with the ${g.description.replace(/^FILL IN: /, '')}`,
      );
    if (model.localFlows.length)
      warnings.push(
        `${model.localFlows.length} flow(s) stay on host ${model.host?.name} and need no ACL entry`,
      );
    return { files: [{ path: 'cisco-ios.cfg', content: `${lines.join('\n')}\n` }], warnings };
  },
};
