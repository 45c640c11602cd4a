import { parentPort } from 'node:worker_threads';
import { type SweepJob, sweepTcp } from './tcp.js';

/** A sweep thread: runs the share of a round it is given and sends the results back. */
export interface WorkerRequest {
  job: SweepJob;
  /** Shared progress counters, one slot per worker. */
  progress: Int32Array;
  slot: number;
}

parentPort?.on('message', async (msg: WorkerRequest) => {
  const out = await sweepTcp(msg.job, (n) => Atomics.store(msg.progress, msg.slot, n));
  parentPort?.postMessage(out, [out.status.buffer as ArrayBuffer, out.rttMs.buffer as ArrayBuffer]);
});
