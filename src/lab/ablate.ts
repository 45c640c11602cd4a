import { formatPorts } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import { version } from '../util/version.js';
import { loadRuleset } from './firewall.js';
import { hostModel, loadRulesSite } from './site.js';
import { LabError, type LabState } from './state.js';
import { type FlowOutcome, verify } from './verify.js';

/**
 * `lab ablate`: for each generated inbound rule, load the host's ruleset without it, probe the
 * planned flows to that host from their sources, and put the rule back. A rule is needed when its
 * removal makes a flow fail that passed with it; redundant when nothing breaks. Outbound rules only
 * count packets (the generated output chain accepts everything), so they are not ablated.
 */

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
}

export interface AblateReport {
  lab: string;
  site: string;
  durationMs: number;
  rules: AblatedRule[];
  /** Flows that failed before any rule was removed (they cannot show what a rule carries). */
  failingBefore: string[];
  failed: boolean;
}

export async function ablate(
  state: LabState,
  o: { host?: string; onRule?: ((line: string) => void) | undefined } = {},
): Promise<AblateReport> {
  const started = Date.now();
  const rules = loadRulesSite(state);
  const hosts = state.hosts.filter(
    (h) => h.ruleset.kind === 'generated' && (o.host === undefined || h.name === o.host),
  );
  if (o.host !== undefined && !hosts.length)
    throw new LabError(`--host ${o.host} is not a host of lab ${state.name} with a generated ruleset`);
  const out: AblatedRule[] = [];
  const failingBefore: string[] = [];
  for (const h of hosts) {
    const model = hostModel(rules, h, version());
    const inbound = model.rules.filter((r) => r.direction === 'in');
    if (!inbound.length) continue;
    const before = await verify(state, { to: h.name, plannedOnly: true });
    const failed = new Set(before.flows.filter((f) => f.failed).map((f) => f.id));
    pushAll(failingBefore, failed);
    for (const r of inbound) {
      const sources = [...new Set(r.src.hosts.filter((x): x is string => x !== null))];
      const base = {
        host: h.name,
        rule: r.id,
        protocol: r.protocol,
        ports: r.protocol === 'icmp' ? (r.icmpType ?? 'any') : formatPorts(r.ports),
        sources,
      };
      const probed = r.flows.filter((f) => f.from.host !== null && f.protocol !== 'icmp');
      if (!probed.length) {
        out.push({
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
      let breaks: FlowOutcome[] = [];
      try {
        await loadRuleset(state, h, rules, { ...model, rules: model.rules.filter((x) => x !== r) });
        const after = await verify(state, { to: h.name, from: sources, plannedOnly: true });
        breaks = after.flows.filter((f) => f.failed && !failed.has(f.id));
      } finally {
        await loadRuleset(state, h, rules, model);
      }
      const row: AblatedRule = { ...base, status: breaks.length ? 'needed' : 'redundant', breaks };
      if (!breaks.length) row.note = 'removing it broke no planned flow';
      out.push(row);
      o.onRule?.(`${row.status}: ${h.name} ${r.id}`);
    }
  }
  return {
    lab: state.name,
    site: state.site,
    durationMs: Date.now() - started,
    rules: out,
    failingBefore,
    failed: false,
  };
}
