import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { RateLimiter } from './rate.js';
import { type SharedSweep, type SweepJob, type SweepOut, sweepRttTable, sweepTcp } from './tcp.js';
import type { WorkerReply, WorkerRequest } from './tcp-worker.js';

/** Below this many connects a round runs on the main thread: a worker costs ~40 ms to start. */
export const WORKER_THRESHOLD = 4096;

/**
 * Runs large TCP sweep rounds on `size` threads, the main thread and size - 1 workers, so the
 * connect syscalls of a 65535-port sweep use more than one core. Threads claim small chunks of the
 * round in turn, so none sits idle while another lags. The round-trip estimates are shared too
 * (SharedSweep.rtt): the first answer from a target, whichever thread sees it, sets the timeout
 * of every thread's connects to it.
 */
export class SweepPool {
  private workers: Worker[] = [];

  constructor(private readonly size: number) {}

  /** Worker threads started so far (warm starts them; close ends them). */
  get started(): number {
    return this.workers.length;
  }

  static auto(requested: number | undefined): SweepPool {
    return new SweepPool(requested ?? Math.min(2, availableParallelism()));
  }

  /**
   * Starts the threads now, so their start-up overlaps whatever the caller does next (runCheck
   * lays out the work meanwhile). Idle threads cost a little memory, nothing else.
   */
  warm(): this {
    // The main thread is one of them.
    while (this.workers.length < this.size - 1) {
      const worker = new Worker(new URL('./tcp-worker.js', import.meta.url));
      worker.unref();
      this.workers.push(worker);
    }
    return this;
  }

  /**
   * Runs one round. With a `limiter` (--max-rate) the round stays on the main thread, where the
   * one limiter paces every connect: a capped rate is well within one thread's reach.
   */
  async run(
    job: SweepJob,
    onProgress?: (finished: number) => void,
    limiter?: RateLimiter,
  ): Promise<SweepOut> {
    const n = job.port.length;
    const w = Math.min(this.size, Math.ceil(n / 1024));
    if (limiter || w <= 1 || n < WORKER_THRESHOLD) return sweepTcp(job, onProgress, undefined, limiter);
    this.warm();
    // The items and results live in shared memory; threads claim chunks as they go (see
    // SharedSweep), so a thread that gets less CPU does less of the round.
    const target = new Uint32Array(new SharedArrayBuffer(job.target.byteLength));
    target.set(job.target);
    const port = new Uint16Array(new SharedArrayBuffer(job.port.byteLength));
    port.set(job.port);
    // One set of estimates for all threads: an answer any thread sees sets every thread's timeout.
    const { table } = sweepRttTable(job, true);
    const shared: SharedSweep = {
      rtt: table.memory,
      cursor: new Int32Array(new SharedArrayBuffer(4)),
      status: new Int32Array(new SharedArrayBuffer(4 * n)),
      rttMs: new Float32Array(new SharedArrayBuffer(4 * n)).fill(Number.NaN),
    };
    const progress = new Int32Array(new SharedArrayBuffer(4 * (w - 1)));
    const part: SweepJob = { ...job, target, port, concurrency: Math.max(1, Math.ceil(job.concurrency / w)) };
    let mine = 0;
    const timer = onProgress
      ? setInterval(() => {
          let sum = mine;
          for (let k = 0; k < w - 1; k++) sum += Atomics.load(progress, k);
          onProgress(sum);
        }, 50)
      : undefined;
    try {
      await Promise.all([
        sweepTcp(
          part,
          (done) => {
            mine = done;
          },
          shared,
        ),
        ...Array.from(
          { length: w - 1 },
          (_, k) =>
            new Promise<WorkerReply>((resolve, reject) => {
              const worker = this.workers[k] as Worker;
              const onError = (err: Error) => {
                worker.off('message', onMessage);
                reject(err);
              };
              const onMessage = (out: WorkerReply) => {
                worker.off('error', onError);
                resolve(out);
              };
              worker.once('message', onMessage);
              worker.once('error', onError);
              const req: WorkerRequest = { job: part, shared, progress, slot: k };
              worker.postMessage(req);
            }),
        ),
      ]);
      const rtt = job.targets.map((_, t) => table.state(t));
      onProgress?.(n);
      return { status: shared.status, rttMs: shared.rttMs, rtt };
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
