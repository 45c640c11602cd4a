import type { ProbeEvent } from './responder.js';

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Lines a source may log in a burst, then LOG_PER_SECOND: a flood costs counters, not output. */
export const LOG_BURST = 20;
export const LOG_PER_SECOND = 1;
/** Sources remembered one by one; past this they share one entry ("other sources"). */
export const MAX_SOURCES = 4096;
const OTHER = 'other sources';

interface SourceState {
  tokens: number;
  at: number;
  suppressed: number;
  answered: number;
  rejected: number;
}

export interface SourceSummary {
  source: string;
  answered: number;
  rejected: number;
  /** Probe lines not logged for this source (rate limit). */
  suppressed: number;
}

export interface Summary {
  answered: number;
  rejected: number;
  sources: SourceSummary[];
}

/**
 * Writes one line per probe (text or JSON lines) with the source address the responder saw, rate
 * limited per source, and counts every probe for the summary. Memory is bounded by MAX_SOURCES.
 */
export class ProbeLog {
  private readonly sources = new Map<string, SourceState>();
  private answered = 0;
  private rejected = 0;

  constructor(
    private readonly format: LogFormat,
    private readonly write: (line: string) => void,
  ) {}

  probe(e: ProbeEvent, now = Date.now()): void {
    if (e.result === 'answered') this.answered++;
    else this.rejected++;
    const key = this.sources.has(e.from.address) || this.sources.size < MAX_SOURCES ? e.from.address : OTHER;
    let s = this.sources.get(key);
    if (!s) {
      s = { tokens: LOG_BURST, at: now, suppressed: 0, answered: 0, rejected: 0 };
      this.sources.set(key, s);
    }
    s[e.result]++;
    s.tokens = Math.min(LOG_BURST, s.tokens + ((now - s.at) / 1000) * LOG_PER_SECOND);
    s.at = now;
    if (s.tokens < 1) {
      s.suppressed++;
      return;
    }
    s.tokens--;
    const time = new Date(now).toISOString();
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ event: 'probe', time, ...e })}\n`);
      return;
    }
    const why = e.reason ? `: ${e.reason}` : '';
    this.write(
      `${time} ${e.result} ${e.proto}/${e.port} from ${hostPort(e.from.address, e.from.port)} to ${hostPort(e.to.address, e.to.port)} (${e.received} bytes in, ${e.sent} out)${why}\n`,
    );
  }

  summary(): Summary {
    const sources = [...this.sources]
      .map(([source, s]) => ({
        source,
        answered: s.answered,
        rejected: s.rejected,
        suppressed: s.suppressed,
      }))
      .sort(
        (a, b) => b.answered + b.rejected - (a.answered + a.rejected) || a.source.localeCompare(b.source),
      );
    return { answered: this.answered, rejected: this.rejected, sources };
  }
}

export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
