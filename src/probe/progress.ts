import type { CheckProgress } from './engine.js';

/**
 * A one-line progress bar on a terminal (stderr), redrawn at most ten times a second and erased
 * at the end. Off when the stream is not a TTY, so pipelines and logs never see it.
 */
export class ProgressBar {
  private last = 0;
  private shown = false;
  private readonly t0 = performance.now();

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  get enabled(): boolean {
    return Boolean(this.stream.isTTY);
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
    const secs = ((now - this.t0) / 1000).toFixed(1);
    let text: string;
    let frac: number;
    if (p.phase === 'reach') {
      const roundDone = p.roundDone ?? 0;
      const roundSize = p.roundSize ?? 0;
      frac = roundSize ? roundDone / roundSize : 0;
      const what =
        (p.round ?? 1) > 1
          ? `retry ${p.round}: ${roundDone}/${roundSize} silent`
          : `${roundDone}/${roundSize}`;
      text = `${what} · ${p.done}/${p.total} decided · ${secs} s`;
    } else {
      frac = p.total ? p.done / p.total : 0;
      text = `${p.phase === 'service' ? 'services' : 'resolving'} ${p.done}/${p.total} · ${secs} s`;
    }
    const barWidth = Math.max(10, Math.min(30, cols - text.length - 4));
    const filled = Math.round(Math.min(1, frac) * barWidth);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${text}`.slice(0, cols);
    this.stream.write(`\r${line}\u001b[K`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) this.stream.write('\r\u001b[K');
    this.shown = false;
  }
}
