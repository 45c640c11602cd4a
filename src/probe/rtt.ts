/**
 * Round-trip estimate per target, learned from the first answers (any answer: a connect, a reset,
 * an ICMP error, a UDP reply). The timeout for further attempts follows RFC 6298's shape
 * (srtt + 4 * rttvar), kept between a floor and the user's --timeout; until the target has
 * answered once, the user's timeout applies. Samples include our own event-loop delay, so the
 * timeout grows with our load as it should.
 */
export class RttEstimator {
  srtt = Number.NaN;
  rttvar = 0;
  samples = 0;

  add(ms: number): void {
    if (this.samples === 0) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
    this.samples++;
  }

  /** Folds in another estimator's state (from a worker thread), weighted by samples. */
  merge(other: { srtt: number; rttvar: number; samples: number }): void {
    if (other.samples === 0) return;
    if (this.samples === 0) {
      this.srtt = other.srtt;
      this.rttvar = other.rttvar;
      this.samples = other.samples;
      return;
    }
    const n = this.samples + other.samples;
    this.srtt = (this.srtt * this.samples + other.srtt * other.samples) / n;
    this.rttvar = Math.max(this.rttvar, other.rttvar);
    this.samples = n;
  }

  timeout(minMs: number, maxMs: number): number {
    if (this.samples === 0) return maxMs;
    return Math.min(maxMs, Math.max(minMs, this.srtt + 4 * this.rttvar));
  }

  state(): { srtt: number; rttvar: number; samples: number } {
    return { srtt: this.srtt, rttvar: this.rttvar, samples: this.samples };
  }
}

/** One row's state: what RttEstimator.state() gives. */
export interface RttState {
  srtt: number;
  rttvar: number;
  samples: number;
}

/** Memory behind an RttTable: plain for one thread, SharedArrayBuffer-backed for a pool's threads. */
export interface RttMemory {
  /** Per row: 0 free, 1 held (a spin lock; held for a few arithmetic operations). */
  lock: Int32Array;
  /** Per row: srtt (ms), rttvar (ms), samples. */
  data: Float64Array;
}

/**
 * The estimates of a sweep's targets, and of the networks they sit in, in memory every sweep
 * thread reads and writes: an answer one thread sees shortens the timeout of every thread's next
 * connects to that target (a thread no longer waits the user's --timeout until it has seen the
 * target answer itself). Rows 0..targets-1 are the targets; the rows after them are networks (see
 * networkRows). Same arithmetic as RttEstimator (RFC 6298's srtt and rttvar, section 2).
 */
export class RttTable {
  constructor(readonly memory: RttMemory) {}

  /** A table of `rows` rows, all without samples; `shared`: usable from worker threads. */
  static create(rows: number, shared: boolean): RttTable {
    const buffer = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    return new RttTable({
      lock: new Int32Array(buffer(4 * rows)),
      data: new Float64Array(buffer(8 * 3 * rows)),
    });
  }

  private acquire(row: number): void {
    // Two or three threads at most, each holding the lock for a few operations: spin.
    while (Atomics.compareExchange(this.memory.lock, row, 0, 1) !== 0);
  }

  private release(row: number): void {
    Atomics.store(this.memory.lock, row, 0);
  }

  /** Adds one round-trip sample (ms) to `row`. */
  add(row: number, ms: number): void {
    const d = this.memory.data;
    const k = 3 * row;
    this.acquire(row);
    if (d[k + 2] === 0) {
      d[k] = ms;
      d[k + 1] = ms / 2;
    } else {
      d[k + 1] = 0.75 * (d[k + 1] as number) + 0.25 * Math.abs((d[k] as number) - ms);
      d[k] = 0.875 * (d[k] as number) + 0.125 * ms;
    }
    (d[k + 2] as number)++;
    this.release(row);
  }

  /** Folds an estimate (an earlier round's) into `row`, as RttEstimator.merge does. */
  merge(row: number, other: RttState): void {
    const e = new RttEstimator();
    e.merge(this.state(row));
    e.merge(other);
    const d = this.memory.data;
    this.acquire(row);
    d[3 * row] = e.srtt;
    d[3 * row + 1] = e.rttvar;
    d[3 * row + 2] = e.samples;
    this.release(row);
  }

  state(row: number): RttState {
    const d = this.memory.data;
    this.acquire(row);
    const samples = d[3 * row + 2] as number;
    const out = samples
      ? { srtt: d[3 * row] as number, rttvar: d[3 * row + 1] as number, samples }
      : { srtt: Number.NaN, rttvar: 0, samples: 0 };
    this.release(row);
    return out;
  }

  /**
   * The "no answer yet" timeout for `row` (ms): srtt + 4 * rttvar between `minMs` and `maxMs`
   * once the row has samples; otherwise the estimate of row `fallback` (its network) when given
   * and sampled; otherwise `maxMs`, the user's --timeout.
   */
  timeout(row: number, minMs: number, maxMs: number, fallback = -1): number {
    let s = this.state(row);
    if (s.samples === 0 && fallback >= 0) s = this.state(fallback);
    if (s.samples === 0) return maxMs;
    return Math.min(maxMs, Math.max(minMs, s.srtt + 4 * s.rttvar));
  }
}

/**
 * The network of each target, as a row of an RttTable after the targets' own rows: IPv4 targets
 * in one /24, IPv6 targets in one /64 share a network (one LAN or one routed subnet, the usual
 * unit that sits behind one path). Returns `rowOf` (per target, its network's row) and `rows`
 * (targets + networks), the table size.
 */
export function networkRows(targets: readonly { address: string; family: 4 | 6 }[]): {
  rowOf: Int32Array;
  rows: number;
} {
  const rowOf = new Int32Array(targets.length);
  const seen = new Map<string, number>();
  let rows = targets.length;
  targets.forEach((t, i) => {
    const key = networkKey(t.address, t.family);
    let row = seen.get(key);
    if (row === undefined) {
      row = rows++;
      seen.set(key, row);
    }
    rowOf[i] = row;
  });
  return { rowOf, rows };
}

/** "4 a.b.c" for an IPv4 /24; "6 " + the first four groups for an IPv6 /64 (scope id kept). */
function networkKey(address: string, family: 4 | 6): string {
  if (family === 4) return `4 ${address.slice(0, address.lastIndexOf('.'))}`;
  const [addr = '', scope = ''] = address.toLowerCase().split('%');
  const halves = addr.split('::');
  const head = (halves[0] ?? '').split(':').filter(Boolean);
  const tail = halves.length > 1 ? (halves[1] ?? '').split(':').filter(Boolean) : [];
  // Expand "::" so the first four groups are the real ones.
  const groups =
    halves.length > 1 ? [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail] : head;
  return `6 ${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}%${scope}`;
}
