import { formatPorts } from '../model/ports.js';
import {
  FAMILY_LABEL,
  type Family,
  type MatchKind,
  planRule,
  type SideMatch,
  sideLabel,
} from './_netfilter.js';
import type { ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { type ExportModel, type ExportRule, ruleSummary } from './model.js';

/** Set elements per line: an IPv6 CIDR is up to 43 characters, so a line stays under 1 KiB. */
const SET_ELEMENTS_PER_LINE = 16;

/**
 * nftables: one `table inet portolan` loaded with `nft -f`. Every rule matches named sets (one per
 * rule, side, address family and kind), so the addresses a user must fill in have a name to fill.
 */

/** nft refuses a longer comment: "comment too long, 128 characters maximum allowed". */
export const NFT_COMMENT_MAX = 128;
/** The file name of the single file this generator writes. */
export const NFT_FILE = 'portolan.nft';
const TABLE = 'inet portolan';

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
function setFor(ruleNo: number, m: SideMatch): NamedSet {
  const name = `r${ruleNo}_${m.side}${m.kind === 'addr' ? '' : `_${m.kind}`}_${m.family}`;
  const label = FAMILY_LABEL[m.family];
  if (m.kind === 'addr') return { name, family: m.family, kind: m.kind, elements: m.values.map(element) };
  const fill =
    m.kind === 'names'
      ? `${label} addresses of ${m.values.join(', ')}`
      : `${label} addresses of the ${sideLabel(m.side)}: ${m.values.join('; ')}`;
  return { name, family: m.family, kind: m.kind, elements: [], fill };
}

/** `10.0.0.1/32` reads better as `10.0.0.1`; nft stores both the same. */
function element(cidr: string): string {
  return cidr.replace(/\/(32|128)$/, '');
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
  sets: NamedSet[];
  warnings: string[];
}

const INERT =
  'until filled those rules stay inert (an empty set matches nothing in nftables, unlike "any" elsewhere)';

function renderRule(model: ExportModel, r: ExportRule, ruleNo: number): RenderedRule {
  const summary = oneLine(ruleSummary(r));
  const what =
    r.protocol === 'icmp' ? `icmp ${r.icmpType ?? 'any'}` : `${r.protocol} ${formatPorts(r.ports)}`;
  const lines = [`# ${nftText(`${r.id}: ${what} (${r.services.join(', ')})`)}`];
  for (const f of r.flows) {
    const docs = [...new Set(f.sources.map((s) => s.doc))].join(', ');
    const peer = (e: typeof f.from) => e.host ?? 'unspecified peer';
    lines.push(`#   ${nftText(`${f.product}: ${peer(f.from)} -> ${peer(f.to)}: ${f.purpose} [${docs}]`)}`);
  }
  const plan = planRule(model, r);
  if (plan.skipped !== undefined) {
    lines.push(`# ${nftText(`not rendered: ${plan.skipped}`)}`);
    return { lines, sets: [], warnings: [`rule ${r.id} (${summary}) is not rendered: ${plan.skipped}`] };
  }
  const warnings = plan.partial.map((why) => `rule ${r.id} (${summary}) is partly rendered: ${why}`);
  for (const why of plan.partial) lines.push(`# ${nftText(`partly rendered: ${why}`)}`);
  const sets = new Map<string, NamedSet>();
  const comment = nftText(`${r.id}: ${ruleSummary(r)}`, NFT_COMMENT_MAX);
  for (const p of plan.pairs) {
    const f = NFT_FAMILY[p.family];
    const parts: string[] = [];
    for (const [m, dir] of [
      [p.src, 'saddr'],
      [p.dst, 'daddr'],
    ] as const) {
      if (!m) continue;
      const set = setFor(ruleNo, m);
      sets.set(set.name, set);
      parts.push(`${f.match} ${dir} @${set.name}`);
    }
    parts.push(protocolMatch(r, p.family), 'counter accept', `comment "${comment}"`);
    lines.push(parts.join(' '));
  }
  const filled = (kind: MatchKind) => [...sets.values()].filter((s) => s.kind === kind);
  const named = (list: NamedSet[]) =>
    `set${list.length > 1 ? 's' : ''} ${list.map((s) => s.name).join(', ')}`;
  const names = filled('names');
  if (names.length) {
    const dns = [...new Set([...r.src.names, ...r.dst.names])].join(', ');
    warnings.push(
      `rule ${r.id} (${summary}): nftables cannot match DNS names; fill ${named(names)} with the addresses of ${dns} (nft add element ${TABLE} ${names[0]?.name} '{ ADDRESS }'); ${INERT}`,
    );
  }
  const peers = filled('peers');
  if (peers.length) {
    const who = [...new Set([...r.src.unspecified, ...r.dst.unspecified])].map(oneLine).join('; ');
    warnings.push(
      `rule ${r.id} (${summary}): the documents leave a peer unspecified (${who}); fill ${named(peers)} with its addresses; ${INERT}`,
    );
  }
  return { lines, sets: [...sets.values()], warnings };
}

function renderSet(s: NamedSet): string[] {
  const out: string[] = [];
  const note = s.fill === undefined ? undefined : nftText(`fill in: ${s.fill}`);
  // The set's own comment is cut at NFT_COMMENT_MAX; the full text goes on a line above it.
  if (note !== undefined && note.length > NFT_COMMENT_MAX) out.push(`\t# ${note}`);
  out.push(`\tset ${s.name} {`, `\t\ttype ${NFT_FAMILY[s.family].type}`, '\t\tflags interval');
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
    ...[...preamble, ...rules, ...tail].map((l) => `\t\t${l}`),
    '\t}',
  ];
}

function render(model: ExportModel): ExportResult {
  const warnings: string[] = [];
  const sets: NamedSet[] = [];
  const byDirection = { in: [] as string[], out: [] as string[], forward: [] as string[] };
  model.rules.forEach((r, i) => {
    const out = renderRule(model, r, i + 1);
    sets.push(...out.sets);
    warnings.push(...out.warnings);
    byDirection[r.direction].push(...out.lines);
  });

  const lines = [...headerLines(model, 'nftables'), '', ...POLICY_NOTES[model.mode]].map((l) =>
    l === '' ? '#' : `# ${nftText(l)}`,
  );
  lines.push(
    '#',
    '# Load with: nft -f portolan.nft (loading again replaces the table: the first two lines make sure it',
    '# exists, then delete it, all in one transaction).',
    '',
    `table ${TABLE}`,
    `delete table ${TABLE}`,
    '',
    `table ${TABLE} {`,
  );
  for (const s of sets) lines.push(...renderSet(s), '');
  const established = 'ct state established,related accept';
  if (model.mode === 'host') {
    const local = model.localFlows.map(
      (f) =>
        `# ${nftText(`local flow (stays on this host, passes the loopback rule): ${f.service} ${f.protocol} ${formatPorts(f.ports)}: ${f.purpose}`)}`,
    );
    lines.push(
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
    );
  } else {
    lines.push(
      ...chain('forward', 'forward', [established], byDirection.forward, [
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
  summary: 'nftables ruleset: table inet portolan with named sets, input/output or forward chains',
  // DNS names: nft resolves names only when the file is loaded, so they become sets the user fills.
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false },
  render,
};
