import type { ProbeEvent } from './responder.js';

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Lines a source may log in a burst, then LOG_PER_SECOND: a flood costs counters, not output. */
export const LOG_BURST = 20;
export const LOG_PER_SECOND = 1;
/**
 * Lines all sources together may log in a burst, then LOG_GLOBAL_PER_SECOND: many (spoofed) sources
 * cannot flood the log either. What this budget holds back is announced by one "suppressed N" line
 * as soon as the budget allows a line again, and in the summary.
 */
export const LOG_GLOBAL_BURST = 200;
export const LOG_GLOBAL_PER_SECOND = 20;
/** Sources remembered one by one; past this they share one entry ("other sources"). */
export const MAX_SOURCES = 4096;
const OTHER = 'other sources';

interface Bucket {
  tokens: number;
  at: number;
}

interface SourceState extends Bucket {
  suppressed: number;
  /** Suppressed since this source's last logged line: announced with its next one. */
  pending: number;
  answered: number;
  rejected: number;
  reach: number;
  refused: number;
}

export interface SourceSummary {
  source: string;
  /** Signed probes answered. */
  answered: number;
  /** Connections or datagrams that were not a probe signed with this secret: no bytes sent. */
  rejected: number;
  /** TCP connections closed without a byte: `check`'s reachability pass. */
  reach: number;
  /** Connections reset unread because the source (or all sources) held too many at once. */
  refused: number;
  /** Probe lines not logged for this source (rate limit). */
  suppressed: number;
}

export interface Summary {
  answered: number;
  rejected: number;
  reach: number;
  refused: number;
  /** Lines the global log budget held back (on top of the per-source limits). */
  suppressed: number;
  sources: SourceSummary[];
}

function take(b: Bucket, burst: number, perSecond: number, now: number): boolean {
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens--;
  return true;
}

/**
 * Writes one line per probe (text or JSON lines) with the source address the responder saw, rate
 * limited per source and over all sources, and counts every probe for the summary. A source's
 * reachability connects (closed without data) are counted and only its first is logged: `check`
 * makes one per port before its signed probe, and they are part of a good test, not failures.
 * Memory is bounded by MAX_SOURCES.
 */
export class ProbeLog {
  private readonly sources = new Map<string, SourceState>();
  private readonly global: Bucket = { tokens: LOG_GLOBAL_BURST, at: 0 };
  private answered = 0;
  private rejected = 0;
  private reach = 0;
  private refused = 0;
  private suppressed = 0;
  /** Suppressed by the global budget since the last "suppressed N" line. */
  private pending = 0;

  constructor(
    private readonly format: LogFormat,
    private readonly write: (line: string) => void,
  ) {}

  probe(e: ProbeEvent, now = Date.now()): void {
    this[e.result]++;
    const key = this.sources.has(e.from.address) || this.sources.size < MAX_SOURCES ? e.from.address : OTHER;
    let s = this.sources.get(key);
    if (!s) {
      s = {
        tokens: LOG_BURST,
        at: now,
        suppressed: 0,
        pending: 0,
        answered: 0,
        rejected: 0,
        reach: 0,
        refused: 0,
      };
      this.sources.set(key, s);
    }
    s[e.result]++;
    if (e.result === 'reach' && s.reach > 1) return;
    if (!take(s, LOG_BURST, LOG_PER_SECOND, now)) {
      s.suppressed++;
      s.pending++;
      return;
    }
    if (this.global.at === 0) this.global.at = now;
    if (!take(this.global, LOG_GLOBAL_BURST, LOG_GLOBAL_PER_SECOND, now)) {
      this.suppressed++;
      this.pending++;
      return;
    }
    const time = new Date(now).toISOString();
    if (this.pending) {
      this.line(
        { event: 'suppressed', time, lines: this.pending },
        `${time} suppressed ${this.pending} log lines (log budget: ${LOG_GLOBAL_PER_SECOND} lines a second over all sources)`,
      );
      this.pending = 0;
    }
    if (s.pending) {
      this.line(
        { event: 'suppressed', time, source: key, lines: s.pending },
        `${time} suppressed ${s.pending} log lines from ${key} (log budget: ${LOG_BURST}, then ${LOG_PER_SECOND} a second per source; the summary counts them all)`,
      );
      s.pending = 0;
    }
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ event: 'probe', time, ...e })}\n`);
      return;
    }
    const why = e.reason ? `: ${e.reason}` : '';
    const later =
      e.result === 'reach'
        ? ' (a reachability probe, as check makes before its signed probe; more from this source are counted, not logged)'
        : '';
    this.write(
      `${time} ${e.result} ${e.proto}/${e.port} from ${hostPort(e.from.address, e.from.port)} to ${hostPort(e.to.address, e.to.port)} (${e.received} bytes in, ${e.sent} out)${why}${later}\n`,
    );
  }

  private line(json: Record<string, unknown>, text: string): void {
    this.write(this.format === 'json' ? `${JSON.stringify(json)}\n` : `${text}\n`);
  }

  summary(): Summary {
    const sources = [...this.sources]
      .map(([source, s]) => ({
        source,
        answered: s.answered,
        rejected: s.rejected,
        reach: s.reach,
        refused: s.refused,
        suppressed: s.suppressed,
      }))
      .sort(
        (a, b) =>
          b.answered + b.rejected + b.refused - (a.answered + a.rejected + a.refused) ||
          b.reach - a.reach ||
          a.source.localeCompare(b.source),
      );
    return {
      answered: this.answered,
      rejected: this.rejected,
      reach: this.reach,
      refused: this.refused,
      suppressed: this.suppressed,
      sources,
    };
  }
}

export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
