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
