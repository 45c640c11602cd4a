import { hostSecret, MAX_SKEW_SECONDS, RESPONDER_PROBES_IN_FLIGHT } from '../listen/protocol.js';
import type { Flow } from '../model/flow.js';
import type { PortRange } from '../model/ports.js';
import type { ServiceOutcome } from './conn.js';
import { type Lookup, resolveTarget, systemLookup, type Target } from './dns.js';
import { ERRNO_WORDS, verdictForErrno } from './errno.js';
import { identify } from './identify.js';
import { checkLimits, MAX_NAME_ADDRESSES, type PlannedProbes, plannedProbes } from './limits.js';
import { isUnanswered, type Neighbour, neighbourOf } from './neighbour.js';
import { isUnsynchronised, type NtpRequest, ntpRequest, parseNtpReply } from './ntp.js';
import { RateLimiter } from './rate.js';
import {
  type ResponderResult,
  readResponderReply,
  responderAwake,
  Slots,
  tcpResponderProbe,
  udpResponderProbe,
  udpResponderToken,
} from './responder.js';
import { noRouteDetail, type Route, routesTo } from './route.js';
import { type ReachItem, type ReachOutcome, type ReachProgress, reach } from './scheduler.js';
import { assertInScope, type Scope, type Selection } from './scope.js';
import { KIND_NAMES, serviceProbe, type TcpKind, tcpKind, type UdpKind, udpKind } from './services.js';
import { SweepPool, WORKER_THRESHOLD } from './sweep.js';
import { quietConnect, SILENT } from './tcp.js';
import {
  type Evidence,
  excerpt,
  type FlowResult,
  hintFor,
  isDynamicPort,
  isFailure,
  type PortResult,
  SIGNED_CLOSED,
  type Verdict,
  worst,
} from './verdict.js';

export interface CheckOptions {
  /** Shared secret of `portolan listen`: responders that answer it count as `ok (responder)`. */
  secret?: string;
  /** Per-attempt timeout before a peer has answered, and the ceiling of the learned one. */
  timeoutMs?: number;
  /** Floor of the learned timeout. */
  minTimeoutMs?: number;
  /** How long an application probe may wait for the service. */
  serviceTimeoutMs?: number;
  /** Connects (or UDP attempts) in flight at once. */
  concurrency?: number;
  /** Spaced attempts before a silent port is called filtered. */
  attempts?: number;
  /** Pause between rounds: at least the peer's ICMP refill interval (1 s on Linux). */
  spacingMs?: number;
  /** How long to keep retrying past `attempts` while late answers show ICMP rate limiting. */
  retryBudgetMs?: number;
  /** Sweep threads for large rounds (default: up to 2, the cores there are). */
  workers?: number;
  /**
   * A pool the caller made (and closes); otherwise one is made from `workers` for this check. Its
   * threads are started here once the check is planned, if it is large enough to use them.
   */
  pool?: SweepPool;
  lookup?: Lookup;
  /**
   * Most connects (TCP connects, UDP attempts, service and responder connects) started per second,
   * over all targets (--max-rate; see DEFAULT_MAX_RATE for the CLI's default). Absent or 0: no cap
   * beyond `concurrency`.
   */
  maxRate?: number;
  /** The limiter to pace connects with (tests inject one with their own clock); overrides maxRate. */
  limiter?: RateLimiter;
  /** Most probes (address x protocol x port) one check may make; default MAX_PROBES. */
  maxProbes?: number;
  /** Most addresses one DNS name may resolve to and all be probed; default MAX_NAME_ADDRESSES. */
  maxAddresses?: number;
  /** Called once targets are resolved, before any probe, with what will be probed. */
  onPlanned?: (p: PlannedProbes) => void;
  onProgress?: (p: CheckProgress) => void;
  /**
   * Called once the work is laid out, with a function that returns the report of what is decided
   * so far (flows whose every port has an outcome; open TCP ports whose service probe has not run
   * yet are open-unverified), marked `interrupted`. The CLI calls it on Ctrl-C.
   */
  onSnapshot?: (take: () => CheckReport) => void;
}

export interface CheckProgress extends Partial<ReachProgress> {
  phase: 'resolve' | 'reach' | 'service' | 'done';
  total: number;
  done: number;
  /** What is being checked now, in words (the service phase names the address, port and service). */
  current?: string;
}

export const DEFAULTS = {
  timeoutMs: 1000,
  minTimeoutMs: 100,
  serviceTimeoutMs: 5000,
  concurrency: 8192,
  attempts: 3,
  spacingMs: 1000,
  retryBudgetMs: 20000,
} as const;

export interface CheckReport {
  site: string;
  from: readonly string[];
  how: string;
  startedAt: string;
  durationMs: number;
  results: FlowResult[];
  failed: boolean;
  /** Ports probed per verdict, over all flows (a port shared by two flows counts twice). */
  counts: Partial<Record<Verdict, number>>;
  /** What the reader must know to trust the results (e.g. a --from host that is not this machine). */
  warnings?: readonly string[];
  /** Flows per headline verdict: what the table's last line counts (computed from results when absent). */
  flowCounts?: Partial<Record<Verdict, number>>;
  /** Connects per second the check was capped at (--max-rate); absent when uncapped. */
  maxRate?: number;
  /** Set when the check was stopped (Ctrl-C): only the flows decided by then are in `results`. */
  interrupted?: boolean;
  /** Flows selected but left out because the check was interrupted before they were decided. */
  undecided?: number;
}

interface UdpContext {
  ntp?: NtpRequest;
  token?: ReturnType<typeof udpResponderToken>;
}

interface FlowWork {
  flow: Flow;
  target: Target;
  items: ReachItem[];
}

/** Ports of `flow` within the selection's ports (all of them without a port selection). */
function portsOf(flow: Flow, only: readonly PortRange[] | undefined): PortRange[] {
  if (!only) return [...flow.ports];
  const out: PortRange[] = [];
  for (const [lo, hi] of flow.ports)
    for (const [a, b] of only) {
      const x = Math.max(lo, a);
      const y = Math.min(hi, b);
      if (x <= y) out.push([x, y]);
    }
  return out;
}

function memoLookup(lookup: Lookup): Lookup {
  const cache = new Map<string, Promise<string[]>>();
  return (name) => {
    let p = cache.get(name);
    if (!p) {
      p = lookup(name);
      cache.set(name, p);
    }
    return p;
  };
}

async function pool<T>(tasks: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const run = async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await (tasks[i] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, tasks.length) }, run));
  return out;
}

/**
 * Probes the selected flows of a scope (all of them by default) and returns a verdict per flow and
 * port. Refuses any flow that is not one of the scope's own (the plan is the scope).
 */
export async function runCheck(
  scope: Scope,
  options: CheckOptions = {},
  selection?: Selection,
): Promise<CheckReport> {
  const sel: Selection = selection ?? { flows: scope.flows };
  assertInScope(scope, sel);
  const o = {
    timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
    minTimeoutMs: Math.min(
      options.minTimeoutMs ?? DEFAULTS.minTimeoutMs,
      options.timeoutMs ?? DEFAULTS.timeoutMs,
    ),
    serviceTimeoutMs: options.serviceTimeoutMs ?? Math.max(DEFAULTS.serviceTimeoutMs, options.timeoutMs ?? 0),
    concurrency: options.concurrency ?? DEFAULTS.concurrency,
    attempts: options.attempts ?? DEFAULTS.attempts,
    spacingMs: options.spacingMs ?? DEFAULTS.spacingMs,
    retryBudgetMs: options.retryBudgetMs ?? DEFAULTS.retryBudgetMs,
  };
  const secret = options.secret;
  const progress = options.onProgress;
  const limiter = options.limiter ?? (options.maxRate ? new RateLimiter(options.maxRate) : undefined);
  const rate = limiter ? { maxRate: limiter.rate } : {};
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const lookup = memoLookup(options.lookup ?? systemLookup);

  progress?.({ phase: 'resolve', total: sel.flows.length, done: 0 });
  const work: FlowWork[] = [];
  for (const flow of sel.flows)
    work.push({ flow, target: await targetOf(flow, scope, sel, lookup), items: [] });

  // A DNS name's addresses this machine has no route to are left out before the check is sized,
  // so the count said and bounded is what is probed (the route look-up sends no packet). A name
  // with more addresses than one name may have probed is left whole: checkLimits refuses it.
  const maxAddresses = options.maxAddresses ?? MAX_NAME_ADDRESSES;
  const nameRoutes = await routesTo(
    work.flatMap((w) =>
      w.target.kind === 'probe' &&
      w.target.servername !== undefined &&
      w.target.addresses.length > 1 &&
      w.target.addresses.length <= maxAddresses
        ? w.target.addresses
        : [],
    ),
  );
  for (const w of work) w.target = withoutUnroutable(w.target, nameRoutes);

  // The size of the check, said and bounded before the first packet.
  const planned = plannedProbes(
    work.map((w) => ({ flow: w.flow, target: w.target, ports: portsOf(w.flow, sel.ports) })),
  );
  checkLimits(planned, {
    ...(options.maxProbes !== undefined ? { maxProbes: options.maxProbes } : {}),
    ...(options.maxAddresses !== undefined ? { maxAddresses: options.maxAddresses } : {}),
  });
  options.onPlanned?.(planned);
  // Sweep threads start now, while the work is laid out, when the check is large enough to use
  // them (a rate-capped sweep stays on this thread, see SweepPool.run): a check of a few ports, or
  // one under --max-rate, never pays for a thread (~40 ms of CPU and ~10 MB each).
  const sweepPool = options.pool ?? SweepPool.auto(options.workers);
  if (!limiter && planned.probes >= WORKER_THRESHOLD) sweepPool.warm();

  // The route to each address: where the probes leave from, or that they cannot leave at all.
  const routes = await routesTo(
    work.flatMap((w) => (w.target.kind === 'probe' ? w.target.addresses : [])),
    nameRoutes,
  );

  // One reachability item per (address, protocol, port), shared by the flows that name it (a plan
  // may name all 65535 ports of many addresses).
  // Per (address, protocol): its items, and by port once a second look-up may find one (a range
  // of one flow is tens of thousands of new ports, in increasing order: no map needed for those).
  const groups = new Map<string, { items: ReachItem[]; byPort?: Map<number, ReachItem> }>();
  const udpKinds = new Map<ReachItem, Set<UdpKind>>();
  const all: ReachItem[] = [];
  for (const w of work) {
    if (w.target.kind !== 'probe') continue;
    const protocol = w.flow.protocol as 'tcp' | 'udp';
    const kind = protocol === 'udp' ? udpKind(w.flow) : undefined;
    // Responder probes are signed for the target host (see hostSecret).
    const key = secret && w.flow.to.host ? hostSecret(secret, w.flow.to.host) : undefined;
    for (const { address, family } of w.target.addresses) {
      const groupKey = `${address}|${protocol}`;
      let group = groups.get(groupKey);
      // A group new to this flow holds no port above the last one this pass made.
      const fresh = !group;
      let last = -1;
      if (!group) {
        group = { items: [] };
        groups.set(groupKey, group);
      }
      const g = group;
      for (const [lo, hi] of portsOf(w.flow, sel.ports))
        for (let port = lo; port <= hi; port++) {
          let item: ReachItem | undefined;
          if (!fresh || port <= last) {
            g.byPort ??= new Map(g.items.map((i) => [i.port, i]));
            item = g.byPort.get(port);
          }
          if (!item) {
            item = { address, family, protocol, port, attempts: 0, outcome: undefined };
            const route = routes.get(address);
            if (route && 'errno' in route)
              item.outcome = { kind: 'error', errno: route.errno, rttMs: 0, local: true };
            g.items.push(item);
            g.byPort?.set(port, item);
            if (port > last) last = port;
            all.push(item);
            if (protocol === 'udp') {
              const kinds = new Set<UdpKind>();
              udpKinds.set(item, kinds);
              item.udp = () => udpAttemptFor(port, kinds, key);
            }
          }
          if (kind) udpKinds.get(item)?.add(kind);
          w.items.push(item);
        }
    }
  }
  const services = new Map<string, ServiceOutcome>();
  // What the probes learnt besides verdicts, filled in as the check goes (a snapshot sees what is known).
  const found: Found = {
    routes,
    rtts: new Map(),
    neighbours: new Map(),
    natSeen: new Map(),
    signedRejected: new Set(),
    loss: new Map(),
  };
  options.onSnapshot?.(() => {
    const { results, counts } = collect(work, services, secret, true, found);
    return {
      site: scope.site,
      from: scope.from,
      how: scope.how,
      startedAt,
      durationMs: Math.round(performance.now() - t0),
      results,
      failed: results.some((r) => r.failed),
      counts,
      flowCounts: countFlows(results),
      interrupted: true,
      undecided: work.length - results.length,
      warnings: scope.warnings,
      ...rate,
    };
  });
  try {
    await reach(
      all.filter((i) => !i.outcome),
      {
        ...o,
        pool: sweepPool,
        ...(limiter ? { limiter } : {}),
        onProgress: (p) => progress?.({ phase: 'reach', ...p }),
      },
    );
  } finally {
    if (!options.pool) await sweepPool.close();
  }
  await localUnreachable(all, routes);
  found.loss = lossOf(all);
  const rtts = await quietRtts(all, o.timeoutMs, limiter);
  found.rtts = rtts;
  found.neighbours = await silentNeighbours(all);

  // Application probes on open TCP ports, once per (address, port, kind).
  const jobs = new Map<string, () => Promise<ServiceOutcome>>();
  const responderWait = Math.min(o.serviceTimeoutMs, 2000);
  // Signed probes in flight, sized from the responder's per-source share (one shared budget).
  const responderSlots = new Slots(RESPONDER_PROBES_IN_FLIGHT);
  // Per address: the source address a responder saw, where it differs from ours (NAT).
  const natSeen = found.natSeen;
  // Ports whose signed probe met silence, a close with no reply or resets (TCP), or whose signed
  // datagrams all went unanswered (UDP): asked again below where the responder is known to run.
  const silentResponder = new Map<string, SilentPort>();
  // Ports whose signed probe and service probe were both closed without a byte: the outcome given
  // (the signed probe rejected) and the service probe's own.
  const signedClosed = new Map<string, { rewritten: ServiceOutcome; first: ServiceOutcome }>();
  for (const w of work)
    for (const item of w.items) {
      if (item.protocol !== 'tcp' || item.outcome?.kind !== 'open') continue;
      const kind = tcpKind(w.flow, item.port);
      const key = `${item.address}|${item.port}|${kind}`;
      if (jobs.has(key)) continue;
      const servername = w.target.kind === 'probe' ? w.target.servername : undefined;
      const rttMs = rtts.get(item.address);
      let closedUnanswered = false;
      jobs.set(key, async () => {
        const out = await probePort();
        // The signed probe closed without a reply and the service probe got no byte back either:
        // what a running portolan listen does with a probe signed with another secret or for
        // another host name (it closes the signed probe, then resets or ignores the service's own
        // opening). Both ports get the same verdict, open-unverified (connected, not proven), with
        // that as the reason; a service that answered keeps its own verdict.
        if (closedUnanswered && !out.evidence.bytesSeen && SIGNED_CLOSE_VERDICTS.has(out.verdict)) {
          const rewritten: ServiceOutcome = {
            verdict: 'open-unverified',
            detail: `${SIGNED_CLOSED}${kind === 'plain' ? '' : `; then ${out.detail}`}`,
            evidence: out.evidence,
          };
          signedClosed.set(key, { rewritten, first: out });
          return rewritten;
        }
        return out;
      });
      const probePort = async (): Promise<ServiceOutcome> => {
        let miss = '';
        if (secret && w.flow.to.host) {
          const r = await tcpResponderProbe(
            hostSecret(secret, w.flow.to.host),
            item.address,
            item.port,
            responderWait,
            responderSlots,
            limiter,
          );
          if (r.seenFrom && r.sentFrom && r.seenFrom !== r.sentFrom)
            natSeen.set(
              item.address,
              `the target saw you as ${r.seenFrom}, not ${r.sentFrom}: NAT between you`,
            );
          if (r.ok) return { verdict: 'ok (responder)', detail: r.detail, evidence: r.evidence };
          // The responder's own finding is kept: a reset once data flowed decides the port. A
          // reset is also how a responder refuses for load, so it is asked again below too.
          if (r.verdict === 'reset-after-connect')
            silentResponder.set(key, { address: item.address, port: item.port, host: w.flow.to.host });
          if (r.verdict) return { verdict: r.verdict, detail: r.detail, evidence: r.evidence };
          miss = `; ${r.detail}`;
          if (r.closed && !r.evidence.bytesSeen) closedUnanswered = true;
          // Silence, a close with no reply, or a connect that failed although the reachability
          // pass connected: undecided, and asked again below (other bytes back decide the port).
          if (!r.evidence.bytesSeen)
            silentResponder.set(key, { address: item.address, port: item.port, host: w.flow.to.host });
        }
        if (kind === 'plain')
          return {
            verdict: 'open-unverified',
            detail: `TCP connect${rttMs !== undefined ? ` in ${rttMs} ms` : ''}${miss}; ${w.flow.service} is not a service portolan can recognise on the wire`,
            evidence: {},
          };
        const ctx = {
          address: item.address,
          port: item.port,
          timeoutMs: o.serviceTimeoutMs,
          ...(servername ? { servername } : {}),
          ...(limiter ? { limiter } : {}),
        };
        return serviceProbe(kind, ctx);
      };
    }
  const keys = [...jobs.keys()];
  progress?.({ phase: 'service', total: keys.length, done: 0 });
  let servicesDone = 0;
  await pool(
    keys.map((key) => async (): Promise<ServiceOutcome> => {
      let out: ServiceOutcome;
      try {
        out = await (jobs.get(key) as () => Promise<ServiceOutcome>)();
      } catch (err) {
        // One peer's odd answer must not cost the whole check its report.
        out = {
          verdict: 'open-unverified',
          detail: `the service probe failed: ${(err as Error).message}`,
          evidence: {},
        };
      }
      services.set(key, out);
      progress?.({
        phase: 'service',
        total: keys.length,
        done: ++servicesDone,
        current: key.replaceAll('|', ' '),
      });
      return out;
    }),
    Math.max(1, Math.min(256, o.concurrency)),
  );
  if (secret) {
    // A UDP port whose signed datagrams all went unanswered: a responder that answers its TCP
    // ports may have been too busy for them (its event loop stalled by a burst of connects, and
    // its late replies met a closed socket), so it is asked again with them.
    for (const w of work) {
      const host = w.flow.to.host;
      if (w.flow.protocol !== 'udp' || !host) continue;
      for (const item of w.items) {
        const key = udpServiceKey(item);
        if (item.outcome?.kind === 'silent' && !silentResponder.has(key))
          silentResponder.set(key, { address: item.address, port: item.port, host, protocol: 'udp' });
      }
    }
    await askSilentAgain(secret, silentResponder, services, responderSlots, o.serviceTimeoutMs * 2, limiter);
  }
  // A responder that answered another port of the address with the same key took the secret and
  // the name: a port it left unanswered is not a mismatch, and keeps its service probe's finding.
  for (const [key, { rewritten, first }] of signedClosed) {
    const address = key.split('|')[0];
    const answered = [...services].some(
      ([k, out]) => out.verdict === 'ok (responder)' && k.split('|')[0] === address,
    );
    if (answered) {
      if (services.get(key) === rewritten) services.set(key, first);
    } else if (address !== undefined) found.signedRejected.add(address);
  }

  const { results, counts } = collect(work, services, secret, false, found);
  progress?.({ phase: 'done', total: results.length, done: results.length });
  return {
    site: scope.site,
    from: scope.from,
    how: scope.how,
    startedAt,
    durationMs: Math.round(performance.now() - t0),
    results,
    failed: results.some((r) => r.failed),
    counts,
    flowCounts: countFlows(results),
    warnings: scope.warnings,
    ...rate,
  };
}

export function countFlows(results: readonly FlowResult[]): Partial<Record<Verdict, number>> {
  const out: Partial<Record<Verdict, number>> = {};
  for (const r of results) out[r.verdict] = (out[r.verdict] ?? 0) + 1;
  return out;
}

/** Per address: the route, the quiet RTT, the neighbour entry of a silent target, what a responder saw. */
interface Found {
  routes: ReadonlyMap<string, Route>;
  rtts: Map<string, number>;
  neighbours: Map<string, Neighbour>;
  natSeen: Map<string, string>;
  /**
   * Addresses whose responder closed a signed TCP probe without a reply and answered none: it
   * rejects this check's probes (another secret, host name or clock), and ignores its signed
   * datagrams the same way, so a silent UDP port there proves nothing.
   */
  signedRejected: Set<string>;
  /**
   * Per address: TCP connects to ports that connected in the end, and how many of them went
   * unanswered first (lossOf); only addresses with such a loss are here.
   */
  loss: Map<string, { unanswered: number; connects: number; first: number }>;
}

/**
 * The least chance (0.01) that a port of an address losing connects at random goes unanswered on
 * every one of its tries, for its silence to be put down to that loss (`intermittent`) rather than
 * to a rule for the port (`filtered`): with a loss rate p measured on the address's other ports,
 * n silent tries have the chance p^n.
 */
const INTERMITTENT_MIN_CHANCE = 0.01;

/**
 * The connect loss of each address, measured only once the address had answered: a TCP port is
 * tried once per round until it connects (`attempts` is then the round it connected in), and
 * `first` is the earliest round in which some port of the address connected. Before that round
 * nothing of the address answered at all (an IPv6 address still in duplicate address detection,
 * a neighbour not yet resolved, a host coming up), which is no random loss; from the next round on,
 * a port that connected only after unanswered tries shows connects lost at random. `unanswered`
 * counts those tries, `connects` every try made after round `first` by the ports that connected.
 * An address without such a loss is left out.
 */
export function lossOf(
  items: readonly {
    address: string;
    protocol: string;
    attempts: number;
    outcome?: { kind: string } | undefined;
  }[],
): Map<string, { unanswered: number; connects: number; first: number }> {
  const first = new Map<string, number>();
  for (const i of items) {
    if (i.protocol !== 'tcp' || i.outcome?.kind !== 'open' || i.attempts < 1) continue;
    const f = first.get(i.address);
    if (f === undefined || i.attempts < f) first.set(i.address, i.attempts);
  }
  const out = new Map<string, { unanswered: number; connects: number; first: number }>();
  for (const i of items) {
    if (i.protocol !== 'tcp' || i.outcome?.kind !== 'open' || i.attempts < 1) continue;
    const f = first.get(i.address) as number;
    if (i.attempts <= f) continue;
    let l = out.get(i.address);
    if (!l) {
      l = { unanswered: 0, connects: 0, first: f };
      out.set(i.address, l);
    }
    l.unanswered += i.attempts - f - 1;
    l.connects += i.attempts - f;
  }
  for (const [a, l] of out) if (!l.unanswered) out.delete(a);
  return out;
}

/**
 * Whether a TCP port silent on all its `attempts` is better put down to the address's random loss
 * (`loss`, from lossOf) than to a rule for the port: counting only its tries after round
 * `loss.first` (when the address was known to answer), the chance of that many losses in a row is
 * at least INTERMITTENT_MIN_CHANCE.
 */
export function isIntermittent(
  attempts: number,
  loss: { unanswered: number; connects: number; first: number } | undefined,
): boolean {
  if (!loss?.connects) return false;
  const tries = attempts - loss.first;
  if (tries < 1) return false;
  return (loss.unanswered / loss.connects) ** tries >= INTERMITTENT_MIN_CHANCE;
}

/**
 * Verdicts per flow from the reach outcomes and service probes. With `partial`, flows with a port
 * still undecided are left out, and an open TCP port without its service probe is open-unverified.
 */
function collect(
  work: readonly FlowWork[],
  services: ReadonlyMap<string, ServiceOutcome>,
  secret: string | undefined,
  partial: boolean,
  found: Found,
): { results: FlowResult[]; counts: Partial<Record<Verdict, number>> } {
  const results: FlowResult[] = [];
  const counts: Partial<Record<Verdict, number>> = {};
  // The addresses where a responder answered some signed probe of this check: there, a port it
  // refuses was not bound; elsewhere, listen is more likely not running at all.
  const responderAt = new Set<string>();
  for (const [k, s] of services)
    if (s.verdict === 'ok (responder)') responderAt.add(k.slice(0, k.indexOf('|')));
  for (const w of work) {
    const { flow, target } = w;
    if (target.kind !== 'probe') {
      const verdict: Verdict = target.kind === 'skipped' ? 'skipped' : 'dns-failed';
      counts[verdict] = (counts[verdict] ?? 0) + 1;
      results.push({
        flow,
        verdict,
        failed: isFailure(verdict),
        addresses: [],
        results: [],
        reason: target.reason,
        hint: hintFor(flow, verdict),
      });
      continue;
    }
    if (partial && w.items.some((i) => !i.outcome)) continue;
    const ports: PortResult[] = new Array(w.items.length);
    const key = secret && flow.to.host ? hostSecret(secret, flow.to.host) : undefined;
    // Per verdict: how many ports, and the first of them (the flow's example).
    const tally = new Map<Verdict, { n: number; first: PortResult }>();
    // What the results of one address share: items come in runs of one address, and a range's
    // refused ports share one evidence object per (errno, attempts), its silent ones one per
    // (attempts, rateLimited) (see portResult).
    let address: string | undefined;
    let route: Route | undefined;
    let rttMs: number | undefined;
    let neighbour: Neighbour | undefined;
    let shared = new Map<string, Evidence>();
    // The last one handed out, and what it was for: consecutive ports nearly always end alike.
    let last: { errno: string | undefined; attempts: number; rateLimited: boolean; e: Evidence } | undefined;
    const sharedEvidence: SharedEvidence = (errno, attempts, rateLimited) => {
      if (last && last.errno === errno && last.attempts === attempts && last.rateLimited === rateLimited)
        return last.e;
      const id = `${errno ?? ''} ${attempts}${rateLimited ? ' r' : ''}`;
      let e = shared.get(id);
      if (!e) {
        if (errno === undefined) e = rateLimited ? { attempts, rateLimited } : { attempts };
        else e = rttMs !== undefined ? { errno, rttMs, attempts } : { errno, attempts };
        if (route && 'source' in route) e.source = route.source;
        shared.set(id, e);
      }
      last = { errno, attempts, rateLimited, e };
      return e;
    };
    // The addresses on which some port of a range the product assigns at run time connected: only
    // there does a reset on the range's other ports show the path open (see portResult).
    const rangeAnswered = flow.dynamicPorts?.length ? answeredOnRange(flow, w.items) : undefined;
    for (let k = 0; k < w.items.length; k++) {
      const item = w.items[k] as ReachItem;
      if (item.address !== address) {
        address = item.address;
        route = found.routes.get(address);
        rttMs = found.rtts.get(address);
        neighbour = found.neighbours.get(address);
        shared = new Map();
        last = undefined;
      }
      const open = item.outcome?.kind === 'open';
      // Only open TCP ports and UDP results depend on the service (the probe that spoke to it).
      const kind = item.protocol === 'udp' ? udpKind(flow) : open ? tcpKind(flow, item.port) : 'plain';
      const svc = open
        ? (services.get(`${item.address}|${item.port}|${kind}`) ??
          (partial
            ? {
                verdict: 'open-unverified',
                detail: `TCP connect in ${item.outcome?.kind === 'open' ? item.outcome.rttMs : '?'} ms; interrupted before the service probe`,
                evidence: {},
              }
            : undefined))
        : item.protocol === 'udp'
          ? services.get(udpServiceKey(item))
          : undefined;
      const r = portResult(
        item,
        flow,
        kind,
        svc,
        key,
        rttMs,
        neighbour,
        sharedEvidence,
        found.signedRejected.has(item.address),
        rangeAnswered?.has(item.address) ?? false,
        found.loss.get(item.address),
      );
      if (route && 'source' in route) {
        // Last of the evidence's keys; a shared evidence object has it already.
        if (r.evidence.source !== route.source) r.evidence.source = route.source;
        // A signed UDP reply says which address the responder saw, as a TCP one does.
        const seen = r.evidence.seenFrom;
        if (seen && seen !== route.source)
          found.natSeen.set(
            item.address,
            `the target saw you as ${seen}, not ${route.source}: NAT between you`,
          );
      }
      ports[k] = r;
      const t = tally.get(r.verdict);
      if (t) t.n++;
      else tally.set(r.verdict, { n: 1, first: r });
    }
    for (const [v, t] of tally) counts[v] = (counts[v] ?? 0) + t.n;
    const verdict = worst(tally.keys()) ?? 'skipped';
    if (!ports.length) counts[verdict] = (counts[verdict] ?? 0) + 1;
    const example = tally.get(verdict)?.first;
    // The ports with the headline verdict, as ranges, so a hint names a whole range.
    const same: [number, number][] = [];
    for (const r of ports)
      if (r.verdict === verdict && (!example || r.address === example.address)) {
        const last = same[same.length - 1];
        if (last && last[1] + 1 === r.port) last[1] = r.port;
        else if (!last || last[1] < r.port) same.push([r.port, r.port]);
      }
    results.push({
      flow,
      verdict,
      failed: isFailure(verdict),
      addresses: target.addresses.map((a) => a.address),
      results: ports,
      ...(target.note ? { reason: target.note } : ports.length ? {} : { reason: 'no ports selected' }),
      hint: `${hintFor(flow, verdict, example, same, key !== undefined, example !== undefined && responderAt.has(example.address))}${someAddresses(target, ports)}`,
    });
  }
  // Notes last: a UDP reply of a later flow can be what shows NAT toward an address.
  for (const r of results) {
    const notes = [...new Set(r.addresses.flatMap((a) => found.natSeen.get(a) ?? []))];
    if (notes.length) r.notes = notes;
  }
  return { results, counts };
}

/**
 * For a DNS name with several addresses, where a port fails on some of them and passes (any
 * verdict that is not a failure) on others: what that means for a client, which picks among the
 * name's addresses (RFC 6724 order; Happy Eyeballs, RFC 8305, tries the next after 250 ms), as a
 * sentence to end the hint with; '' otherwise.
 */
function someAddresses(target: Target, ports: readonly PortResult[]): string {
  if (target.kind !== 'probe' || !target.servername || target.addresses.length < 2) return '';
  const failing = new Set<string>();
  const passing = new Set<string>();
  for (const r of ports) (isFailure(r.verdict) ? failing : passing).add(r.address);
  const bad = [...failing].filter((a) => !passing.has(a));
  const good = [...passing].filter((a) => !failing.has(a));
  if (!bad.length || !good.length) return '';
  const list = (xs: string[]) => xs.join(', ');
  return `. ${target.servername} has several addresses, and this fails on ${list(bad)} only (${list(good)} ${good.length > 1 ? 'pass' : 'passes'}): a client that moves on to the next address gets through late (Happy Eyeballs, RFC 8305, after 250 ms; one that tries the addresses in turn, only once a connect has failed, which is a timeout of minutes for a drop), and one that uses only the first address it is given fails whenever that is ${bad.length > 1 ? 'one of these' : 'this one'} (IPv6 first when both ends have IPv6, RFC 6724)`;
}

/**
 * A DNS name that resolves to several addresses, some of which this machine has no route to
 * (ENETUNREACH: an AAAA record seen from a machine with no IPv6 route, the commonest case): a
 * client here never sends to those, it connects to the next address (getaddrinfo sorts
 * unusable destinations last, RFC 6724 6 rule 1, and a connect to one fails at once), so they are
 * left out of the target with a note that says so. When no address has a route, all stay, and
 * each is `no-route`.
 */
export function withoutUnroutable(target: Target, routes: ReadonlyMap<string, Route>): Target {
  if (target.kind !== 'probe' || target.servername === undefined || target.addresses.length < 2)
    return target;
  const unroutable = (a: string) => {
    const r = routes.get(a);
    return r !== undefined && 'errno' in r && r.errno === 'ENETUNREACH';
  };
  const gone = target.addresses.filter((a) => unroutable(a.address));
  if (!gone.length || gone.length === target.addresses.length) return target;
  const list = gone.map((a) => a.address).join(', ');
  const why = `${list} left out: this machine has no route to ${gone.length > 1 ? 'them' : 'it'} (ENETUNREACH), so a client here connects to ${target.servername}'s other ${target.addresses.length - gone.length > 1 ? 'addresses' : 'address'} instead (getaddrinfo sorts unusable destinations last, RFC 6724 rule 1)`;
  return {
    ...target,
    addresses: target.addresses.filter((a) => !unroutable(a.address)),
    note: target.note ? `${target.note}; ${why}` : why,
  };
}

/**
 * A flow's target, narrowed to the one address of `--to ADDR` (Selection.address) when given: a
 * CIDR host that contains ADDR is probed at ADDR alone, whatever its size.
 */
async function targetOf(flow: Flow, scope: Scope, sel: Selection, lookup: Lookup): Promise<Target> {
  const only = sel.address;
  const host = scope.hosts.find((h) => h.name === flow.to.host);
  if (only === undefined || flow.local || !host || host.address.kind !== 'cidr' || flow.protocol === 'icmp')
    return resolveTarget(flow, scope.hosts, lookup);
  return {
    kind: 'probe',
    addresses: [{ address: only, family: host.address.version }],
    note: `--to ${only}: one address of ${host.address.text}`,
  };
}

/**
 * A TCP connect that failed with ENETUNREACH may be an ICMP net unreachable from a router (the
 * path) or this machine's own missing route (an interface that went down mid-check). The route
 * is looked up again: when this machine has none now, the error was local.
 */
async function localUnreachable(items: readonly ReachItem[], routes: Map<string, Route>): Promise<void> {
  const hit = items.filter(
    (i) => i.outcome?.kind === 'error' && i.outcome.errno === 'ENETUNREACH' && !i.outcome.local,
  );
  if (!hit.length) return;
  const again = await routesTo(hit);
  for (const i of hit) {
    const r = again.get(i.address);
    if (r && 'errno' in r && i.outcome?.kind === 'error') {
      i.outcome.local = true;
      routes.set(i.address, r);
    }
  }
}

/**
 * A responder busy with other sources' range checks (on a loaded machine) can take longer than the
 * first wait, and refuses connections for load with a reset: where it answered other ports of the
 * same address, every port whose signed probe went undecided (silence, a close or resets with no
 * reply, a connect that failed although the reachability pass connected; a UDP port whose signed
 * datagrams all went unanswered) is asked again in rounds until its answer is decided. Each round starts once a pilot probe to a port that responder
 * answered is answered again (a responder stalled for minutes by a burst of connects is waited
 * for, up to RESPONDER_PATIENCE_MS), and each second ask runs beside a pilot probe: a port left
 * unanswered while the pilot beside it was answered is a strike against the port (something other
 * than the responder holds it, or an IPS resets it); a port and its pilot both unanswered is the
 * responder stalling again, which proves nothing about the port and ends the round. After
 * MISS_STRIKES strikes a port keeps its own finding (open-unverified, or reset-after-connect; a
 * UDP port open|filtered, or filtered for NTP);
 * ports still undecided when the pilot stays unanswered past the patience, or after SILENT_ROUNDS
 * rounds, are `responder-overloaded` (failing): never open-unverified for a responder that was
 * merely slow.
 */
async function askSilentAgain(
  secret: string,
  silent: ReadonlyMap<string, SilentPort>,
  services: Map<string, ServiceOutcome>,
  slots: Slots,
  waitMs: number,
  limiter?: RateLimiter,
): Promise<void> {
  // Per address, one port its responder answered: the pilot that tells a busy responder from a
  // port where something else listens in silence.
  const answered = new Map<string, number>();
  for (const [key, out] of services)
    if (out.verdict === 'ok (responder)') {
      const [address = '', port = ''] = key.split('|');
      if (!answered.has(address)) answered.set(address, Number(port));
    }
  const strikes = new Map<string, number>();
  const overloaded = (key: string, why: string) => {
    const first = services.get(key);
    services.set(key, {
      verdict: 'responder-overloaded',
      detail: `the responder answered other ports of this address but not this one: ${why}${first ? `; first ask: ${first.detail}` : ''}`,
      evidence: first?.evidence ?? {},
    });
  };
  let again = [...silent].filter(([, s]) => answered.has(s.address));
  for (let round = 0; round < SILENT_ROUNDS && again.length; round++) {
    // Backoff between rounds: a responder still digesting a burst gets time, not more connects.
    if (round) await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** Math.min(round, 7), 30_000)));
    const awake = new Set<string>();
    const asleep = new Map<string, string>();
    await Promise.all(
      [...new Set(again.map(([, s]) => s.address))].map(async (address) => {
        const host = again.find(([, s]) => s.address === address)?.[1].host ?? '';
        const port = answered.get(address) as number;
        const r = await responderAwake(
          hostSecret(secret, host),
          address,
          port,
          RESPONDER_PATIENCE_MS,
          slots,
          limiter,
        );
        if (r.awake) awake.add(address);
        else asleep.set(address, r.detail);
      }),
    );
    for (const [key, s] of again) {
      const why = asleep.get(s.address);
      if (why !== undefined) overloaded(key, why);
    }
    const asked = again.filter(([, s]) => awake.has(s.address));
    const still: typeof again = [];
    // Per address: the responder stalled during this round; the ports not yet asked wait for the next.
    const stalled = new Set<string>();
    // Each ask is a pair of probes (the port and its pilot): half the slots in pairs.
    let next = 0;
    // UDP asks of one address that start together share one pilot: a datagram costs the responder
    // nothing to hold, so the pilot answered in the same window shows it was awake for all of them
    // (a range a firewall drops would otherwise cost a signed TCP probe per port and round).
    const udpPilots = new Map<string, Promise<ResponderResult>>();
    const pilotFor = (s: SilentPort, hostKey: string, pilotPort: number): Promise<ResponderResult> => {
      if (s.protocol !== 'udp')
        return tcpResponderProbe(hostKey, s.address, pilotPort, waitMs, slots, limiter);
      const shared = `${s.host}|${s.address}`;
      let p = udpPilots.get(shared);
      if (!p) {
        p = tcpResponderProbe(hostKey, s.address, pilotPort, waitMs, slots, limiter);
        udpPilots.set(shared, p);
        const mine = p;
        void p.finally(() => {
          if (udpPilots.get(shared) === mine) udpPilots.delete(shared);
        });
      }
      return p;
    };
    const ask = async ([key, s]: (typeof asked)[number]) => {
      if (stalled.has(s.address)) return still.push([key, s]);
      const hostKey = hostSecret(secret, s.host);
      const pilotPort = answered.get(s.address) as number;
      const [r, pilot] = await Promise.all([
        s.protocol === 'udp'
          ? udpResponderProbe(hostKey, s.address, s.port, waitMs, limiter)
          : tcpResponderProbe(hostKey, s.address, s.port, waitMs, slots, limiter),
        pilotFor(s, hostKey, pilotPort),
      ]);
      if (r.ok) {
        services.set(key, { verdict: 'ok (responder)', detail: r.detail, evidence: r.evidence });
        return;
      }
      // Something other than a responder answered: decided.
      if (r.verdict && r.verdict !== 'reset-after-connect') {
        services.set(key, { verdict: r.verdict, detail: r.detail, evidence: r.evidence });
        return;
      }
      if (!pilot.ok) {
        stalled.add(s.address);
        return still.push([key, s]);
      }
      const n = (strikes.get(key) ?? 0) + 1;
      strikes.set(key, n);
      // A UDP port was already tried with spaced signed datagrams in the reachability pass: one more
      // unanswered while the responder answered its pilot decides it (a firewall drops it, or
      // something else holds it), where a TCP ask, whose connects a busy responder may refuse, gets
      // MISS_STRIKES.
      if (n < (s.protocol === 'udp' ? 1 : MISS_STRIKES)) return still.push([key, s]);
      if (r.verdict) services.set(key, { verdict: r.verdict, detail: r.detail, evidence: r.evidence });
    };
    await Promise.all(
      Array.from({ length: Math.max(1, RESPONDER_PROBES_IN_FLIGHT / 2) }, async () => {
        while (next < asked.length) await ask(asked[next++] as (typeof asked)[number]);
      }),
    );
    again = still;
  }
  for (const [key] of again)
    overloaded(key, `still undecided after ${SILENT_ROUNDS} rounds of asking again while it was busy`);
}

/** A port whose signed probe went unanswered, to ask again (askSilentAgain); TCP unless `protocol` says UDP. */
interface SilentPort {
  address: string;
  port: number;
  /** The inventory host the probe is signed for. */
  host: string;
  protocol?: 'udp';
}

/** Where askSilentAgain's finding for a UDP port is kept in the services map (TCP keys end in a TcpKind). */
function udpServiceKey(item: { address: string; port: number }): string {
  return `${item.address}|${item.port}|udp`;
}

/** Service probe verdicts that a responder rejecting the signed probe explains when no byte came back. */
const SIGNED_CLOSE_VERDICTS: ReadonlySet<Verdict> = new Set([
  'open-unverified',
  'reset-after-connect',
  'tls-failed',
]);

/**
 * Rounds of second asks for undecided signed probes; how long a pilot may go unanswered before the
 * responder is called overloaded (ms); asks of one port unanswered while its pilot was answered
 * before the port keeps its own finding.
 */
const SILENT_ROUNDS = 40;
const RESPONDER_PATIENCE_MS = 300_000;
const MISS_STRIKES = 3;

function udpAttemptFor(port: number, kinds: ReadonlySet<UdpKind>, secret: string | undefined) {
  const payloads: Buffer[] = [];
  const context: UdpContext = {};
  if (kinds.has('ntp')) {
    const r = ntpRequest();
    payloads.push(r.packet);
    context.ntp = r;
  }
  if (secret) {
    const token = udpResponderToken(secret, port);
    payloads.push(Buffer.from(token.line, 'latin1'));
    context.token = token;
  }
  // An empty datagram is enough to draw an ICMP port unreachable from a closed port.
  if (!payloads.length) payloads.push(Buffer.alloc(0));
  return { payloads, context };
}

/** Ranges yield tens of thousands of errors: one detail string per errno and attempt count. */
const ERROR_DETAILS = new Map<string, string[]>();

/** "no answer to N spaced connects" with its reason, one string per (attempts, reason) for all ports. */
const SILENT_DETAILS = new Map<string, string>();
function silentDetail(attempts: number, why: string): string {
  const key = `${attempts}${why}`;
  let detail = SILENT_DETAILS.get(key);
  if (detail === undefined) {
    detail = `no answer to ${attempts === 1 ? '1 connect' : `${attempts} spaced connects`}${why}`;
    SILENT_DETAILS.set(key, detail);
  }
  return detail;
}

function errorDetail(errno: string, attempts: number): string {
  let byAttempts = ERROR_DETAILS.get(errno);
  if (!byAttempts) {
    byAttempts = [];
    ERROR_DETAILS.set(errno, byAttempts);
  }
  let detail = byAttempts[attempts];
  if (detail === undefined) {
    detail = `${errno}: ${ERRNO_WORDS[errno] ?? 'connect failed'}${attempts > 1 ? ` on attempt ${attempts}` : ''}`;
    byAttempts[attempts] = detail;
  }
  return detail;
}

/** Quiet connects per address, the lowest kept: see quietRtts. */
const RTT_SAMPLES = 3;

/**
 * The connect round trip per address that answered a TCP probe, in ms: the lowest of a few
 * connects made one at a time after the sweep, each timed from just before connect() to its
 * completion (quietConnect). The sweep's own per-port times include its queueing (thousands of
 * connects share one event loop) and are not reported. The port is one that answered with a reset
 * if there is one (no service is touched), else an open one, else one rejected with ICMP.
 */
async function quietRtts(
  items: readonly ReachItem[],
  timeoutMs: number,
  limiter?: RateLimiter,
): Promise<Map<string, number>> {
  const pick = new Map<string, ReachItem>();
  const rank = (i: ReachItem) => {
    const o = i.outcome;
    if (i.protocol !== 'tcp' || !o) return 0;
    if (o.kind === 'error') return o.errno === 'ECONNREFUSED' ? 3 : 1;
    return o.kind === 'open' ? 2 : 0;
  };
  for (const item of items) {
    const r = rank(item);
    if (!r) continue;
    const seen = pick.get(item.address);
    if (!seen || rank(seen) < r) pick.set(item.address, item);
  }
  const out = new Map<string, number>();
  for (const [address, item] of pick) {
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < RTT_SAMPLES; k++) {
      await limiter?.take();
      const q = await quietConnect(address, item.family, item.port, Math.min(timeoutMs, 1000));
      if (q.status !== SILENT) best = Math.min(best, q.ms);
    }
    if (Number.isFinite(best)) out.set(address, Math.round(best * 1000) / 1000);
  }
  return out;
}

/**
 * Neighbour entries of the addresses that stayed silent or got EHOSTUNREACH: FAILED or
 * INCOMPLETE there means no machine answered ARP / NDP (no-host), not a firewall.
 */
async function silentNeighbours(items: readonly ReachItem[]): Promise<Map<string, Neighbour>> {
  const addresses = new Set<string>();
  for (const i of items)
    if (i.outcome?.kind === 'silent' || (i.outcome?.kind === 'error' && i.outcome.errno === 'EHOSTUNREACH'))
      addresses.add(i.address);
  const out = new Map<string, Neighbour>();
  for (const address of addresses) {
    const n = await neighbourOf(address);
    if (n && isUnanswered(n)) out.set(address, n);
  }
  return out;
}

/**
 * The evidence of a connect error ({ errno, rttMs?, attempts, source? }) or of silence
 * ({ attempts, rateLimited?, source? }), one object for every port of an address that ended alike
 * (a closed or dropped range is tens of thousands of ports): read-only once made.
 */
type SharedEvidence = (errno: string | undefined, attempts: number, rateLimited: boolean) => Evidence;

/** The detail of a reset on a run-time range where another port of the range connected. */
const RANGE_RESET_ANSWERED =
  'TCP reset: nothing listens on this port now, as expected on a range the product assigns at run time, and another port of the range connected, so the path reaches the range';

/**
 * The detail of a reset on a run-time range where no port of the range connected: nmap calls
 * such a port closed, and a firewall that rejects with a TCP reset (or an ICMP port unreachable,
 * which a TCP connect sees alike) answers every port the same way.
 */
const RANGE_RESET_UNANSWERED =
  'TCP reset, and no port of this range connected: nothing listens anywhere on it (as before the product opens a port), or a firewall rejects the range with a TCP reset; a connect cannot tell the two apart, so the path is not proven';

/**
 * The addresses of `items` on which a TCP port of the flow's run-time ranges (catalog
 * `dynamic-ports`) connected: something on the range answered, so the path reaches it.
 */
function answeredOnRange(flow: Flow, items: readonly ReachItem[]): Set<string> {
  const out = new Set<string>();
  for (const i of items)
    if (
      i.protocol === 'tcp' &&
      i.outcome?.kind === 'open' &&
      !out.has(i.address) &&
      isDynamicPort(flow, i.port)
    )
      out.add(i.address);
  return out;
}

/** A port result's first fields: address, port, protocol. */
function baseOf(item: ReachItem): Pick<PortResult, 'address' | 'port' | 'protocol'> {
  return { address: item.address, port: item.port, protocol: item.protocol };
}

function portResult(
  item: ReachItem,
  flow: Flow,
  kind: TcpKind | UdpKind,
  svc: ServiceOutcome | undefined,
  secret: string | undefined,
  rttMs: number | undefined,
  neighbour: Neighbour | undefined,
  sharedEvidence: SharedEvidence,
  signedRejected = false,
  rangeAnswered = false,
  loss?: { unanswered: number; connects: number; first: number },
): PortResult {
  const outcome = item.outcome as ReachOutcome;
  const attempts = item.attempts;
  // Only the rarer results below spread it; the common ones build their fields in place.
  if (outcome.kind === 'error' && outcome.local)
    return {
      ...baseOf(item),
      verdict: 'no-route',
      detail: noRouteDetail(item.address, outcome.errno),
      evidence: { errno: outcome.errno, attempts },
    };
  if (
    neighbour &&
    (outcome.kind === 'silent' || (outcome.kind === 'error' && outcome.errno === 'EHOSTUNREACH'))
  )
    return {
      ...baseOf(item),
      verdict: 'no-host',
      detail: `no machine answered ${item.family === 6 ? 'NDP' : 'ARP'} for ${item.address} (neighbour entry ${neighbour.state}${neighbour.device ? ` on ${neighbour.device}` : ''}); ${outcome.kind === 'silent' ? `${attempts === 1 ? '1 try' : `${attempts} spaced tries`} went unanswered` : 'the kernel gave up with EHOSTUNREACH'}`,
      evidence: {
        ...(outcome.kind === 'error' ? { errno: outcome.errno } : {}),
        attempts,
        neighbour: { state: neighbour.state, ...(neighbour.device ? { device: neighbour.device } : {}) },
      },
    };
  if (outcome.kind === 'self')
    return {
      ...baseOf(item),
      verdict: 'closed',
      detail: `${item.address} is this machine: every connect to ${item.port} came back to its own socket (same address and port at both ends), so nothing listens there`,
      evidence: { attempts },
    };
  if (outcome.kind === 'error') {
    // The commonest result of a range (every closed port): built field by field, with no
    // intermediate objects, in the same key order as the others.
    const evidence = sharedEvidence(outcome.errno, attempts, false);
    if (outcome.errno === 'ECONNREFUSED' && item.protocol === 'tcp' && isDynamicPort(flow, item.port))
      return rangeAnswered
        ? {
            address: item.address,
            port: item.port,
            protocol: item.protocol,
            verdict: 'reachable',
            detail: RANGE_RESET_ANSWERED,
            evidence,
          }
        : {
            address: item.address,
            port: item.port,
            protocol: item.protocol,
            verdict: 'closed',
            detail: RANGE_RESET_UNANSWERED,
            evidence,
          };
    return {
      address: item.address,
      port: item.port,
      protocol: item.protocol,
      verdict: verdictForErrno(outcome.errno) ?? 'blocked',
      detail: errorDetail(outcome.errno, attempts),
      evidence,
    };
  }
  // A UDP port asked again after its signed datagrams went unanswered (askSilentAgain): what the
  // asking found replaces the silence.
  if (item.protocol === 'udp' && svc && outcome.kind === 'silent') {
    // Keys in the order of a first-pass reply's evidence (seenFrom last).
    const { seenFrom, ...seen } = svc.evidence;
    return {
      ...baseOf(item),
      verdict: svc.verdict,
      detail: svc.detail,
      evidence: {
        ...(rttMs !== undefined ? { rttMs } : {}),
        ...seen,
        attempts,
        ...(seenFrom ? { seenFrom } : {}),
      },
    };
  }
  if (outcome.kind === 'open') {
    const s = svc ?? { verdict: 'open-unverified' as Verdict, detail: 'connected', evidence: {} };
    const { rttMs: _serviceMs, ...seen } = s.evidence;
    return {
      ...baseOf(item),
      verdict: s.verdict,
      detail: s.detail,
      evidence: { ...(rttMs !== undefined ? { rttMs } : {}), ...seen, attempts },
    };
  }
  if (outcome.kind === 'silent') {
    const evidence = sharedEvidence(undefined, attempts, outcome.rateLimited);
    const why = outcome.rateLimited
      ? '; the retry budget ran out while other ports still answered late (ICMP rate limit), so this may be a reject whose answer was withheld'
      : '';
    if (item.protocol === 'tcp' && isIntermittent(attempts, loss) && loss)
      return {
        ...baseOf(item),
        verdict: 'intermittent',
        detail: `no answer to ${attempts} spaced connects, while ${loss.unanswered} of ${loss.connects} connects to other ports of ${item.address} went unanswered before they connected: connects to ${item.address} are dropped at random (a SYN rate limit, a full connection-tracking table, a lossy link), and this port's silence is as likely that loss as a rule for it`,
        evidence: { attempts, loss: { unanswered: loss.unanswered, connects: loss.connects } },
      };
    if (item.protocol === 'tcp')
      return {
        address: item.address,
        port: item.port,
        protocol: item.protocol,
        verdict: 'filtered',
        detail: silentDetail(attempts, why),
        evidence,
      };
    if (kind === 'ntp' && secret && signedRejected)
      // The responder there rejects this check's signed probes and ignores such datagrams: the
      // NTP request's silence then says only that no NTP server holds the port (the responder does).
      return {
        ...baseOf(item),
        verdict: 'open|filtered',
        detail: `no answer and no ICMP error to ${attempts} spaced NTP requests and signed responder probes; the responder on ${item.address} closed a signed TCP probe without a reply, as portolan listen does with a probe signed with another secret, for another host name or with its clock more than ${MAX_SKEW_SECONDS} s off, and it ignores such datagrams alike`,
        evidence,
      };
    if (kind === 'ntp')
      // portolan speaks NTP: a live server answers a mode-3 request, so silence is a drop (or no
      // server at all), not "open or filtered".
      return {
        ...baseOf(item),
        verdict: 'filtered',
        detail: `no answer and no ICMP error to ${attempts} spaced NTP requests; a live NTP server answers every one from a client it serves${outcome.rateLimited ? ' (the retry budget ran out while ICMP was rate limited: a reject may have been withheld)' : ''}`,
        evidence,
      };
    const spoke = secret ? 'a signed responder probe' : 'an empty datagram';
    const unsure = outcome.rateLimited
      ? '; the retry budget ran out before every try had a fresh ICMP token (rate limit)'
      : '; a reject with ICMP host or network unreachable looks the same to a UDP socket';
    return {
      ...baseOf(item),
      verdict: 'open|filtered',
      detail: `no answer and no ICMP error to ${attempts === 1 ? '1 try' : `${attempts} spaced tries`} of ${spoke}${unsure}`,
      evidence,
    };
  }
  // A UDP reply.
  const ctx = (outcome.context ?? {}) as UdpContext;
  // The UDP send-to-reply time includes the event loop's queueing (a round sends to every port at
  // once), so only the address's quiet TCP measurement is reported as its rtt.
  const evidence: Evidence = {
    ...(rttMs !== undefined ? { rttMs } : {}),
    bytesSeen: outcome.data.length,
    attempts,
  };
  const signed = secret && ctx.token ? readResponderReply(secret, ctx.token, outcome.data) : undefined;
  if (signed?.ok)
    return {
      ...baseOf(item),
      verdict: 'ok (responder)',
      detail: `responder answered the signed probe (${outcome.data.length} bytes)`,
      evidence: signed.seenFrom ? { ...evidence, seenFrom: signed.seenFrom } : evidence,
    };
  if (ctx.ntp) {
    const r = parseNtpReply(outcome.data, ctx.ntp, outcome.receivedAtMs);
    if (r.ok) {
      const ntp = {
        stratum: r.stratum,
        offsetMs: r.offsetMs,
        delayMs: r.delayMs,
        refId: r.refId,
        leap: r.leap,
        ...(r.kiss !== undefined ? { kiss: r.kiss } : {}),
      };
      if (r.kiss !== undefined)
        return {
          ...baseOf(item),
          verdict: 'not-serving',
          detail: `NTP kiss-o'-death ${r.kiss}: the server refuses to serve us`,
          evidence: { ...evidence, ntp },
        };
      if (isUnsynchronised(r))
        return {
          ...baseOf(item),
          verdict: 'not-serving',
          detail: `NTP server answers but is not synchronised (stratum ${r.stratum}, leap indicator ${r.leap}${r.leap === 3 ? ': clock unsynchronised' : ''})`,
          evidence: { ...evidence, ntp },
        };
      return {
        ...baseOf(item),
        verdict: 'ok',
        detail: `NTP server, stratum ${r.stratum}, offset ${r.offsetMs} ms, delay ${r.delayMs} ms`,
        evidence: { ...evidence, ntp },
      };
    }
    return {
      ...baseOf(item),
      verdict: 'wrong-service',
      detail: `expected an NTP reply: ${r.reason}`,
      evidence: { ...evidence, banner: excerpt(outcome.data) },
    };
  }
  const who = identify(outcome.data);
  return {
    ...baseOf(item),
    verdict: 'open-unverified',
    detail: `${outcome.data.length} bytes came back${who ? ` from ${who}` : ''}: open, ${KIND_NAMES[kind]} not checked`,
    evidence: { ...evidence, banner: excerpt(outcome.data) },
  };
}
