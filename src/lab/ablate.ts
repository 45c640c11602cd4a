import { isIP } from 'node:net';
import type { ExportRule } from '../export/model.js';
import type { Flow } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { notAHost } from '../util/suggest.js';
import { version } from '../util/version.js';
import { loadRuleset } from './firewall.js';
import { hostModel, loadLabSite, loadRulesSite } from './site.js';
import { LabError, type LabHost, type LabState } from './state.js';
import { type FlowOutcome, verify } from './verify.js';

/**
 * `lab ablate`: for each generated inbound rule, load the host's ruleset without it, probe the
 * planned flows that rule could carry, and put the rule back. A rule is needed when its removal
 * makes a flow fail that passed with it; redundant when nothing breaks. Outbound rules only count
 * packets (the generated output chain accepts everything), so they are not ablated.
 *
 * Removing an inbound rule of host H changes only packets to H that the rule matched: its protocol,
 * its ports, its sources. So each removal re-probes only the planned flows to H of that protocol,
 * from those sources, and only at ports the rule names; every other flow sees the same rulesets as
 * before. A rule's port range is one match (an nftables interval, an iptables multiport range):
 * dropping the rule drops the whole range alike, so ranges are probed at a sample (see
 * samplePorts) unless `fullRanges` is set. Hosts are ablated four at a time (most of a removal's time is spent waiting out dropped probes): an inbound rule of one
 * host never carries a flow to another (the reply comes back as an established connection).
 */

/** Ranges up to this many ports are probed in full. */
export const FULL_RANGE_MAX = 16;
/** Hosts ablated at once. */
const PARALLEL = 4;

export interface AblatedRule {
  host: string;
  rule: string;
  protocol: string;
  ports: string;
  /** Inventory hosts the rule accepts from. */
  sources: string[];
  status: 'needed' | 'redundant' | 'untestable';
  note?: string;
  breaks: FlowOutcome[];
  /** The ports probed after the rule was removed (its ports, ranges sampled unless --full-ranges). */
  probed?: string;
}

export interface AblateReport {
  lab: string;
  site: string;
  durationMs: number;
  /** Whether every range was probed in full (--full-ranges) or at a sample (samplePorts). */
  fullRanges: boolean;
  rules: AblatedRule[];
  /** Flows that failed before any rule was removed (they cannot show what a rule carries). */
  failingBefore: string[];
  /** Probe runs that failed outright (a check that printed no JSON): the rules they touch are not decided. */
  errors: string[];
  failed: boolean;
}

/**
 * The ports of a range that ablate probes: every port of a range of up to FULL_RANGE_MAX ports;
 * else its first two, its last two, and its quarter, half and three-quarter points (an off-by-one
 * at either bound, and the inside, of the one match that carries the range).
 */
export function samplePorts(ranges: readonly PortRange[], full = false): PortRange[] {
  const out: PortRange[] = [];
  for (const [lo, hi] of mergePortRanges(ranges)) {
    const n = hi - lo + 1;
    if (full || n <= FULL_RANGE_MAX) {
      out.push([lo, hi]);
      continue;
    }
    const q = (k: number) => lo + Math.floor(((n - 1) * k) / 4);
    for (const p of new Set([lo, lo + 1, q(1), q(2), q(3), hi - 1, hi])) out.push([p, p]);
  }
  return mergePortRanges(out);
}

function intersect(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  for (const [alo, ahi] of a)
    for (const [blo, bhi] of b) {
      const lo = Math.max(alo, blo);
      const hi = Math.min(ahi, bhi);
      if (lo <= hi) out.push([lo, hi]);
    }
  return mergePortRanges(out);
}

/** Per source host: the ports to probe so that every flow `r` could carry is probed where `r` matches. */
function probePlan(
  r: ExportRule,
  flows: readonly Flow[],
  full: boolean,
  reachable: (src: string) => boolean,
): Map<string, PortRange[]> {
  const anySource = r.src.hosts.includes(null);
  const out = new Map<string, PortRange[]>();
  for (const f of flows) {
    if (f.from.host === null || f.local || f.protocol !== r.protocol) continue;
    if (!anySource && !r.src.hosts.includes(f.from.host)) continue;
    if (!reachable(f.from.host)) continue;
    const at = intersect(f.ports, r.ports);
    if (!at.length) continue;
    out.set(f.from.host, mergePortRanges([...(out.get(f.from.host) ?? []), ...samplePorts(at, full)]));
  }
  return out;
}

/** The flows `r` could carry, by id (the flows probePlan probes). */
function carried(r: ExportRule, flows: readonly Flow[], plan: Map<string, PortRange[]>): Set<string> {
  return new Set(
    flows
      .filter(
        (f) =>
          f.from.host !== null &&
          plan.has(f.from.host) &&
          f.protocol === r.protocol &&
          !f.local &&
          intersect(f.ports, r.ports).length > 0,
      )
      .map((f) => f.id),
  );
}

async function pool<T>(items: readonly T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/**
 * Ablates every generated inbound rule of the lab (of `host` only, when given), restoring each
 * rule before the next is removed: the lab is left with the rulesets it had. Throws LabError for
 * a `host` that is not a lab host with a generated ruleset.
 */
export async function ablate(
  state: LabState,
  o: { host?: string; fullRanges?: boolean; onRule?: ((line: string) => void) | undefined } = {},
): Promise<AblateReport> {
  const started = Date.now();
  const full = o.fullRanges === true;
  const rules = loadRulesSite(state);
  const loaded = loadLabSite(state);
  const { plan } = loaded;
  const hosts = state.hosts.filter(
    (h) => h.ruleset.kind === 'generated' && (o.host === undefined || h.name === o.host),
  );
  if (o.host !== undefined && !hosts.length)
    throw new LabError(
      notAHost(
        '--host',
        o.host,
        `lab ${state.name} with a generated ruleset`,
        state.hosts.filter((h) => h.ruleset.kind === 'generated').map((h) => h.name),
      ),
    );
  const perHost = new Map<string, { rules: AblatedRule[]; failingBefore: string[]; errors: string[] }>();

  const ablateHost = async (h: LabHost) => {
    const model = hostModel(rules, h, version());
    const inbound = model.rules.filter((r) => r.direction === 'in');
    const res = { rules: [] as AblatedRule[], failingBefore: [] as string[], errors: [] as string[] };
    perHost.set(h.name, res);
    if (!inbound.length) return;
    const toHost = plan.flows.filter((f) => f.to.host === h.name && f.protocol !== 'icmp');
    // A source that shares no address family with this host cannot reach it in the lab (verify
    // names those flows as expected failures): its flows are not probed.
    const families = (x: LabHost) => new Set(x.addresses.map((a) => isIP(a)));
    const mine = families(h);
    const reachable = (src: string) => {
      const s = state.hosts.find((x) => x.name === src);
      return s !== undefined && [...families(s)].some((f) => mine.has(f));
    };
    const plans = new Map(inbound.map((r) => [r, probePlan(r, toHost, full, reachable)]));
    // Before any removal: the same ports, so a flow already failing there is not put on a rule.
    const union = new Map<string, PortRange[]>();
    for (const p of plans.values())
      for (const [src, ports] of p) union.set(src, mergePortRanges([...(union.get(src) ?? []), ...ports]));
    const failed = new Set<string>();
    if (union.size) {
      const before = await verify(state, { to: h.name, plannedOnly: true, ports: union, loaded });
      for (const f of before.flows) if (f.failed) failed.add(f.id);
      for (const e of before.errors) res.errors.push(`${h.name}, before any removal: ${e}`);
    }
    res.failingBefore.push(...failed);
    // Each load is the host's whole ruleset but the rule under test, so it also restores the one
    // before; the finally below restores the last (and any rule left out by an error).
    let changed = false;
    try {
      for (const r of inbound) {
        const sources = [...new Set(r.src.hosts.filter((x): x is string => x !== null))];
        const base = {
          host: h.name,
          rule: r.id,
          protocol: r.protocol,
          ports: r.protocol === 'icmp' ? (r.icmpType ?? 'any') : formatPorts(r.ports),
          sources,
        };
        const probe = plans.get(r) as Map<string, PortRange[]>;
        if (!probe.size) {
          res.rules.push({
            ...base,
            status: 'untestable',
            note:
              r.protocol === 'icmp'
                ? 'ICMP is not probed in the lab'
                : 'its peers are unspecified: no namespace stands for them',
            breaks: [],
          });
          continue;
        }
        const ids = carried(r, toHost, probe);
        changed = true;
        await loadRuleset(state, h, rules, { ...model, rules: model.rules.filter((x) => x !== r) });
        const after = await verify(state, { to: h.name, plannedOnly: true, ports: probe, loaded });
        for (const e of after.errors) res.errors.push(`${h.name} without ${r.id}: ${e}`);
        const breaks = after.flows.filter((f) => ids.has(f.id) && f.failed && !failed.has(f.id));
        const probed = [...probe].map(([src, ports]) => `${src}: ${formatPorts(ports)}`).join('; ');
        const row: AblatedRule = { ...base, status: breaks.length ? 'needed' : 'redundant', breaks, probed };
        if (!breaks.length) row.note = 'removing it broke no planned flow';
        res.rules.push(row);
        o.onRule?.(`${row.status}: ${h.name} ${r.id}`);
      }
    } finally {
      if (changed) await loadRuleset(state, h, rules, model);
    }
  };

  await pool(hosts, PARALLEL, ablateHost);

  const out: AblatedRule[] = [];
  const failingBefore: string[] = [];
  const errors: string[] = [];
  for (const h of hosts) {
    const r = perHost.get(h.name);
    if (!r) continue;
    out.push(...r.rules);
    failingBefore.push(...r.failingBefore);
    errors.push(...r.errors);
  }
  return {
    lab: state.name,
    site: state.site,
    durationMs: Date.now() - started,
    fullRanges: full,
    rules: out,
    failingBefore,
    errors,
    failed: errors.length > 0,
  };
}
