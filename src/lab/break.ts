import { UsageError } from '../errors.js';
import { formatPorts } from '../model/ports.js';
import { notAHost } from '../util/suggest.js';
import { loadRuleset } from './firewall.js';
import { loadLabSite, loadRulesSite } from './site.js';
import { type Broken, LabError, type LabState, saveState } from './state.js';

export interface FlowSpec extends Broken {
  to: string;
}

/** `FROM->TO:PORT/PROTO`, e.g. `proxy-01->esx-edge:443/tcp`. */
export function parseFlowSpec(text: string): FlowSpec {
  const m = /^([^\s>]+?)->([^\s:]+):(\d{1,5})\/(tcp|udp)$/i.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535)
    throw new UsageError(
      `--flow ${JSON.stringify(text)} is not FROM->TO:PORT/PROTO (expected e.g. proxy-01->esx-edge:443/tcp, a port 1-65535, tcp or udp)`,
    );
  return {
    from: m[1] as string,
    to: m[2] as string,
    port,
    protocol: (m[4] as string).toLowerCase() as 'tcp' | 'udp',
  };
}

/**
 * Takes one planned flow out of the target's generated ruleset (see carve in site.ts) and records it
 * in the state, so later reloads keep it out and `verify` marks it. Refuses a flow the plan does not
 * have, a local flow (loopback is always accepted) and a host that runs the user's own ruleset.
 */
export async function breakFlow(state: LabState, spec: FlowSpec): Promise<string> {
  const names = state.hosts.map((h) => h.name);
  for (const h of [spec.from, spec.to])
    if (!names.includes(h)) throw new UsageError(notAHost('--flow:', h, `lab ${state.name}`, names));
  const { plan } = loadLabSite(state);
  const between = plan.flows.filter(
    (f) => f.from.host === spec.from && f.to.host === spec.to && f.protocol !== 'icmp',
  );
  const flow = between.find(
    (f) => f.protocol === spec.protocol && f.ports.some(([lo, hi]) => lo <= spec.port && spec.port <= hi),
  );
  if (!flow)
    throw new UsageError(
      `--flow: the plan has no flow ${spec.from}->${spec.to}:${spec.port}/${spec.protocol} (flows between them: ${between.map((f) => `${f.protocol}/${formatPorts(f.ports)} ${f.service}`).join(', ') || 'none'})`,
    );
  if (flow.local)
    throw new UsageError(
      `--flow: ${spec.from}->${spec.to} is a local flow: the loopback rule carries it, no rule to take out`,
    );
  const target = state.hosts.find((h) => h.name === spec.to);
  if (!target) throw new LabError(`no host ${spec.to}`);
  if (target.ruleset.kind !== 'generated')
    throw new UsageError(
      `--flow: ${spec.to} runs your own ${target.ruleset.format} ruleset; break changes generated rulesets only`,
    );
  const b = { from: spec.from, protocol: spec.protocol, port: spec.port };
  if (!target.broken.some((x) => x.from === b.from && x.protocol === b.protocol && x.port === b.port))
    target.broken.push(b);
  saveState(state);
  await loadRuleset(state, target, loadRulesSite(state));
  return `took ${spec.from}->${spec.to}:${spec.port}/${spec.protocol} (${flow.service}, ${flow.product}) out of ${spec.to}'s ${target.ruleset.firewall} ruleset; "portolan lab verify --name ${state.name}" shows it failing`;
}
