/**
 * The connect rate of `check` and `probe` (`--max-rate`): how many connection attempts (TCP SYNs,
 * UDP probes, service and responder connects) start per second, over every target together.
 */

/**
 * Connects per second by default: 500, a rate production firewalls and IDS do not take for a SYN
 * flood or a port scan. FortiGate's DoS policy alerts at 1000 SYNs per second from one source
 * (tcp_port_scan) and 2000 per second to one destination (tcp_syn_flood) by default (FortiGate /
 * FortiManager administration guide, "DoS policies"); nmap's own default timing (-T3) has no rate
 * cap at all, and its sweeps are what such thresholds are tuned against. 500 stays at half the
 * lower of those defaults even with the burst below, and still checks a 16384-port dynamic range
 * in about 33 s. `--max-rate 0` removes the cap (a lab, or a path with no IDS on it).
 */
export const DEFAULT_MAX_RATE = 500;

/** A monotonic clock in milliseconds (performance.now by default; tests inject their own). */
export interface Clock {
  now(): number;
}

const SYSTEM_CLOCK: Clock = { now: () => performance.now() };

/** Connects that may start back to back: 1/20 s worth of the rate, at least one. */
export function burstFor(rate: number): number {
  return Math.max(1, Math.ceil(rate / 20));
}

/**
 * A token bucket, kept as the generic cell rate algorithm (ITU-T I.371 GCRA, "virtual
 * scheduling"): one token every 1000 / rate ms, at most `burst` saved up. Over any window of
 * W ms at most burst + W * rate / 1000 connects start.
 *
 * Two ways to take a token: tryTake (the sweep's pump, which must not block: take one now or learn
 * how long to wait) and reserve/take (callers that can wait: each is given its own start time, so
 * waiters do not wake together and race).
 */
export class RateLimiter {
  /** Milliseconds between tokens. */
  readonly interval: number;
  /** How far ahead of the steady schedule a start may be: the saved-up burst. */
  private readonly tolerance: number;
  /** The theoretical arrival time of the next token (GCRA's TAT). */
  private tat: number;

  constructor(
    readonly rate: number,
    readonly burst: number = burstFor(rate),
    private readonly clock: Clock = SYSTEM_CLOCK,
  ) {
    if (!(rate > 0) || !Number.isFinite(rate))
      throw new RangeError(`rate must be a positive number, got ${rate}`);
    if (!(burst >= 1)) throw new RangeError(`burst must be at least 1, got ${burst}`);
    this.interval = 1000 / rate;
    this.tolerance = (burst - 1) * this.interval;
    this.tat = clock.now();
  }

  /** Takes a token now and returns 0, or returns the milliseconds until one is due (taking none). */
  tryTake(): number {
    const now = this.clock.now();
    const due = this.tat - this.tolerance;
    if (due > now) return due - now;
    this.tat = Math.max(this.tat, now) + this.interval;
    return 0;
  }

  /** Reserves the next token: the milliseconds to wait before starting (0: start now). */
  reserve(): number {
    const now = this.clock.now();
    const start = Math.max(now, this.tat - this.tolerance);
    this.tat = Math.max(this.tat, start) + this.interval;
    return start - now;
  }

  /** Waits for a reserved token. */
  async take(): Promise<void> {
    const wait = this.reserve();
    if (wait > 0) await new Promise<void>((r) => setTimeout(r, Math.ceil(wait)));
  }
}
