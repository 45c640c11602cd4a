import type { Endpoint, Flow } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { portServicePairs } from '../plan/rules.js';
import { oneLine } from './header.js';
import { type ExportModel, type ExportRule, setIsEmpty } from './model.js';

/**
 * The change-request table shared by the csv, markdown and html generators: one row per rule of the
 * export model, so each row is one entry a change-advisory board approves and the ids match the
 * comments of the firewall configs rendered from the same model (nftables, iptables, ...). The
 * flows behind a rule (their purposes and source documents) are listed inside the row. Local flows
 * (from and to are the same host) get rows of their own marked as needing no firewall change.
 *
 * Cells are plain text; a cell holding several items puts one per line (`\n`). Each generator
 * escapes cells with its own format's one escaping function.
 */

export const COLUMNS = [
  'rule',
  'change',
  'direction',
  'from',
  'to',
  'protocol',
  'ports',
  'services',
  'products',
  'purpose',
  'sources',
  'notes',
] as const;
export type Column = (typeof COLUMNS)[number];

/** What a row asks the board for. */
export const CHANGE_ALLOW = 'allow';
export const CHANGE_NONE = 'none: local flow, no firewall change needed';
/** Delta change requests: the previous version's rule goes, every flow behind it is gone. */
export const CHANGE_REMOVE = 'remove';
/** Delta change requests: the rule stays for other flows; only the leaving flows' peers or ports go. */
export const CHANGE_NARROW = 'narrow: take these flows out, the rule stays for its other flows';

export interface ChangeRow {
  kind: 'rule' | 'local' | 'remove';
  /** One cell per entry of COLUMNS, in that order. */
  cells: string[];
}

export interface ChangeRequest {
  rows: ChangeRow[];
  /**
   * Delta change requests: one row per rule of the previous version that loses flows (`rule` is its
   * id in that version's export; the other cells describe the leaving flows only). Empty otherwise.
   */
  removals: ChangeRow[];
  /** Things to settle before approval: peers the documents leave open, rules not rendered. */
  warnings: string[];
}

const DIRECTION: Record<ExportRule['direction'], string> = {
  in: 'inbound',
  out: 'outbound',
  forward: 'forward',
};

/** Line breaks in one form: a lone CR would end a markdown table row or a CSV record reader's line. */
function lines(text: string): string {
  return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}

/** `proxy-01 (backup-proxy) 10.10.0.21` per host, roles merged; unspecified peers last, by description. */
export function endpointLines(endpoints: readonly Endpoint[]): string[] {
  const hosts = new Map<string, { roles: string[]; address: string }>();
  const open: string[] = [];
  for (const e of endpoints) {
    if (e.host === null) {
      open.push(`unspecified peer (name it before approval): ${lines(e.description ?? 'not described')}`);
      continue;
    }
    const h = hosts.get(e.host) ?? { roles: [], address: e.address ?? '' };
    if (e.role !== null && !h.roles.includes(e.role)) h.roles.push(e.role);
    hosts.set(e.host, h);
  }
  const named = [...hosts.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, h]) => `${name}${h.roles.length ? ` (${h.roles.join(', ')})` : ''} ${h.address}`.trim());
  return [...named, ...unique(open).sort()];
}

function portsCell(
  protocol: Flow['protocol'],
  ports: readonly PortRange[],
  icmpType: string | undefined,
): string {
  return protocol === 'icmp' ? (icmpType ?? 'any') : formatPorts(ports, ', ');
}

function purposeLines(flows: readonly Flow[]): string[] {
  // purpose -> source host -> destination hosts, all in flow order.
  // Insertion-ordered sets: a source reaching 100,000 destinations adds each in constant time.
  const byPurpose = new Map<string, Map<string, Set<string>>>();
  for (const f of flows) {
    const purpose = lines(f.purpose);
    const from = f.from.host ?? 'unspecified';
    const to = f.to.host ?? 'unspecified';
    let pairs = byPurpose.get(purpose);
    if (!pairs) {
      pairs = new Map();
      byPurpose.set(purpose, pairs);
    }
    const tos = pairs.get(from);
    if (tos) tos.add(to);
    else pairs.set(from, new Set([to]));
  }
  // One purpose for the whole rule needs no hosts; several say which hosts each is for.
  if (byPurpose.size === 1) return [...byPurpose.keys()];
  return [...byPurpose].map(
    ([purpose, pairs]) =>
      `${[...pairs].map(([from, tos]) => `${from} -> ${[...tos].join(', ')}`).join('; ')}: ${purpose}`,
  );
}

/** `doc ref` per source, once each, in flow order (each document and reference pair is read once). */
function sourceLines(flows: readonly Flow[]): string[] {
  const seen = new Map<string, Set<string>>();
  const out = new Set<string>();
  for (const f of flows)
    for (const s of f.sources) {
      let refs = seen.get(s.doc);
      if (!refs) {
        refs = new Set();
        seen.set(s.doc, refs);
      }
      if (refs.has(s.ref)) continue;
      refs.add(s.ref);
      out.add(lines(s.ref ? `${s.doc} ${s.ref}` : s.doc));
    }
  return [...out];
}

/** The distinct notes of some flows, in flow order. */
function noteLines(flows: readonly Flow[]): string[] {
  const out = new Set<string>();
  for (const f of flows) for (const n of f.notes) out.add(lines(n));
  return [...out];
}

function cells(c: Record<Column, string>): string[] {
  return COLUMNS.map((k) => c[k]);
}

/** The rows of the change request, in model order: rules first, then local flows. */
export function changeRequest(model: ExportModel): ChangeRequest {
  const rows: ChangeRow[] = [];
  const warnings: string[] = [...(model.planWarnings ?? [])];
  for (const r of model.rules) {
    // An empty match means "any" on a firewall: a rule with an empty side is never put up for approval.
    if (setIsEmpty(r.src) || setIsEmpty(r.dst)) {
      warnings.push(
        `rule ${r.id} not listed: its ${setIsEmpty(r.src) ? 'source' : 'destination'} address set is empty`,
      );
      continue;
    }
    for (const [side, set] of [
      ['source', r.src],
      ['destination', r.dst],
    ] as const) {
      for (const d of set.unspecified)
        warnings.push(
          `rule ${r.id}: the ${side} includes peers the documents leave unspecified (${oneLine(d)}); name them before the change is approved`,
        );
      if (set.names.length)
        warnings.push(
          `rule ${r.id}: the ${side} is given by DNS name (${set.names.map(oneLine).join(', ')}); fill in the addresses for a firewall that takes no names`,
        );
    }
    rows.push({
      kind: 'rule',
      cells: cells({
        rule: r.id,
        change: CHANGE_ALLOW,
        direction: DIRECTION[r.direction],
        from: endpointLines(r.flows.map((f) => f.from)).join('\n'),
        to: endpointLines(r.flows.map((f) => f.to)).join('\n'),
        protocol: r.protocol,
        ports: portsCell(r.protocol, r.ports, r.icmpType),
        services: portServicePairs(r.flows).join('\n'),
        products: unique(r.flows.map((f) => f.product)).join('\n'),
        purpose: purposeLines(r.flows).join('\n'),
        sources: sourceLines(r.flows).join('\n'),
        notes: noteLines(r.flows).join('\n'),
      }),
    });
  }
  model.localFlows.forEach((f, i) => {
    rows.push({
      kind: 'local',
      cells: cells({
        rule: `local-${i + 1}`,
        change: CHANGE_NONE,
        direction: 'local',
        from: endpointLines([f.from]).join('\n'),
        to: endpointLines([f.to]).join('\n'),
        protocol: f.protocol,
        ports: portsCell(f.protocol, f.ports, f.icmpType),
        services: portServicePairs([f]).join('\n'),
        products: f.product,
        purpose: lines(f.purpose),
        sources: sourceLines([f]).join('\n'),
        notes: unique(f.notes.map(lines)).join('\n'),
      }),
    });
  });
  // Beyond the documents: what a real deployment also needs, for the board to decide on (the plan's
  // warnings carry them already when the model has them).
  for (const a of model.advisories ?? []) if (!warnings.includes(a)) warnings.push(a);
  const removals: ChangeRow[] = (model.removals ?? []).map(({ rule, leaving, whole }) => ({
    kind: 'remove',
    cells: cells({
      rule: rule.id,
      change: whole ? CHANGE_REMOVE : CHANGE_NARROW,
      direction: DIRECTION[rule.direction],
      from: endpointLines(leaving.map((f) => f.from)).join('\n'),
      to: endpointLines(leaving.map((f) => f.to)).join('\n'),
      protocol: rule.protocol,
      ports: portsCell(rule.protocol, mergePortRanges(leaving.flatMap((f) => f.ports)), rule.icmpType),
      services: portServicePairs(leaving).join('\n'),
      products: unique(leaving.map((f) => f.product)).join('\n'),
      purpose: purposeLines(leaving).join('\n'),
      sources: sourceLines(leaving).join('\n'),
      notes: leaving.map((f) => `flow ${f.id} (catalog rows ${f.entries.join(', ')})`).join('\n'),
    }),
  }));
  return { rows, removals, warnings };
}

/** Network mode carries no local flows (they make no forward rule): say where to find them. */
export const LOCAL_IN_HOST_MODE =
  "Flows that stay on one host cross no network firewall; export with --host NAME to list a host's local flows.";

/** The visible title of a change request. */
export function changeTitle(model: ExportModel): string {
  return `Firewall change request: ${model.site}`;
}

/** The heading of the section listing what a delta change request removes. */
export function removeHeading(count: number): string {
  return `Remove: rules of the previous version no longer needed (${count})`;
}

/**
 * The removals of a delta change request as plain comment lines, for the ruleset formats: none of
 * them deletes anything itself. Rule ids are numbered per export, so an id of the previous version
 * can name a different rule in the new one, and a rule of the previous version may still carry
 * flows that stay; a deletion is a reviewer's decision against the running ruleset. Empty when
 * nothing is removed (full exports, or a delta that only adds).
 */
export function removalCommentLines(model: ExportModel): string[] {
  const removals = model.removals ?? [];
  if (!removals.length) return [];
  const out = [
    `REMOVE: ${removals.length} rule(s) of the previous version lose flows (ids as that version's export numbered them); this file deletes none of them:`,
  ];
  for (const { rule, leaving, whole } of removals) {
    const what = `${rule.protocol} ${portsCell(rule.protocol, mergePortRanges(leaving.flatMap((f) => f.ports)), rule.icmpType)}`;
    out.push(
      whole
        ? `  remove rule ${rule.id} (${what}): every flow behind it is gone`
        : `  narrow rule ${rule.id} (${what}): take out the flows below, it stays for ${rule.flows.length - leaving.length} other flow(s)`,
    );
    for (const f of leaving)
      out.push(
        `    flow ${f.id}: ${f.from.host ?? 'unspecified'} ${f.from.address ?? ''} -> ${f.to.host ?? 'unspecified'} ${f.to.address ?? ''} ${f.protocol} ${portsCell(f.protocol, f.ports, f.icmpType)} (${f.product} catalog rows ${f.entries.join(', ')})`.replace(
          /\s+/g,
          ' ',
        ),
      );
  }
  return out;
}
