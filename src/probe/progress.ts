import { counted } from '../util/plural.js';
import type { CheckProgress } from './engine.js';

/** Width of the bar itself, in columns: fixed, so the line does not jump as the text changes. */
const BAR = 20;

/**
 * A one-line progress bar on a terminal (stderr), redrawn at most ten times a second and erased
 * at the end. Off when the stream is not a TTY, so pipelines and logs never see it.
 *
 * The bar is the overall progress across retry rounds, in attempt slots: every port needs at most
 * `attempts` tries, a decided port counts all of its slots, a silent one the tries it has had. It
 * never goes back; the ETA is the elapsed time scaled by what is left.
 */
export class ProgressBar {
  private last = 0;
  private shown = false;
  private frac = 0;
  private readonly t0 = performance.now();
  private readonly attempts: number;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    opts: { attempts?: number } = {},
  ) {
    this.attempts = Math.max(1, opts.attempts ?? 3);
  }

  get enabled(): boolean {
    return Boolean(this.stream.isTTY);
  }

  /** The line for a progress event, `cols` wide at most (exported for tests through `frame`). */
  frame(p: CheckProgress, now: number, cols: number): string {
    const secs = (now - this.t0) / 1000;
    let text: string;
    let frac: number;
    if (p.phase === 'reach') {
      const total = p.total || 1;
      const size = p.roundSize ?? 0;
      const round = Math.min(p.round ?? 1, this.attempts);
      const slots = (total - size) * this.attempts + size * (round - 1) + Math.min(p.roundDone ?? 0, size);
      // Reaching is most of the work; services follow.
      frac = 0.9 * Math.min(1, slots / (total * this.attempts));
      const what =
        (p.round ?? 1) > 1 ? `retry ${p.round}, ${size} silent` : `${p.roundDone ?? 0}/${size} tried`;
      text = `${p.done}/${counted(p.total, 'port')} decided · ${what}`;
    } else if (p.phase === 'service') {
      frac = 0.9 + 0.1 * (p.total ? p.done / p.total : 1);
      text = `services ${p.done}/${p.total}${p.current ? ` · ${p.current}` : ''}`;
    } else {
      frac = 0;
      text = `resolving ${counted(p.total, 'flow')}`;
    }
    this.frac = Math.max(this.frac, frac);
    const eta =
      this.frac > 0.02 && this.frac < 1
        ? ` · ETA ${Math.max(0, Math.ceil((secs * (1 - this.frac)) / this.frac))} s`
        : '';
    const filled = Math.round(Math.min(1, this.frac) * BAR);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}] ${String(Math.floor(this.frac * 100)).padStart(3)}% ${secs.toFixed(1)} s${eta} · ${text}`;
    return line.length > cols ? line.slice(0, cols) : line;
  }

  update(p: CheckProgress): void {
    if (!this.enabled) return;
    if (p.phase === 'done') {
      this.clear();
      return;
    }
    const now = performance.now();
    if (now - this.last < 100) return;
    this.last = now;
    const cols = Math.max(40, (this.stream.columns ?? 80) - 1);
    this.stream.write(`\r${this.frame(p, now, cols)}\u001b[K`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) this.stream.write('\r\u001b[K');
    this.shown = false;
  }
}
