import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { RttEstimator } from './rtt.js';
import { type SweepJob, type SweepOut, sweepTcp } from './tcp.js';
import type { WorkerRequest } from './tcp-worker.js';

/** Below this many connects a round runs on the main thread: a worker costs ~40 ms to start. */
export const WORKER_THRESHOLD = 4096;

/**
 * Runs TCP sweep rounds on worker threads when a round is large, so the connect syscalls of a
 * 65535-port sweep use more than one core. Items are dealt round-robin, so every worker covers
 * the whole range and learns the RTT early.
 */
export class SweepPool {
  private workers: Worker[] = [];

  constructor(private readonly size: number) {}

  static auto(requested: number | undefined): SweepPool {
    return new SweepPool(requested ?? Math.min(2, availableParallelism()));
  }

  /**
   * Starts the threads now, so their start-up overlaps whatever the caller does next (the CLI
   * loads the catalogs meanwhile). Idle threads cost a little memory, nothing else.
   */
  warm(): this {
    // One thread is the main thread: a round then runs in-thread (see run).
    while (this.size > 1 && this.workers.length < this.size) {
      const worker = new Worker(new URL('./tcp-worker.js', import.meta.url));
      worker.unref();
      this.workers.push(worker);
    }
    return this;
  }

  async run(job: SweepJob, onProgress?: (finished: number) => void): Promise<SweepOut> {
    const n = job.port.length;
    const w = Math.min(this.size, Math.ceil(n / 1024));
    if (w <= 1 || n < WORKER_THRESHOLD) return sweepTcp(job, onProgress);
    this.warm();
    const progress = new Int32Array(new SharedArrayBuffer(4 * w));
    const parts = Array.from({ length: w }, (_, k) => {
      const count = Math.floor((n - k + w - 1) / w);
      const target = new Uint32Array(count);
      const port = new Uint16Array(count);
      for (let j = 0, i = k; i < n; i += w, j++) {
        target[j] = job.target[i] as number;
        port[j] = job.port[i] as number;
      }
      return { ...job, target, port, concurrency: Math.max(1, Math.ceil(job.concurrency / w)) };
    });
    const timer = onProgress
      ? setInterval(() => {
          let sum = 0;
          for (let k = 0; k < w; k++) sum += Atomics.load(progress, k);
          onProgress(sum);
        }, 50)
      : undefined;
    try {
      const outs = await Promise.all(
        parts.map(
          (part, k) =>
            new Promise<SweepOut>((resolve, reject) => {
              const worker = this.workers[k] as Worker;
              const onError = (err: Error) => {
                worker.off('message', onMessage);
                reject(err);
              };
              const onMessage = (out: SweepOut) => {
                worker.off('error', onError);
                resolve(out);
              };
              worker.once('message', onMessage);
              worker.once('error', onError);
              const req: WorkerRequest = { job: part, progress, slot: k };
              worker.postMessage(req);
            }),
        ),
      );
      const status = new Int32Array(n);
      const rttMs = new Float32Array(n);
      outs.forEach((out, k) => {
        for (let j = 0, i = k; i < n; i += w, j++) {
          status[i] = out.status[j] as number;
          rttMs[i] = out.rttMs[j] as number;
        }
      });
      const rtt = job.targets.map((_, t) => {
        const e = new RttEstimator();
        for (const out of outs) e.merge(out.rtt[t] ?? { srtt: 0, rttvar: 0, samples: 0 });
        return e.state();
      });
      onProgress?.(n);
      return { status, rttMs, rtt };
    } finally {
      if (timer) clearInterval(timer);
    }
  }

  async close(): Promise<void> {
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.map((w) => w.terminate()));
  }
}
