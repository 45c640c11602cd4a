import { parentPort } from 'node:worker_threads';
import { type SharedSweep, type SweepJob, type SweepOut, sweepTcp } from './tcp.js';

/** A sweep thread: claims items of a shared round until none are left, then sends what it learned. */
export interface WorkerRequest {
  job: SweepJob;
  shared: SharedSweep;
  /** Shared progress counters, one slot per worker. */
  progress: Int32Array;
  slot: number;
}

/** What the thread learned per target; its results are already in `shared`. */
export type WorkerReply = SweepOut['rtt'];

parentPort?.on('message', async (msg: WorkerRequest) => {
  const out = await sweepTcp(msg.job, (n) => Atomics.store(msg.progress, msg.slot, n), msg.shared);
  const reply: WorkerReply = out.rtt;
  parentPort?.postMessage(reply);
});
