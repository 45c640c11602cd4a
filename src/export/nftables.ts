import { formatPorts } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import { plainAddress } from './_hostfw.js';
import {
  FAMILY_LABEL,
  type Family,
  type MatchKind,
  planRule,
  type RulePlan,
  type SideMatch,
  sideLabel,
} from './_netfilter.js';
import type { ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { type ExportModel, type ExportRule, ruleProvenance, ruleSummary, rulesetName } from './model.js';

/** Set elements per line: an IPv6 CIDR is up to 43 characters, so a line stays under 1 KiB. */
const SET_ELEMENTS_PER_LINE = 16;

/**
 * nftables: one table per site (`table inet portolan-<site>`, see rulesetName) loaded with `nft -f`.
 * A side of a rule with up to INLINE_MAX addresses is written in the rule itself (`ip saddr 10.0.0.1`,
 * `ip daddr { 10.0.0.1, 10.0.0.2 }`); a longer one is a named set, shared by every rule that matches
 * the same addresses; addresses the user must fill in (DNS names, peers the documents leave open)
 * are a named set per rule, so they have a name to fill.
 */

/** A side with at most this many addresses is matched inline, not through a named set. */
export const INLINE_MAX = 4;

/** nft refuses a longer comment: "comment too long, 128 characters maximum allowed". */
export const NFT_COMMENT_MAX = 128;
/** The file name of the single file this generator writes. */
export const NFT_FILE = 'portolan.nft';
/** `inet portolan-<site>`: the table of this site's ruleset. */
export function nftTable(site: string): string {
  return `inet ${rulesetName(site)}`;
}

/**
 * The one escaping function for nft text: `#` comments end at a line break, and quoted strings have
 * no escape sequences (a `"` always ends one), so the result is one line of printable ASCII with no
 * `"` or `\`. Anything else becomes `?`; text longer than `max` is cut with `...`.
 */
export function nftText(text: string, max = Number.POSITIVE_INFINITY): string {
  const s = oneLine(text)
    .replace(/"/g, "'")
    .replace(/\\/g, '/')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

const NFT_FAMILY = {
  v4: { match: 'ip', type: 'ipv4_addr', icmp: 'icmp', icmpProto: 'icmp' },
  v6: { match: 'ip6', type: 'ipv6_addr', icmp: 'icmpv6', icmpProto: 'ipv6-icmp' },
} as const;

interface NamedSet {
  name: string;
  family: Family;
  kind: MatchKind;
  elements: string[];
  /** For a set the user fills: what goes in it (becomes the set's comment). */
  fill?: string;
}

/**
 * The named sets of one file, in declaration order, and how each rule side's addresses are matched.
 * Loading costs netlink message space per set element (16 bytes; 40 in an interval set, which sends
 * a start and an end), and `nft -f` sends the whole file as one transaction that must fit the
 * socket's send buffer: 208 KiB (net.core.wmem_default) where nft cannot raise it, as in an
 * unprivileged user namespace with nft 1.0.6, about 13,000 plain elements. So no address is sent
 * twice where it can be helped: rules that match the same addresses share one set, and a side whose
 * addresses include another set's whole content matches that set and only the rest in a set of its
 * own (one rule line per piece; together they match exactly the rule's addresses).
 */
interface SetRegistry {
  list: NamedSet[];
  /** `family|elements` of an address side -> the matches that together cover it. */
  cover: Map<string, string[]>;
  /** Each address side's elements and content key, worked out once (a side can have thousands). */
  content: Map<SideMatch, { elements: string[]; key: string }>;
}

/** An address side's elements and content key, from the registry when already worked out. */
function contentOf(registry: SetRegistry, m: SideMatch): { elements: string[]; key: string } {
  let c = registry.content.get(m);
  if (c === undefined) {
    const elements = m.values.map(plainAddress);
    c = { elements, key: elements.length > INLINE_MAX ? contentKey(m.family, elements) : '' };
    registry.content.set(m, c);
  }
  return c;
}

function contentKey(family: Family, elements: readonly string[]): string {
  return `${family}|${elements.join(',')}`;
}

/**
 * Plans the address sets of a whole file: every address side longer than INLINE_MAX, distinct
 * content once, smallest first (so a bigger side can reuse the smaller sets inside it). Each side is
 * covered by earlier sets wholly inside it (largest first, disjoint), the rest inline when short,
 * else in a new set named after the first rule side that needs it.
 */
function planSets(sides: { ruleNo: number; m: SideMatch }[]): SetRegistry {
  const registry: SetRegistry = { list: [], cover: new Map(), content: new Map() };
  const distinct = new Map<string, { ruleNo: number; m: SideMatch; elements: string[] }>();
  for (const side of sides) {
    const { elements, key } = contentOf(registry, side.m);
    if (elements.length <= INLINE_MAX) continue;
    if (!distinct.has(key)) distinct.set(key, { ...side, elements });
  }
  const declared: { set: NamedSet; members: Set<string> }[] = [];
  const order = [...distinct.entries()].sort((x, y) => x[1].elements.length - y[1].elements.length);
  for (const [key, want] of order) {
    const members = new Set(want.elements);
    const taken = new Set<string>();
    const pieces: string[] = [];
    const fits = [...declared]
      .filter((d) => d.set.family === want.m.family && d.members.size < members.size)
      .sort((x, y) => y.members.size - x.members.size);
    for (const d of fits) {
      let inside = true;
      for (const e of d.members)
        if (!members.has(e) || taken.has(e)) {
          inside = false;
          break;
        }
      if (!inside) continue;
      for (const e of d.members) taken.add(e);
      pieces.push(`@${d.set.name}`);
    }
    const rest = want.elements.filter((e) => !taken.has(e));
    if (rest.length > INLINE_MAX) {
      const set = { ...setFor(want.ruleNo, want.m, rest), elements: rest };
      registry.list.push(set);
      declared.push({ set, members: new Set(rest) });
      pieces.push(`@${set.name}`);
    } else if (rest.length) pieces.push(inline(rest));
    registry.cover.set(key, pieces);
  }
  return registry;
}

/** `10.0.0.1`, or an anonymous set `{ 10.0.0.1, 10.0.0.8/29 }`. */
function inline(elements: readonly string[]): string {
  return elements.length === 1 ? `${elements[0]}` : `{ ${elements.join(', ')} }`;
}

/**
 * The chain policies, explained in every file's header. Host mode: inbound is an allowlist (the
 * plan is the list), outbound only counts the planned flows. Network mode: forward only counts them,
 * since a router carries more than the plan. Each file shows the one line that enforces the rest.
 */
const POLICY_NOTES: Record<ExportModel['mode'], string[]> = {
  host: [
    'Policy: the last rule of chain input counts and drops inbound traffic not planned below',
    '(replies to established connections, loopback and IPv6 neighbour discovery pass). A drop in this',
    'table is final whatever other tables accept, so add rules for traffic the plan does not cover',
    '(remote administration such as SSH, monitoring) above that drop before loading, or you lock it out.',
    'Chain output accepts everything: the planned outbound flows are listed with counters, and a',
    'commented-out drop at its end enforces them if you want outbound filtering too.',
    "Rules do not match this host's own address: the input and output hooks already see only its",
    'traffic, and its inventory address may be a DNS name or a whole range.',
  ],
  network: [
    'Policy: chain forward accepts the planned flows with counters but does not drop other forwarded',
    'traffic (a router carries more than this plan); a commented-out drop at its end enforces the plan.',
  ],
};

/** `r3_src_v4`, `r3_dst_names_v6`, `r1_src_peers_v4`: per rule, side, kind and family. */
function setFor(ruleNo: number, m: SideMatch, elements?: string[]): NamedSet {
  const name = `r${ruleNo}_${m.side}${m.kind === 'addr' ? '' : `_${m.kind}`}_${m.family}`;
  const label = FAMILY_LABEL[m.family];
  if (m.kind === 'addr')
    return {
      name,
      family: m.family,
      kind: m.kind,
      elements: elements ?? m.values.map(plainAddress),
    };
  const fill =
    m.kind === 'names'
      ? `${label} addresses of ${m.values.join(', ')}`
      : `${label} addresses of the ${sideLabel(m.side)}: ${m.values.join('; ')}`;
  return { name, family: m.family, kind: m.kind, elements: [], fill };
}

/** The `tcp dport ...` / `icmp type ...` part of a rule line. */
function protocolMatch(r: ExportRule, family: Family): string {
  const f = NFT_FAMILY[family];
  if (r.protocol === 'icmp')
    return r.icmpType === 'echo-request' ? `${f.icmp} type echo-request` : `meta l4proto ${f.icmpProto}`;
  const ports = r.ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`));
  return `${r.protocol} dport ${ports.length === 1 ? ports[0] : `{ ${ports.join(', ')} }`}`;
}

interface RenderedRule {
  lines: string[];
  warnings: string[];
}

const INERT =
  'until filled those rules stay inert (an empty set matches nothing in nftables, unlike "any" elsewhere)';

/** The matches of one side (one rule line each): inline addresses, address sets, or the rule's own set to fill. */
function sideMatches(sets: SetRegistry, ruleNo: number, m: SideMatch, own: Map<string, NamedSet>): string[] {
  if (m.kind === 'addr') {
    const { elements, key } = contentOf(sets, m);
    if (elements.length <= INLINE_MAX) return [inline(elements)];
    const cover = sets.cover.get(key);
    if (!cover) throw new Error(`internal: no set planned for rule ${ruleNo} ${m.side} ${m.family}`);
    return cover;
  }
  const set = setFor(ruleNo, m);
  own.set(set.name, set);
  sets.list.push(set);
  return [`@${set.name}`];
}

function renderRule(
  model: ExportModel,
  r: ExportRule,
  ruleNo: number,
  plan: RulePlan,
  sets: SetRegistry,
): RenderedRule {
  const summary = oneLine(ruleSummary(r));
  const table = nftTable(model.site);
  const [head = '', ...rest] = ruleProvenance(r);
  const lines = [`# ${nftText(head)}`];
  for (const l of rest) lines.push(`#   ${nftText(l.trim())}`);
  if (plan.skipped !== undefined) {
    lines.push(`# ${nftText(`not rendered: ${plan.skipped}`)}`);
    return { lines, warnings: [`rule ${r.id} (${summary}) is not rendered: ${plan.skipped}`] };
  }
  const warnings = plan.partial.map((why) => `rule ${r.id} (${summary}) is partly rendered: ${why}`);
  for (const why of plan.partial) lines.push(`# ${nftText(`partly rendered: ${why}`)}`);
  const own = new Map<string, NamedSet>();
  const comment = nftText(`${r.id}: ${ruleSummary(r)}`, NFT_COMMENT_MAX);
  for (const p of plan.pairs) {
    const f = NFT_FAMILY[p.family];
    const srcs = p.src ? sideMatches(sets, ruleNo, p.src, own).map((x) => `${f.match} saddr ${x} `) : [''];
    const dsts = p.dst ? sideMatches(sets, ruleNo, p.dst, own).map((x) => `${f.match} daddr ${x} `) : [''];
    const tail = `${protocolMatch(r, p.family)} counter accept comment "${comment}"`;
    for (const src of srcs) for (const dst of dsts) lines.push(`${src}${dst}${tail}`);
  }
  const filled = (kind: MatchKind) => [...own.values()].filter((s) => s.kind === kind);
  const named = (list: NamedSet[]) =>
    `set${list.length > 1 ? 's' : ''} ${list.map((s) => s.name).join(', ')}`;
  const names = filled('names');
  if (names.length) {
    const dns = [...new Set([...r.src.names, ...r.dst.names])].join(', ');
    warnings.push(
      `rule ${r.id} (${summary}): nftables cannot match DNS names; fill ${named(names)} with the addresses of ${dns} (nft add element ${table} ${names[0]?.name} '{ ADDRESS }'); ${INERT}`,
    );
  }
  const peers = filled('peers');
  if (peers.length) {
    const who = [...new Set([...r.src.unspecified, ...r.dst.unspecified])].map(oneLine).join('; ');
    warnings.push(
      `rule ${r.id} (${summary}): the documents leave a peer unspecified (${who}); fill ${named(peers)} with its addresses; ${INERT}`,
    );
  }
  return { lines, warnings };
}

function renderSet(s: NamedSet): string[] {
  const out: string[] = [];
  const note = s.fill === undefined ? undefined : nftText(`fill in: ${s.fill}`);
  // The set's own comment is cut at NFT_COMMENT_MAX; the full text goes on a line above it.
  if (note !== undefined && note.length > NFT_COMMENT_MAX) out.push(`\t# ${note}`);
  out.push(`\tset ${s.name} {`, `\t\ttype ${NFT_FAMILY[s.family].type}`);
  // An interval set sends each element as two (start and end): only a set with a prefix needs it.
  if (s.kind !== 'addr' || s.elements.some((e) => e.includes('/'))) out.push('\t\tflags interval');
  if (note !== undefined) out.push(`\t\tcomment "${nftText(note, NFT_COMMENT_MAX)}"`);
  if (s.elements.length) {
    // A long set is written a few elements a line, so no line outgrows what a reader takes whole.
    if (s.elements.length <= SET_ELEMENTS_PER_LINE) out.push(`\t\telements = { ${s.elements.join(', ')} }`);
    else {
      out.push('\t\telements = {');
      for (let i = 0; i < s.elements.length; i += SET_ELEMENTS_PER_LINE)
        out.push(
          `\t\t\t${s.elements.slice(i, i + SET_ELEMENTS_PER_LINE).join(', ')}${i + SET_ELEMENTS_PER_LINE < s.elements.length ? ',' : ''}`,
        );
      out.push('\t\t}');
    }
  }
  out.push('\t}');
  return out;
}

const ND_TYPES =
  'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept';

function chain(name: string, hook: string, preamble: string[], rules: string[], tail: string[]): string[] {
  return [
    `\tchain ${name} {`,
    `\t\ttype filter hook ${hook} priority filter; policy accept;`,
    ...preamble.map((l) => `\t\t${l}`),
    ...rules.map((l) => `\t\t${l}`),
    ...tail.map((l) => `\t\t${l}`),
    '\t}',
  ];
}

function render(model: ExportModel): ExportResult {
  const warnings: string[] = [];
  const plans = model.rules.map((r) => planRule(model, r));
  const sides: { ruleNo: number; m: SideMatch }[] = [];
  plans.forEach((plan, i) => {
    for (const p of plan.pairs)
      for (const m of [p.src, p.dst]) if (m?.kind === 'addr') sides.push({ ruleNo: i + 1, m });
  });
  const sets = planSets(sides);
  const table = nftTable(model.site);
  const byDirection = { in: [] as string[], out: [] as string[], forward: [] as string[] };
  model.rules.forEach((r, i) => {
    const out = renderRule(model, r, i + 1, plans[i] as RulePlan, sets);
    pushAll(warnings, out.warnings);
    pushAll(byDirection[r.direction], out.lines);
  });

  const lines = [...headerLines(model, 'nftables'), '', ...POLICY_NOTES[model.mode]].map((l) =>
    l === '' ? '#' : `# ${nftText(l)}`,
  );
  lines.push(
    '#',
    `# Table ${nftText(table)}: one table per site (portolan- and the site name), so the rulesets`,
    '# of several sites load side by side. Load with: nft -f portolan.nft (loading again replaces this',
    "# site's table: the first two lines make sure it exists, then delete it, all in one transaction).",
    '# Each rule says its flows, hosts and catalog rows; the flows one by one (hosts, purposes, sources)',
    '# are in the change request: portolan export --to csv|markdown|html.',
    '',
    `table ${table}`,
    `delete table ${table}`,
    '',
    `table ${table} {`,
  );
  for (const s of sets.list) {
    pushAll(lines, renderSet(s));
    lines.push('');
  }
  const established = 'ct state established,related accept';
  if (model.mode === 'host') {
    const local = model.localFlows.map(
      (f) =>
        `# ${nftText(`local flow (stays on this host, passes the loopback rule): ${f.service} ${f.protocol} ${formatPorts(f.ports)}: ${f.purpose}`)}`,
    );
    pushAll(lines, [
      ...chain(
        'input',
        'input',
        [established, 'ct state invalid drop', 'iif "lo" accept', ND_TYPES, ...local],
        byDirection.in,
        [
          '# Add accept rules for traffic the plan does not cover (remote administration, monitoring) here.',
          'counter drop comment "portolan: inbound traffic not in the plan"',
        ],
      ),
      '',
      ...chain('output', 'output', [established, 'oif "lo" accept', ND_TYPES], byDirection.out, [
        '# Outbound traffic the plan does not list is accepted; to enforce the plan, uncomment:',
        '# counter drop comment "portolan: outbound traffic not in the plan"',
      ]),
    ]);
  } else {
    pushAll(
      lines,
      chain('forward', 'forward', [established], byDirection.forward, [
        '# Other forwarded traffic is accepted; to enforce the plan, uncomment:',
        '# counter drop comment "portolan: forwarded traffic not in the plan"',
      ]),
    );
  }
  lines.push('}');
  return { files: [{ path: NFT_FILE, content: `${lines.join('\n')}\n` }], warnings };
}

export const generator: Generator = {
  name: 'nftables',
  family: 'firewall',
  summary: 'nftables ruleset: table inet portolan-<site> with named sets, input/output or forward chains',
  // DNS names: nft resolves names only when the file is loaded, so they become sets the user fills.
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false },
  render,
};
