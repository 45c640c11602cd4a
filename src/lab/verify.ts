import { isIP } from 'node:net';
import { subtractPorts } from '../listen/inbound.js';
import { RESPONDER_CONNECTIONS_PER_SOURCE } from '../listen/protocol.js';
import type { Flow, FlowSource } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { shortHash } from './names.js';
import type { ProbeOutcome, ProbeTarget } from './probe.js';
import { type LoadedLab, labSitePath, loadLabSite } from './site.js';
import { LabError, type LabHost, type LabState } from './state.js';
import { cliInNs } from './sys.js';

/**
 * `lab verify`: runs `portolan check --secret` from every source host's namespace (so each planned
 * flow is probed from where it starts, through both hosts' rulesets, to the responder), then probes
 * ports the plan does not give a pair (a sample, or all of them) to show they are blocked.
 */

/** Sampled unplanned probes per ordered pair of hosts: TCP ports of the plan, UDP ports of the plan, any TCP port. */
export const SAMPLE = { tcpPlanned: 3, udpPlanned: 1, tcpAny: 1 } as const;
/** Source namespaces probed at once. */
const PARALLEL = 2;
/**
 * check's options in the lab: a short retry budget (no far-away ICMP rate limit to wait out), and
 * well under the connections a responder admits from one source (RESPONDER_CONNECTIONS_PER_SOURCE),
 * leaving room for sockets still closing and the signed probes: past that share it refuses them.
 */
const CHECK_ARGS = [
  '--timeout',
  '1000',
  '--retry-budget',
  '2000',
  '--concurrency',
  String(Math.max(1, Math.floor(RESPONDER_CONNECTIONS_PER_SOURCE / 8))),
];
/** Verdicts that pass in the lab (a responder stands behind every planned port). */
export const PASSING: ReadonlySet<string> = new Set(['ok', 'ok (responder)']);
export interface FlowOutcome {
  id: string;
  product: string;
  from: string;
  to: string;
  protocol: string;
  ports: PortRange[];
  service: string;
  local: boolean;
  verdict: string;
  /**
   * In the lab every target runs a responder, so a flow passes only as `ok` or `ok (responder)`:
   * anything else (open|filtered, open-unverified included) fails here even where check does not fail it.
   */
  failed: boolean;
  /** What check itself said (its `failed`). */
  checkFailed: boolean;
  reason?: string;
  hint?: string;
  /** Why this flow is expected to fail in the lab, when it is (a `lab break`, no shared address family). */
  expectedFailure?: string;
  sources: FlowSource[];
  /** Per address: the check's runs (address, ports, verdict, detail). */
  results: { address: string; ports: [number, number]; verdict: string; detail: string }[];
}

export interface UnplannedOutcome extends ProbeOutcome {
  from: string;
  to: string;
}

export interface VerifyReport {
  lab: string;
  site: string;
  firewall: string;
  exhaustive: boolean;
  startedAt: string;
  durationMs: number;
  hosts: { name: string; addresses: string[]; ruleset: string; broken: string[] }[];
  flows: FlowOutcome[];
  /** Planned flows the lab cannot probe, with why (an unspecified peer, ICMP). */
  notProbed: { id: string; from: string; to: string; why: string }[];
  unplanned: UnplannedOutcome[];
  /** Sources whose check or probe run failed outright (no JSON). */
  errors: string[];
  failed: boolean;
}

export interface VerifyOptions {
  exhaustive?: boolean;
  /** Only these source hosts (ablate). */
  from?: readonly string[];
  /** Only flows to this host (ablate). */
  to?: string;
  /** Skip the unplanned probes (ablate). */
  plannedOnly?: boolean;
  /**
   * Only these source hosts, each probing only these ports of its flows (check --port; ablate's
   * sample of the ports a rule carries). Flows of the source without one of these ports are not run.
   */
  ports?: ReadonlyMap<string, readonly PortRange[]>;
  /** The lab's site and plan, when the caller already loaded them (loadLabSite). */
  loaded?: LoadedLab;
}

interface CheckJsonFlow {
  id: string;
  verdict: string;
  failed: boolean;
  reason?: string;
  hint?: string;
  results: { address: string; ports: [number, number]; verdict: string; detail: string }[];
}

function familyOf(h: LabHost): Set<number> {
  return new Set(h.addresses.map((a) => isIP(a)));
}

function rulesetLabel(h: LabHost): string {
  return h.ruleset.kind === 'generated' ? `generated ${h.ruleset.firewall}` : `user ${h.ruleset.format}`;
}

async function pool<T>(items: readonly T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

export async function verify(state: LabState, o: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const { plan } = o.loaded ?? loadLabSite(state);
  const hosts = new Map(state.hosts.map((h) => [h.name, h]));
  const flows: FlowOutcome[] = [];
  const notProbed: VerifyReport['notProbed'] = [];
  const errors: string[] = [];
  const probeable = (f: Flow) => f.from.host !== null && f.to.host !== null && f.protocol !== 'icmp';
  for (const f of plan.flows) {
    if (o.to !== undefined && f.to.host !== o.to) continue;
    if (o.from && f.from.host !== null && !o.from.includes(f.from.host)) continue;
    if (probeable(f)) continue;
    notProbed.push({
      id: f.id,
      from: f.from.host ?? f.from.description ?? 'any',
      to: f.to.host ?? f.to.description ?? 'any',
      why:
        f.protocol === 'icmp'
          ? 'ICMP is not probed (check has no raw sockets)'
          : 'the documents leave a peer unspecified: no namespace stands for it',
    });
  }
  const sources = [...new Set(plan.flows.filter(probeable).map((f) => f.from.host as string))].filter(
    (h) =>
      (!o.from || o.from.includes(h)) &&
      (!o.ports || (o.ports.get(h)?.length ?? 0) > 0) &&
      (o.to === undefined || plan.flows.some((f) => f.from.host === h && f.to.host === o.to && probeable(f))),
  );
  const byId = new Map(plan.flows.map((f) => [f.id, f]));

  await pool(sources, PARALLEL, async (src) => {
    const h = hosts.get(src) as LabHost;
    const args = ['check', labSitePath(state), '--from', src, '--format', 'json', ...CHECK_ARGS];
    if (o.to !== undefined) args.push('--to', o.to);
    const only = o.ports?.get(src);
    if (only) args.push('--port', formatPorts(mergePortRanges(only)));
    for (const c of state.catalogs) args.push('--catalog', c);
    const out = await cliInNs(h.ns, args, { env: { PORTOLAN_SECRET: state.secret } });
    let doc: { flows: CheckJsonFlow[] };
    try {
      doc = JSON.parse(out.stdout) as { flows: CheckJsonFlow[] };
    } catch {
      errors.push(
        `check from ${src} (namespace ${h.ns}) exited ${out.code}: ${out.stderr.trim().split('\n').slice(-2).join(' / ')}`,
      );
      return;
    }
    for (const c of doc.flows) {
      const f = byId.get(c.id);
      if (!f || !probeable(f)) continue;
      const to = hosts.get(f.to.host as string) as LabHost;
      const broken = to.broken.find(
        (b) =>
          b.from === src &&
          b.protocol === f.protocol &&
          f.ports.some(([lo, hi]) => lo <= b.port && b.port <= hi),
      );
      const shared = [...familyOf(h)].some((x) => familyOf(to).has(x));
      const expectedFailure = broken
        ? `taken out by lab break (${src}->${to.name}:${broken.port}/${broken.protocol})`
        : !shared && !f.local
          ? `${src} (${h.addresses.join(', ')}) and ${to.name} (${to.addresses.join(', ')}) share no address family`
          : undefined;
      flows.push({
        id: f.id,
        product: f.product,
        from: src,
        to: to.name,
        protocol: f.protocol,
        ports: f.ports,
        service: f.service,
        local: f.local,
        verdict: c.verdict,
        failed: !PASSING.has(c.verdict),
        checkFailed: c.failed,
        ...(c.reason ? { reason: c.reason } : {}),
        ...(c.hint ? { hint: c.hint } : {}),
        ...(expectedFailure ? { expectedFailure } : {}),
        sources: f.sources,
        results: c.results,
      });
    }
  });
  const order = new Map(plan.flows.map((f, i) => [f.id, i]));
  flows.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));

  const unplanned: UnplannedOutcome[] = [];
  if (!o.plannedOnly) {
    const targets = unplannedTargets(state, plan.flows, o.exhaustive === true, o.to);
    await pool([...targets.keys()], PARALLEL, async (src) => {
      const list = targets.get(src) ?? [];
      if (!list.length) return;
      const h = hosts.get(src) as LabHost;
      const out = await cliInNs(h.ns, ['lab', '_probe'], {
        input: JSON.stringify(list.map((t) => t.target)),
      });
      let res: ProbeOutcome[];
      try {
        res = JSON.parse(out.stdout) as ProbeOutcome[];
      } catch {
        errors.push(
          `unplanned probes from ${src} exited ${out.code}: ${out.stderr.trim().split('\n').slice(-2).join(' / ')}`,
        );
        return;
      }
      for (const [i, r] of res.entries()) unplanned.push({ ...r, from: src, to: list[i]?.to as string });
    });
    const hostOrder = new Map(state.hosts.map((h, i) => [h.name, i]));
    unplanned.sort(
      (a, b) =>
        (hostOrder.get(a.from) ?? 0) - (hostOrder.get(b.from) ?? 0) ||
        (hostOrder.get(a.to) ?? 0) - (hostOrder.get(b.to) ?? 0) ||
        a.protocol.localeCompare(b.protocol) ||
        a.port - b.port,
    );
  }
  if (!flows.length && !unplanned.length && errors.length)
    throw new LabError(`lab ${state.name}: nothing could be probed: ${errors.join('; ')}`, 'EIO');
  return {
    lab: state.name,
    site: state.site,
    firewall: state.firewall,
    exhaustive: o.exhaustive === true,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    hosts: state.hosts.map((h) => ({
      name: h.name,
      addresses: h.addresses,
      ruleset: rulesetLabel(h),
      broken: h.broken.map((b) => `${b.from}->${h.name}:${b.port}/${b.protocol}`),
    })),
    flows,
    notProbed,
    unplanned,
    errors,
    failed: errors.length > 0 || flows.some((f) => f.failed) || unplanned.some((u) => u.result !== 'blocked'),
  };
}

/** The k-th port of merged ranges. */
function nth(ranges: readonly PortRange[], k: number): number {
  for (const [lo, hi] of ranges) {
    if (k <= hi - lo) return lo + k;
    k -= hi - lo + 1;
  }
  throw new Error('port index out of range');
}

function count(ranges: readonly PortRange[]): number {
  return ranges.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
}

/** `n` distinct ports of `ranges`, chosen by a hash of `seed` (the same lab samples the same ports). */
export function pick(ranges: readonly PortRange[], n: number, seed: string): number[] {
  const total = count(ranges);
  if (total <= n) return ranges.flatMap(([lo, hi]) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i));
  const out = new Set<number>();
  for (let i = 0; out.size < n; i++)
    out.add(nth(ranges, Number.parseInt(shortHash(`${seed}|${i}`, 8), 16) % total));
  return [...out].sort((a, b) => a - b);
}

/**
 * Per source host: the unplanned (target, protocol, port) to probe. For each ordered pair of hosts
 * with a shared address family, ports the plan gives somebody but not this pair (a rule that
 * matched too wide would open exactly those), plus one port the plan names nowhere. Exhaustive:
 * every port of the plan, in full, on every pair it is not planned for. Ports any unspecified peer
 * may use towards the target are left out (the plan allows them from "any").
 */
export function unplannedTargets(
  state: LabState,
  flows: readonly Flow[],
  exhaustive: boolean,
  only?: string,
): Map<string, { to: string; target: ProbeTarget }[]> {
  const sitePorts = {
    tcp: mergePortRanges(flows.filter((f) => f.protocol === 'tcp').flatMap((f) => f.ports)),
    udp: mergePortRanges(flows.filter((f) => f.protocol === 'udp').flatMap((f) => f.ports)),
  };
  const out = new Map<string, { to: string; target: ProbeTarget }[]>();
  for (const s of state.hosts) {
    const list: { to: string; target: ProbeTarget }[] = [];
    for (const t of state.hosts) {
      if (t.name === s.name || (only !== undefined && t.name !== only)) continue;
      const fam = [...familyOf(s)].find((x) => familyOf(t).has(x));
      if (fam === undefined) continue;
      const address = t.addresses.find((a) => isIP(a) === fam) as string;
      for (const proto of ['tcp', 'udp'] as const) {
        const allowed = mergePortRanges(
          flows
            .filter(
              (f) =>
                f.protocol === proto &&
                f.to.host === t.name &&
                (f.from.host === s.name || f.from.host === null),
            )
            .flatMap((f) => f.ports),
        );
        const candidates = subtractPorts(sitePorts[proto], allowed);
        const seed = `${state.key}|${s.name}|${t.name}|${proto}`;
        let ports = exhaustive
          ? candidates.flatMap(([lo, hi]) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i))
          : pick(candidates, proto === 'tcp' ? SAMPLE.tcpPlanned : SAMPLE.udpPlanned, seed);
        if (proto === 'tcp') {
          const anywhere = subtractPorts([[1, 65535]], mergePortRanges([...sitePorts.tcp, ...allowed]));
          ports = [...new Set([...ports, ...pick(anywhere, SAMPLE.tcpAny, `${seed}|any`)])];
        }
        for (const port of ports) list.push({ to: t.name, target: { address, protocol: proto, port } });
      }
    }
    out.set(s.name, list);
  }
  return out;
}
