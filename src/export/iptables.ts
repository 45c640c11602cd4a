import type { PortRange } from '../model/ports.js';
import { formatPorts } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import { FAMILIES, type Family, planRule, type SideMatch, sideLabel } from './_netfilter.js';
import type { ExportFile, ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { type ExportModel, type ExportRule, ruleProvenance, ruleSummary } from './model.js';

/**
 * iptables: `iptables-restore` files for the filter table (`iptables.rules`, plus `ip6tables.rules`
 * when the plan has IPv6 rules), one rule per address pair and port chunk: no ipset, so the files
 * load on any iptables (legacy or nft backend) without other state.
 */

/** xt_multiport takes at most 15 ports per rule; a range counts 2 (XT_MULTI_PORTS). */
export const MULTIPORT_MAX = 15;
/** xt_comment stores at most 256 bytes including the terminating NUL (XT_MAX_COMMENT_LEN). */
export const XT_COMMENT_MAX = 255;
export const IPTABLES_FILE = { v4: 'iptables.rules', v6: 'ip6tables.rules' } as const;

/**
 * The one escaping function for iptables-restore text. `#` lines end at a line break; inside a
 * quoted argument iptables-restore treats `\` as an escape and `"` as the end, so the result is one
 * line of printable ASCII with neither. Anything else becomes `?`; longer than `max` is cut.
 */
export function iptText(text: string, max = Number.POSITIVE_INFINITY): string {
  const s = oneLine(text)
    .replace(/"/g, "'")
    .replace(/\\/g, '/')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/** Splits port ranges into multiport-sized chunks: each port counts 1, each range 2. */
export function portChunks(ranges: readonly PortRange[], max = MULTIPORT_MAX): PortRange[][] {
  const chunks: PortRange[][] = [];
  let current: PortRange[] = [];
  let weight = 0;
  for (const r of ranges) {
    const w = r[0] === r[1] ? 1 : 2;
    if (weight + w > max) {
      chunks.push(current);
      current = [];
      weight = 0;
    }
    current.push(r);
    weight += w;
  }
  if (current.length) chunks.push(current);
  return chunks;
}

const IPT_FAMILY = {
  v4: { proto: 'icmp', icmp: '-m icmp --icmp-type echo-request' },
  v6: { proto: 'ipv6-icmp', icmp: '-m icmp6 --icmpv6-type echo-request' },
} as const;

/** The protocol and port (or ICMP type) part of each line: one per multiport chunk. */
function protocolMatches(r: ExportRule, family: Family): string[] {
  const f = IPT_FAMILY[family];
  if (r.protocol === 'icmp') return [`-p ${f.proto}${r.icmpType === 'echo-request' ? ` ${f.icmp}` : ''}`];
  return portChunks(r.ports).map((chunk) => {
    const ports = chunk.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}:${hi}`)).join(',');
    return chunk.length === 1
      ? `-p ${r.protocol} -m ${r.protocol} --dport ${ports}`
      : `-p ${r.protocol} -m multiport --dports ${ports}`;
  });
}

const CHAIN = { in: 'INPUT', out: 'OUTPUT', forward: 'FORWARD' } as const;

/** One address argument: a CIDR, or a placeholder the user replaces (then the line is commented out). */
interface Address {
  text: string;
  placeholder: boolean;
}

function addresses(m: SideMatch | null): (Address | null)[] {
  if (m === null) return [null];
  if (m.kind === 'addr') return m.values.map((text) => ({ text, placeholder: false }));
  // DNS names are validated hostnames; peer descriptions are free text, so they are numbered instead.
  if (m.kind === 'names') return m.values.map((n) => ({ text: `<addresses-of:${n}>`, placeholder: true }));
  return m.values.map((_, i) => ({ text: `<${m.side}-peer-${i + 1}>`, placeholder: true }));
}

interface RenderedRule {
  lines: Record<Family, string[]>;
  warnings: string[];
}

function renderRule(model: ExportModel, r: ExportRule): RenderedRule {
  const summary = oneLine(ruleSummary(r));
  // One line for the rule and one per product behind it; the flows one by one are in the change request.
  const [head = '', ...products] = ruleProvenance(r);
  const about = [`# ${iptText(head)}`, ...products.map((l) => `#   ${iptText(l.trim())}`)];
  const out: RenderedRule = { lines: { v4: [], v6: [] }, warnings: [] };
  const plan = planRule(model, r);
  if (plan.skipped !== undefined) {
    // Said in the file(s) the rule would have gone to: the IPv4 one always exists.
    pushAll(out.lines.v4, about).push(`# ${iptText(`not rendered: ${plan.skipped}`)}`);
    out.warnings.push(`rule ${r.id} (${summary}) is not rendered: ${plan.skipped}`);
    return out;
  }
  for (const why of plan.partial) out.warnings.push(`rule ${r.id} (${summary}) is partly rendered: ${why}`);
  const comment = iptText(`${r.id}: ${ruleSummary(r)}`, XT_COMMENT_MAX);
  const placeholders = { names: new Set<string>(), peers: new Set<string>() };
  for (const family of FAMILIES) {
    const pairs = plan.pairs.filter((p) => p.family === family);
    if (!pairs.length) continue;
    const lines = out.lines[family];
    pushAll(lines, about);
    for (const why of plan.partial) lines.push(`# ${iptText(`partly rendered: ${why}`)}`);
    for (const side of ['src', 'dst'] as const) {
      if (!pairs.some((p) => p[side]?.kind === 'peers')) continue;
      r[side].unspecified.forEach((d, i) => {
        const tag = `<${side}-peer-${i + 1}>`;
        lines.push(`# ${iptText(`${tag}: the ${sideLabel(side)} the documents leave open: ${d}`)}`);
        placeholders.peers.add(tag);
      });
    }
    for (const p of pairs) {
      for (const m of [p.src, p.dst])
        if (m?.kind === 'names') for (const n of m.values) placeholders.names.add(n);
      // The same for every line of the rule: made once, not once per address pair.
      const chain = `-A ${CHAIN[r.direction]}`;
      const tails = protocolMatches(r, family).map(
        (proto) => ` ${proto} -m comment --comment "${comment}" -j ACCEPT`,
      );
      const dsts = addresses(p.dst);
      for (const s of addresses(p.src)) {
        const from = s ? `${chain} -s ${s.text}` : chain;
        for (const d of dsts) {
          const head = d ? `${from} -d ${d.text}` : from;
          const mark = s?.placeholder || d?.placeholder ? '# ' : '';
          for (const tail of tails) lines.push(`${mark}${head}${tail}`);
        }
      }
    }
  }
  const files = FAMILIES.filter((f) => plan.pairs.some((p) => p.family === f)).map((f) => IPTABLES_FILE[f]);
  const where = `in ${files.join(' and ')}`;
  if (placeholders.names.size)
    out.warnings.push(
      `rule ${r.id} (${summary}): iptables resolves a DNS name only once, when the rules are loaded (never again, and a failed lookup fails the whole load), so the rule for ${[...placeholders.names].join(', ')} is written commented out ${where} with the placeholder <addresses-of:NAME>: replace it with the name's addresses and uncomment it`,
    );
  if (placeholders.peers.size) {
    const who = [...new Set([...r.src.unspecified, ...r.dst.unspecified])].map(oneLine).join('; ');
    out.warnings.push(
      `rule ${r.id} (${summary}): the documents leave a peer unspecified (${who}), so the rule is written commented out ${where} with the placeholder ${[...placeholders.peers].join(', ')}: replace it with the peer's addresses and uncomment it`,
    );
  }
  return out;
}

const POLICY_NOTES: Record<ExportModel['mode'], string[]> = {
  host: [
    'Policy: the last rule of INPUT drops inbound traffic not planned below (replies to established',
    'connections, loopback and IPv6 neighbour discovery pass): add rules for traffic the plan does not',
    'cover (remote administration such as SSH, monitoring) above it before loading, or you lock it out.',
    'OUTPUT accepts everything: the planned outbound flows are listed, and a commented-out DROP at its',
    "end enforces them. Rules do not match this host's own address: INPUT and OUTPUT already see only",
    'its traffic, and its inventory address may be a DNS name or a whole range.',
  ],
  network: [
    'Policy: FORWARD accepts the planned flows but does not drop other forwarded traffic (a router',
    'carries more than this plan); a commented-out DROP at its end enforces the plan.',
  ],
};

const ND_TYPES = [
  'neighbour-solicitation',
  'neighbour-advertisement',
  'router-solicitation',
  'router-advertisement',
];

function renderFile(
  model: ExportModel,
  family: Family,
  rules: Record<ExportRule['direction'], string[]>,
): string {
  const restore = family === 'v4' ? 'iptables-restore' : 'ip6tables-restore';
  const head = [...headerLines(model, 'iptables'), '', ...POLICY_NOTES[model.mode]].map((l) =>
    l === '' ? '#' : `# ${iptText(l)}`,
  );
  head.push(
    '#',
    `# Load with: ${restore} ${IPTABLES_FILE[family]} (it replaces the whole filter table: merge these`,
    '# rules into your own file if the host has other rules). DNS names and unspecified peers appear as',
    '# commented-out rules with a <placeholder> to replace.',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
  );
  const established = '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';
  const nd = (chain: string) =>
    family === 'v6'
      ? ND_TYPES.map((t) => `-A ${chain} -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j ACCEPT`)
      : [];
  const body: string[] = [];
  if (model.mode === 'host') {
    const local = model.localFlows.map(
      (f) =>
        `# ${iptText(`local flow (stays on this host, passes the loopback rule): ${f.service} ${f.protocol} ${formatPorts(f.ports)}: ${f.purpose}`)}`,
    );
    pushAll(body, [
      `-A INPUT ${established}`,
      '-A INPUT -m conntrack --ctstate INVALID -j DROP',
      '-A INPUT -i lo -j ACCEPT',
      ...nd('INPUT'),
      ...local,
      ...rules.in,
      '# Add rules for traffic the plan does not cover (remote administration, monitoring) here.',
      '-A INPUT -m comment --comment "portolan: inbound traffic not in the plan" -j DROP',
      `-A OUTPUT ${established}`,
      '-A OUTPUT -o lo -j ACCEPT',
      ...nd('OUTPUT'),
      ...rules.out,
      '# Outbound traffic the plan does not list is accepted; to enforce the plan, uncomment:',
      '# -A OUTPUT -m comment --comment "portolan: outbound traffic not in the plan" -j DROP',
    ]);
  } else {
    pushAll(body, [
      `-A FORWARD ${established}`,
      ...rules.forward,
      '# Other forwarded traffic is accepted; to enforce the plan, uncomment:',
      '# -A FORWARD -m comment --comment "portolan: forwarded traffic not in the plan" -j DROP',
    ]);
  }
  return `${[...head, ...body, 'COMMIT'].join('\n')}\n`;
}

function render(model: ExportModel): ExportResult {
  const warnings: string[] = [];
  const byFamily: Record<Family, Record<ExportRule['direction'], string[]>> = {
    v4: { in: [], out: [], forward: [] },
    v6: { in: [], out: [], forward: [] },
  };
  let v6Lines = 0;
  for (const r of model.rules) {
    const out = renderRule(model, r);
    pushAll(warnings, out.warnings);
    for (const family of FAMILIES) pushAll(byFamily[family][r.direction], out.lines[family]);
    v6Lines += out.lines.v6.length;
  }
  const files: ExportFile[] = [{ path: IPTABLES_FILE.v4, content: renderFile(model, 'v4', byFamily.v4) }];
  // IPv6 gets its own file only when the plan has IPv6 rules (loaded or to fill in).
  if (v6Lines) files.push({ path: IPTABLES_FILE.v6, content: renderFile(model, 'v6', byFamily.v6) });
  return { files, warnings };
}

export const generator: Generator = {
  name: 'iptables',
  family: 'firewall',
  summary: 'iptables-restore files (iptables.rules, ip6tables.rules) for the filter table, no ipset',
  // DNS names: iptables resolves names once at load time, so they are left as placeholders to fill.
  capabilities: { modes: ['host', 'network'], icmp: true, ipv6: true, dnsNames: false },
  render,
};
