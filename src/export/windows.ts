import { InputError } from '../errors.js';
import { pushAll } from '../util/arrays.js';
import { asciiText, localFlowLines, plainAddress } from './_hostfw.js';
import type { ExportResult, Generator } from './generator.js';
import { headerLines, oneLine } from './header.js';
import { LINE_LIMITS } from './limits.js';
import {
  type ExportModel,
  type ExportRule,
  ruleProvenance,
  ruleSummary,
  rulesetName,
  setIsEmpty,
} from './model.js';

/**
 * Windows Defender Firewall, host mode: a PowerShell script of New-NetFirewallRule calls, one per
 * model rule (ICMP split per address family), all in the site's group `portolan-<site>` (rulesetName),
 * named `portolan-<site>-<rule id>`, so two sites' scripts on one host keep each other's rules. Windows rules take IP
 * addresses, subnets and ranges but no DNS names, so names and the peers the documents leave open
 * become `$PortolanAddr_<rule>` variables the user fills; the script refuses to run while one is
 * empty, because an empty -RemoteAddress means Any.
 */

export const SCRIPT_FILE = 'portolan-firewall.ps1';
/** The rule group of a site's script: `portolan-<site>` (see rulesetName). */
export function windowsGroup(site: string): string {
  return rulesetName(site);
}
/** ICMP echo request: type 8 in ICMPv4, 128 in ICMPv6. */
const ECHO_REQUEST = { v4: 8, v6: 128 } as const;
const PLATFORM = 'windows';

/**
 * The one quoting function for PowerShell: a single-quoted string, which expands nothing; the only
 * way to end it is a quote character, written twice inside. PowerShell also ends it at the typographic
 * quotes U+2018-U+201B, and a script without BOM is read as ANSI by PowerShell 5.1, so the text is
 * first made plain ASCII (asciiText turns every other character into a visible `\uXXXX`).
 */
export function psq(text: string): string {
  return `'${asciiText(text).replace(/'/g, "''")}'`;
}

/** A `#` comment line (ASCII, one line, so it cannot reach the next line). */
function psComment(text: string): string {
  const s = asciiText(text).trimEnd();
  return s ? `# ${s}` : '#';
}

type Family = 'v4' | 'v6';

/** One New-NetFirewallRule call to make. */
interface Call {
  /** The site's group: also the prefix of the rule's name. */
  group: string;
  name: string;
  rule: ExportRule;
  protocol: 'TCP' | 'UDP' | 'ICMPv4' | 'ICMPv6';
  family?: Family;
  literals: string[];
  /** The variable the user fills, if any (without `$`). */
  variable?: string;
}

function variableName(id: string, family?: Family): string {
  return `PortolanAddr_${id.replace(/[^A-Za-z0-9]/g, '_')}${family ? `_IPv${family === 'v4' ? 4 : 6}` : ''}`;
}

function remoteAddress(c: Call): string {
  const lits = c.literals.map(psq).join(', ');
  if (!c.variable) return lits;
  if (!c.literals.length) return `$${c.variable}`;
  return `(@(${lits}) + $${c.variable})`;
}

/** The dynamic RPC range Windows hands out by default (Server 2008 and later, Microsoft KB 929851). */
const DYNAMIC_RPC: readonly [number, number] = [49152, 65535];

/**
 * An inbound TCP rule for the dynamic RPC range (service msrpc-dynamic) names it by Windows
 * Firewall's own keyword, `-LocalPort RPC` (New-NetFirewallRule: the ports the RPC endpoint mapper
 * hands out, whatever range the host is configured with). The keyword cannot share a rule with port
 * numbers, so it gets a rule of its own.
 */
function splitsRpc(c: Call): boolean {
  const r = c.rule;
  return (
    r.direction === 'in' &&
    r.protocol === 'tcp' &&
    r.services.includes('msrpc-dynamic') &&
    r.ports.some(([lo, hi]) => lo === DYNAMIC_RPC[0] && hi === DYNAMIC_RPC[1])
  );
}

function newRule(c: Call): string {
  if (!splitsRpc(c)) return newRuleFor(c);
  const rest = c.rule.ports.filter(([lo, hi]) => lo !== DYNAMIC_RPC[0] || hi !== DYNAMIC_RPC[1]);
  const rpc = newRuleFor({ ...c, name: `${c.name}-rpc` }, 'RPC');
  return rest.length ? `${newRuleFor({ ...c, rule: { ...c.rule, ports: rest } })}\n${rpc}` : rpc;
}

/** The longest script line PowerShell is given (limits.ts: the shell line limit every script format keeps). */
const LINE_MAX = LINE_LIMITS.windows.max;

/**
 * The New-NetFirewallRule calls for one Call: one line when it fits in LINE_MAX bytes, otherwise its
 * literal addresses split over several rules that differ only in -RemoteAddress, named `<name>`,
 * `<name>-part2`, `<name>-part3`, ... (the variable the user fills goes with the first). Together they
 * allow exactly the peers of the one rule, and each name still leads back to its rule id.
 */
function newRuleFor(c: Call, keyword?: string): string {
  const whole = ruleLine(c, keyword);
  if (whole.length <= LINE_MAX || c.literals.length < 2) return whole;
  // Everything but the address list, with the longest name a part can get: the room left is the
  // budget for addresses. The script is ASCII (psq), so characters are bytes.
  const { variable: _, ...plain } = c;
  const longest = `${c.name}-part${c.literals.length}`;
  const fixed = ruleLine({ ...plain, name: longest, literals: [] }, keyword).length;
  const overhead = c.variable ? `(@() + $${c.variable})`.length : 0;
  const parts: string[][] = [];
  let current: string[] = [];
  let used = 0;
  for (const address of c.literals) {
    const cost = psq(address).length + (current.length ? 2 : 0);
    const room = LINE_MAX - fixed - (parts.length === 0 ? overhead : 0);
    if (current.length && used + cost > room) {
      parts.push(current);
      current = [];
      used = 0;
    }
    used += current.length ? cost : psq(address).length;
    current.push(address);
  }
  parts.push(current);
  return parts
    .map((literals, i) =>
      ruleLine(
        i === 0 ? { ...c, literals } : { ...plain, name: `${c.name}-part${i + 1}`, literals },
        keyword,
      ),
    )
    .join('\n');
}

function ruleLine(c: Call, keyword?: string): string {
  const r = c.rule;
  const inbound = r.direction === 'in';
  const parts = [
    'New-NetFirewallRule',
    `-Name ${psq(c.name)}`,
    `-DisplayName ${psq(`${c.group} ${c.name.slice(c.group.length + 1)}: ${r.services.join(', ')}`)}`,
    `-Description ${psq(`${ruleSummary(r)}. ${[...new Set(r.flows.map((f) => f.purpose))].join(' ')}`)}`,
    `-Group ${psq(c.group)}`,
    `-Direction ${inbound ? 'Inbound' : 'Outbound'}`,
    '-Action Allow',
    `-Protocol ${c.protocol}`,
  ];
  if (r.protocol === 'icmp') {
    if (r.icmpType === 'echo-request' && c.family) parts.push(`-IcmpType ${ECHO_REQUEST[c.family]}`);
  } else {
    parts.push(
      `-${inbound ? 'Local' : 'Remote'}Port ${keyword ?? r.ports.map(([lo, hi]) => psq(lo === hi ? `${lo}` : `${lo}-${hi}`)).join(', ')}`,
    );
  }
  parts.push(`-RemoteAddress ${remoteAddress(c)}`);
  const line = parts.join(' ');
  // A family of an ICMP rule that has only addresses to fill is made only when some are filled in.
  return c.variable && !c.literals.length && c.family
    ? `if (@($${c.variable}).Count -gt 0) { ${line} }`
    : line;
}

interface Rendered {
  comments: string[];
  calls: Call[];
  /** Checks that refuse to run while a variable is empty: [variables that may not all be empty]. */
  required: string[][];
  /** Variable declarations with their comments. */
  declarations: string[];
}

function renderRule(r: ExportRule, group: string, warnings: string[]): Rendered {
  // One line for the rule and one per product behind it; the flows one by one are in the change request.
  const comments = ruleProvenance(r).map(psComment);
  const out: Rendered = { comments, calls: [], required: [], declarations: [] };
  const remote = r.direction === 'in' ? r.src : r.dst;
  if (setIsEmpty(remote)) {
    const why = 'it has no peer addresses (an empty -RemoteAddress would mean Any)';
    warnings.push(`rule ${r.id} (${oneLine(ruleSummary(r))}) is not rendered: ${why}`);
    out.comments.push(psComment(`not rendered: ${why}`));
    return out;
  }
  if (r.protocol !== 'icmp' && !r.ports.length) {
    const why = 'it has no ports (an empty port list would mean any port)';
    warnings.push(`rule ${r.id} (${oneLine(ruleSummary(r))}) is not rendered: ${why}`);
    out.comments.push(psComment(`not rendered: ${why}`));
    return out;
  }
  const fill = remote.names.length > 0 || remote.unspecified.length > 0;
  const families: (Family | undefined)[] = r.protocol === 'icmp' ? ['v4', 'v6'] : [undefined];
  const vars: string[] = [];
  for (const family of families) {
    const literals = (family ? remote[family] : [...remote.v4, ...remote.v6]).map(plainAddress);
    if (!literals.length && !fill) continue;
    const variable = fill ? variableName(r.id, family) : undefined;
    if (variable) vars.push(variable);
    const protocol =
      r.protocol === 'tcp' ? 'TCP' : r.protocol === 'udp' ? 'UDP' : family === 'v6' ? 'ICMPv6' : 'ICMPv4';
    out.calls.push({
      group,
      name: `${group}-${r.id}${family ? `-ipv${family === 'v4' ? 4 : 6}` : ''}`,
      rule: r,
      protocol,
      ...(family ? { family } : {}),
      literals,
      ...(variable ? { variable } : {}),
    });
  }
  if (fill) {
    out.required.push(vars);
    const decl = [psComment(`${r.id} (${ruleSummary(r)}):`)];
    for (const n of remote.names) decl.push(psComment(`  DNS name: ${n}`));
    for (const u of remote.unspecified) decl.push(psComment(`  peer the documents leave open: ${u}`));
    if (vars.length > 1)
      decl.push(psComment('  (ICMP: IPv4 and IPv6 addresses go in separate variables; fill at least one)'));
    for (const v of vars) decl.push(`$${v} = @()`);
    pushAll(out.declarations, decl);
    const parts: string[] = [];
    if (remote.names.length)
      parts.push(`Windows Firewall rules take no DNS names (${remote.names.join(', ')})`);
    if (remote.unspecified.length)
      parts.push(`the documents leave peers open (${remote.unspecified.map(oneLine).join('; ')})`);
    warnings.push(
      `rule ${r.id} (${oneLine(ruleSummary(r))}): ${parts.join(' and ')}; fill $${vars.join(' / $')} in ${SCRIPT_FILE} (the script refuses to run while ${vars.length > 1 ? 'both are' : 'it is'} empty)`,
    );
  }
  return out;
}

function script(model: ExportModel, rendered: Rendered[]): string {
  const group = windowsGroup(model.site);
  const declarations = rendered.flatMap((r) => r.declarations);
  const required = rendered.flatMap((r) => r.required);
  const lines = [
    ...headerLines(model, PLATFORM).map(psComment),
    '#',
    `# Windows Defender Firewall rules for this host, all in the group '${asciiText(group)}' (one group per site:`,
    "# portolan- and the site name, so another site's script on this host keeps its own rules). Run in an",
    `# elevated PowerShell; re-running first removes every rule in this group, then adds them again.`,
    '# Each rule says its flows, hosts and catalog rows; the flows one by one (hosts, purposes, sources)',
    '# are in the change request: portolan export --to csv|markdown|html.',
    '# Outbound rules matter only where outbound connections are blocked by default',
    '# (Set-NetFirewallProfile -DefaultOutboundAction Block).',
    ...localFlowLines(model).map(psComment),
    '#Requires -RunAsAdministrator',
    "$ErrorActionPreference = 'Stop'",
    '',
  ];
  if (declarations.length)
    pushAll(lines, [
      '# Addresses to fill in: New-NetFirewallRule takes IP addresses, subnets and ranges but no DNS names',
      '# (builds with -RemoteDynamicKeywordAddresses can match names through dynamic keywords instead), and',
      "# the documents leave some peers open. Fill each as @('192.0.2.10', '10.0.0.0/24'). The script stops",
      '# while one is empty: an empty -RemoteAddress would mean Any.',
      ...declarations,
      '',
      '$portolanMissing = @()',
      ...required.map((vars) => {
        const count = vars.map((v) => `@($${v}).Count`).join(' + ');
        return `if (${count} -eq 0) { $portolanMissing += ${psq(vars.join(' or '))} }`;
      }),
      "if ($portolanMissing.Count -gt 0) { throw ('portolan: fill in these address variables first: ' + ($portolanMissing -join ', ')) }",
      '',
    ]);
  lines.push(
    `Get-NetFirewallRule -Group ${psq(group)} -ErrorAction SilentlyContinue | Remove-NetFirewallRule`,
    '',
  );
  for (const r of rendered) {
    pushAll(lines, r.comments);
    pushAll(lines, r.calls.map(newRule));
    lines.push('');
  }
  return lines.join('\n');
}

export const generator: Generator = {
  name: 'windows',
  family: 'firewall',
  summary: 'Windows Defender Firewall PowerShell script (New-NetFirewallRule, group portolan-<site>)',
  capabilities: { modes: ['host'], icmp: true, ipv6: true, dnsNames: false },
  render(model: ExportModel): ExportResult {
    if (model.mode !== 'host') throw new InputError('--to windows supports host mode only (--host NAME)');
    const warnings: string[] = [];
    const group = windowsGroup(model.site);
    const rendered = model.rules.map((r) => renderRule(r, group, warnings));
    return { files: [{ path: SCRIPT_FILE, content: script(model, rendered) }], warnings };
  },
};
