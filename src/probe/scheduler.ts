import { errnoName } from './errno.js';
import type { RateLimiter } from './rate.js';
import { RttEstimator } from './rtt.js';
import type { SweepPool } from './sweep.js';
import { OPEN, SELF, SILENT, type SweepJob, type SweepTarget } from './tcp.js';
import { udpAttempt } from './udp.js';

/**
 * Reachability with spaced retries. A silent port is not proof of a drop: kernels rate-limit
 * ICMP errors per peer (Linux: a burst of 6, then one per second, shared by every port and every
 * address behind the same sender), so a rejected port can look silent when many are probed at once.
 *
 * Round 1 tries every (address, protocol, port) at once. Then:
 * - TCP: the silent ports of all targets are tried again in rounds at least `spacingMs` apart. In
 *   SYN_SENT the kernel reports every ICMP error to the socket, so a round in which no port at all
 *   answered (the rate-limit token refilled) shows that none of the silent ports is rejected.
 *   Rounds go on while answers keep coming, past `attempts`, up to a time budget.
 * - UDP: a connected socket hears only the "hard" ICMP errors (port unreachable, administratively
 *   prohibited); host and network unreachable are dropped without IP_RECVERR, which Node cannot
 *   set, yet they still spend the peer's token. So each silent UDP port gets solo tries, one at a
 *   time, spaced so that each goes out with a fresh token, until it has had `attempts` in all.
 */

export interface UdpSpec {
  payloads: Buffer[];
  /** Whatever the caller needs to check the reply (NTP request, responder token). */
  context: unknown;
}

export interface ReachItem {
  address: string;
  family: 4 | 6;
  protocol: 'tcp' | 'udp';
  port: number;
  /** UDP: builds one attempt's datagrams (fresh timestamps and nonces every time). */
  udp?: () => UdpSpec;
  attempts: number;
  /** Absent until decided. (Created as undefined, so deciding an item keeps its shape.) */
  outcome?: ReachOutcome | undefined;
}

export type ReachOutcome =
  | { kind: 'open'; rttMs: number }
  /**
   * `local`: this machine could not send at all (no route, a broadcast address): see route.ts.
   * `rttMs` is absent for TCP sweep errors: one outcome object is shared by the ports of an address
   * that failed alike in a round (a range yields tens of thousands), and no report shows it.
   */
  | { kind: 'error'; errno: string; rttMs?: number; local?: true }
  | { kind: 'reply'; data: Buffer; rttMs: number; receivedAtMs: number; context: unknown }
  /** No answer after the spaced rounds; rateLimited when the same peer answered others late. */
  | { kind: 'silent'; rateLimited: boolean }
  /** TCP: every connect reached its own socket (this machine's address, nothing listening). */
  | { kind: 'self' };

export interface ReachProgress {
  total: number;
  done: number;
  round: number;
  /** Items tried in this round, and how many of them have finished. */
  roundSize: number;
  roundDone: number;
}

export interface ReachOptions {
  concurrency: number;
  /** The user's --timeout: the timeout before a peer has answered, and the ceiling after. */
  timeoutMs: number;
  minTimeoutMs: number;
  attempts: number;
  spacingMs: number;
  retryBudgetMs: number;
  pool: SweepPool;
  /** Paces every connect and UDP attempt (--max-rate); none: as fast as `concurrency` allows. */
  limiter?: RateLimiter;
  onProgress?: (p: ReachProgress) => void;
}

/** ICMP-borne errors: the ones a peer's rate limit can withhold. */
const ICMP_ERRORS = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENONET', 'EPROTO', 'EACCES']);

interface TargetState {
  address: string;
  family: 4 | 6;
  est: RttEstimator;
  /** An ICMP error came in a retry, for a port that had been silent: the peer rate-limits. */
  lateIcmp: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function reach(items: readonly ReachItem[], opts: ReachOptions): Promise<void> {
  const targets = new Map<string, TargetState>();
  let last: string | undefined;
  for (const it of items) {
    if (it.address === last) continue; // items of one address come in runs
    last = it.address;
    if (!targets.has(it.address))
      targets.set(it.address, {
        address: it.address,
        family: it.family,
        est: new RttEstimator(),
        lateIcmp: false,
      });
  }
  const stateOf = (i: ReachItem) => targets.get(i.address) as TargetState;
  const total = items.length;
  let decided = 0;
  let round = 1;
  let roundSize = items.length;
  let tcpDone = 0;
  let udpDone = 0;
  const report = () =>
    opts.onProgress?.({ total, done: decided, round, roundSize, roundDone: tcpDone + udpDone });
  const count = () => {
    decided = items.reduce((n, i) => n + (i.outcome ? 1 : 0), 0);
    report();
  };

  // Round 1: everything at once.
  report();
  const tcpAll = items.filter((i) => i.protocol === 'tcp');
  const udpAll = items.filter((i) => i.protocol === 'udp');
  await Promise.all([
    tcpRound(tcpAll, stateOf, opts, 1, (n) => {
      tcpDone = n;
      report();
    }),
    udpBurst(udpAll, stateOf, opts, () => {
      udpDone++;
      report();
    }),
  ]);
  let lastEnd = performance.now();
  count();

  // TCP retry rounds, all targets together: the token is shared by whatever sits behind one sender.
  let pending = tcpAll.filter((i) => !i.outcome);
  let answered = Number.POSITIVE_INFINITY;
  let budgetFrom: number | undefined;
  let cut = false;
  while (pending.length) {
    if (round >= opts.attempts) {
      budgetFrom ??= lastEnd;
      if (answered === 0) break;
      if (lastEnd - budgetFrom >= opts.retryBudgetMs) {
        cut = true;
        break;
      }
    }
    await sleep(Math.max(0, lastEnd + opts.spacingMs - performance.now()));
    round++;
    roundSize = pending.length;
    tcpDone = 0;
    udpDone = 0;
    report();
    await tcpRound(pending, stateOf, opts, round, (n) => {
      tcpDone = n;
      report();
    });
    lastEnd = performance.now();
    const still = pending.filter((i) => !i.outcome);
    answered = pending.length - still.length;
    pending = still;
    count();
  }
  // One outcome for them all (a dropped range is tens of thousands of ports).
  const silent: ReachOutcome = { kind: 'silent', rateLimited: cut };
  for (const i of pending) i.outcome = silent;

  // UDP: solo tries, round-robin, each after a pause that refills the peer's token.
  const queue = udpAll.filter((i) => !i.outcome);
  const deadline = performance.now() + opts.retryBudgetMs;
  let lastSend = lastEnd;
  roundSize = queue.length;
  tcpDone = 0;
  udpDone = 0;
  while (queue.length) {
    const item = queue.shift() as ReachItem;
    if (item.attempts >= opts.attempts) {
      // Solo tries with a fresh token each: this silence is not the rate limit.
      item.outcome = { kind: 'silent', rateLimited: false };
      continue;
    }
    if (performance.now() + opts.spacingMs > deadline) {
      // Out of time: the ports still waiting for their solo tries are not confirmed.
      for (const i of [item, ...queue]) i.outcome = { kind: 'silent', rateLimited: true };
      break;
    }
    await sleep(Math.max(0, lastSend + opts.spacingMs - performance.now()));
    lastSend = performance.now();
    round = item.attempts + 1;
    await udpTry(item, stateOf(item), opts, true);
    udpDone++;
    if (!item.outcome) queue.push(item);
    count();
  }
  count();
}

async function tcpRound(
  list: readonly ReachItem[],
  stateOf: (i: ReachItem) => TargetState,
  opts: ReachOptions,
  round: number,
  onProgress: (n: number) => void,
): Promise<void> {
  if (!list.length) return;
  const index = new Map<TargetState, number>();
  const states: TargetState[] = [];
  const target = new Uint32Array(list.length);
  const port = new Uint16Array(list.length);
  // Items of one address come in runs: look the target up once per run.
  let address: string | undefined;
  let ti = 0;
  for (let k = 0; k < list.length; k++) {
    const item = list[k] as ReachItem;
    if (item.address !== address) {
      address = item.address;
      const t = stateOf(item);
      let known = index.get(t);
      if (known === undefined) {
        known = states.length;
        states.push(t);
        index.set(t, known);
      }
      ti = known;
    }
    target[k] = ti;
    port[k] = item.port;
  }
  const job: SweepJob = {
    targets: states.map((t): SweepTarget => ({ address: t.address, family: t.family, rtt: t.est.state() })),
    target,
    port,
    concurrency: opts.concurrency,
    minTimeoutMs: opts.minTimeoutMs,
    maxTimeoutMs: opts.timeoutMs,
    // Round 1 may wait a neighbour's estimate; the ports it calls silent are asked again in
    // rounds that wait the target's own estimate or the user's timeout.
    seedFromNetwork: round === 1,
  };
  const out = await opts.pool.run(job, onProgress, opts.limiter);
  out.rtt.forEach((r, ti) => {
    const t = states[ti] as TargetState;
    t.est = new RttEstimator();
    t.est.merge(r);
  });
  // Per address, one error outcome per status: items of one address come in runs, and a closed
  // range is tens of thousands of resets. (localUnreachable marks an address's ENETUNREACH
  // outcomes local all together, so sharing them within an address is safe.)
  let errors = new Map<number, ReachOutcome>();
  address = undefined;
  for (let k = 0; k < list.length; k++) {
    const item = list[k] as ReachItem;
    const st = out.status[k] as number;
    item.attempts++;
    if (st === SILENT) continue;
    if (st === OPEN) item.outcome = { kind: 'open', rttMs: round2(out.rttMs[k] as number) };
    else if (st === SELF) item.outcome = { kind: 'self' };
    else {
      if (item.address !== address) {
        address = item.address;
        errors = new Map();
      }
      let outcome = errors.get(st);
      if (!outcome) {
        const errno = errnoName(st);
        outcome = { kind: 'error', errno };
        errors.set(st, outcome);
        if (round > 1 && ICMP_ERRORS.has(errno)) stateOf(item).lateIcmp = true;
      }
      item.outcome = outcome;
    }
  }
}

/** UDP round 1: every port at once, a bounded number of sockets open. */
async function udpBurst(
  list: readonly ReachItem[],
  stateOf: (i: ReachItem) => TargetState,
  opts: ReachOptions,
  onDone: () => void,
): Promise<void> {
  let next = 0;
  // Each UDP attempt holds a socket for its whole timeout; keep well under the descriptor limit.
  const width = Math.min(list.length, Math.max(1, Math.min(opts.concurrency, 1024)));
  const worker = async () => {
    while (next < list.length) {
      const item = list[next++] as ReachItem;
      await udpTry(item, stateOf(item), opts, false);
      onDone();
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
}

async function udpTry(item: ReachItem, t: TargetState, opts: ReachOptions, retry: boolean): Promise<void> {
  await opts.limiter?.take();
  const spec = item.udp?.() ?? { payloads: [Buffer.alloc(0)], context: undefined };
  const o = await udpAttempt({
    address: item.address,
    family: item.family,
    port: item.port,
    payloads: spec.payloads,
    timeoutMs: t.est.timeout(opts.minTimeoutMs, opts.timeoutMs),
  });
  if (o.kind === 'local') return; // our own shortage: not an attempt
  item.attempts++;
  if (o.kind === 'unroutable') {
    item.outcome = { kind: 'error', errno: o.errno, rttMs: 0, local: true };
    return;
  }
  if (o.kind === 'silent') return;
  t.est.add(o.rttMs);
  if (o.kind === 'reply')
    item.outcome = {
      kind: 'reply',
      data: o.data,
      rttMs: round2(o.rttMs),
      receivedAtMs: performance.timeOrigin + o.receivedAt,
      context: spec.context,
    };
  else {
    item.outcome = { kind: 'error', errno: o.errno, rttMs: round2(o.rttMs) };
    // For UDP even "port unreachable" is an ICMP error subject to the rate limit.
    if (retry && (ICMP_ERRORS.has(o.errno) || o.errno === 'ECONNREFUSED')) t.lateIcmp = true;
  }
}

function round2(ms: number): number {
  return Number.isFinite(ms) ? Math.round(ms * 100) / 100 : 0;
}
