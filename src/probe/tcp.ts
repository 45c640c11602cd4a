import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { isLocalResourceStatus, isResetStatus, isSynTimeoutStatus } from './errno.js';
import type { RateLimiter } from './rate.js';
import { networkRows, type RttMemory, RttTable } from './rtt.js';

/**
 * The TCP reachability sweep: one connect per (target, port), many in flight, each cut off at the
 * target's adaptive timeout. This is the hot path of `check` on port ranges (a plan may name all
 * of 49152-65535), so it avoids net.Socket: a connect that is refused costs one libuv TCP handle,
 * one connect request and one callback, nothing else (about 3x less CPU than net.connect). When
 * the internal binding is not there (a future Node) it falls back to net.Socket, same results.
 * Set PORTOLAN_SWEEP=net to force the fallback, PORTOLAN_SWEEP=fresh for a new socket per port.
 */

/**
 * Per item: OPEN (the handshake completed, even where a reset followed before the completion was
 * read: see isReset), SILENT (timed out, here or in the kernel: see isSynTimeoutStatus),
 * SELF, or a negative errno (libuv status).
 */
export const OPEN = 1;
export const SILENT = 0;
/**
 * The connect reached its own socket twice in a row (see isSelfConnect): the target is this
 * machine and nothing listens on the port (a listener would keep the port from being a source).
 */
export const SELF = 2;

/**
 * A connect's libuv status as a sweep status: OPEN for success and for a reset after the handshake
 * (isReset: something accepted), SILENT for the kernel's own SYN timeout (isSynTimeoutStatus: no
 * answer at all), else the negative errno unchanged. Self-connects and local resource errors are
 * the caller's to handle first.
 */
function connectStatus(st: number): number {
  if (st === 0 || isResetStatus(st)) return OPEN;
  return isSynTimeoutStatus(st) ? SILENT : st;
}

export interface SweepTarget {
  address: string;
  family: 4 | 6;
  /** The estimate so far (from earlier rounds), so a retry round starts with the learned timeout. */
  rtt: { srtt: number; rttvar: number; samples: number };
}

export interface SweepJob {
  targets: SweepTarget[];
  /** Per item: index into targets. */
  target: Uint32Array;
  /** Per item: the port. */
  port: Uint16Array;
  /** Sockets in flight at most. */
  concurrency: number;
  /** Young connects at most (default ACTIVE_LIMIT). */
  activeLimit?: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
  /**
   * A target that has not answered yet takes its network's estimate (see networkRows) instead of
   * maxTimeoutMs, once another target of that network has answered. For a first round only: a
   * port it calls silent is asked again in later rounds, which wait the target's own estimate or
   * the user's timeout, so a target slower than its neighbours still gets its verdict.
   */
  seedFromNetwork?: boolean;
}

export interface SweepOut {
  status: Int32Array;
  /** Milliseconds to the answer; NaN when silent. */
  rttMs: Float32Array;
  /** What this sweep learned per target. */
  rtt: { srtt: number; rttvar: number; samples: number }[];
}

interface RawReq {
  oncomplete: (status: number, handle: RawTcp, req: RawReq) => void;
  i: number;
}
interface SockName {
  address?: string;
  port?: number;
}
interface RawTcp {
  connect(req: RawReq, address: string, port: number): number;
  connect6(req: RawReq, address: string, port: number): number;
  getsockname(out: SockName): number;
  getpeername(out: SockName): number;
  /** Closes with a RST (uv_tcp_close_reset); non-zero when it could not. */
  reset?(onClose: () => void): number;
  close(): void;
}
interface TcpWrap {
  TCP: new (type: number) => RawTcp;
  TCPConnectWrap: new () => RawReq;
  constants: { SOCKET: number };
}

function loadTcpWrap(): TcpWrap | undefined {
  if (process.env.PORTOLAN_SWEEP === 'net') return undefined;
  try {
    // process.binding is deprecated (DEP0111, documentation only) but kept for exactly this kind
    // of use; everything below checks the shape before trusting it.
    const b = (process as unknown as { binding(name: string): unknown }).binding(
      'tcp_wrap',
    ) as Partial<TcpWrap>;
    if (
      typeof b.TCP === 'function' &&
      typeof b.TCPConnectWrap === 'function' &&
      typeof b.constants?.SOCKET === 'number'
    )
      return b as TcpWrap;
  } catch {
    // fall through to net.Socket
  }
  return undefined;
}

const WRAP = loadTcpWrap();

/**
 * A TCP connect to one of this machine's own addresses, at a port in the ephemeral range where
 * nothing listens, can pick that very port as its source and connect to itself (TCP simultaneous
 * open, RFC 793 3.4): the socket "connects" although nothing listens. Such a connection is never
 * an open port.
 */
function isSelfConnect(h: RawTcp): boolean {
  const local: SockName = {};
  const peer: SockName = {};
  if (h.getsockname(local) !== 0 || h.getpeername(peer) !== 0) return false;
  return local.port === peer.port && local.address === peer.address;
}

/**
 * Closes a self-connected socket with a reset: a plain close would leave the connection in
 * TIME_WAIT for a minute, holding that one address:port pair, so the next connect to the port
 * could not use it as a source.
 */
function closeSelf(h: RawTcp): void {
  if (typeof h.reset !== 'function' || h.reset(() => {}) !== 0) h.close();
}
const REUSE_SOCKETS = process.platform === 'linux' && process.env.PORTOLAN_SWEEP !== 'fresh';
/** An unanswered connect older than this (or than half its timeout) lets the limit grow. */
const OVERDUE_MS = 50;
/** Spare sockets a sweep thread keeps at most (see dialAgain). */
const MAX_SPARES = 64;
const UV_ECONNABORTED = -(osConstants.errno.ECONNABORTED ?? 103);
export const SWEEP_ENGINE: 'tcp_wrap' | 'net' = WRAP ? 'tcp_wrap' : 'net';

const PENDING = 0;
const INFLIGHT = 1;
const DONE = 2;

/** Items a thread claims at a time from a shared sweep. */
const CLAIM_CHUNK = 64;

/**
 * A sweep split between threads: the items sit in shared memory, each thread claims chunks of
 * them through `cursor` and writes its results into `status` and `rttMs` in place.
 */
export interface SharedSweep {
  cursor: Int32Array;
  status: Int32Array;
  rttMs: Float32Array;
  /**
   * The round-trip estimates every thread reads and writes (see RttTable): rows as networkRows
   * gives for job.targets, filled by the caller with the estimates so far.
   */
  rtt?: RttMemory;
}

/**
 * A table for `job.targets`, with their estimates so far in their rows and in their networks'
 * rows; `shared`: in memory worker threads can use. Returns the table and each target's network row.
 */
export function sweepRttTable(job: SweepJob, shared: boolean): { table: RttTable; networkOf: Int32Array } {
  const { rowOf, rows } = networkRows(job.targets);
  const table = RttTable.create(rows, shared);
  job.targets.forEach((t, i) => {
    table.merge(i, t.rtt);
    table.merge(rowOf[i] as number, t.rtt);
  });
  return { table, networkOf: rowOf };
}

/**
 * Connects in flight per thread at the start of a sweep, and the floor it shrinks back to. Against
 * a host that resets, fewer half-open sockets make each connect cheaper in the kernel: over all
 * 65535 ports, 32-64 per thread beat 256 by about a fifth (bench/check-vs-nmap.mjs).
 */
export const ACTIVE_LIMIT = 64;

/**
 * Runs one sweep round. `onProgress` gets the number of finished items, at most every tick.
 * Local resource errors (EMFILE, EADDRNOTAVAIL) never become results: the item is retried with
 * fewer connects in flight.
 *
 * How many connects are in flight adapts between ACTIVE_LIMIT and `concurrency`: it doubles on
 * a tick where more connects timed out than were answered, or where none was answered while all
 * allowed were in flight and one had waited OVERDUE_MS (a host that drops: a round takes about
 * ports / concurrency timeouts, so the limit must not wait for the first timeouts to grow; a
 * host that answers within OVERDUE_MS is not mistaken for one), and halves on a tick where all
 * were answered (a host that resets: a few dozen half-open sockets keep the kernel fast;
 * thousands slow every connect).
 *
 * With a `limiter` (--max-rate), a connect starts only with a token from it: the pump stops when
 * none is due and runs again when one is (or at the next tick, whichever comes first).
 */
export function sweepTcp(
  job: SweepJob,
  onProgress?: (finished: number) => void,
  shared?: SharedSweep,
  limiter?: RateLimiter,
): Promise<SweepOut> {
  const n = job.port.length;
  const status = shared?.status ?? new Int32Array(n);
  const rttMs = shared?.rttMs ?? new Float32Array(n).fill(Number.NaN);
  // The estimates: this thread's own, or the pool's shared table (already holding the earlier rounds').
  const own = shared?.rtt ? undefined : sweepRttTable(job, false);
  const table = own ? own.table : new RttTable(shared?.rtt as RttMemory);
  const networkOf = own ? own.networkOf : networkRows(job.targets).rowOf;
  const learned = () => job.targets.map((_, t) => table.state(t));
  /** Target t's timeout now: its own estimate, or (first rounds) its network's, or the user's. */
  const timeoutOf = (t: number) =>
    table.timeout(t, job.minTimeoutMs, job.maxTimeoutMs, job.seedFromNetwork ? (networkOf[t] as number) : -1);
  if (n === 0) return Promise.resolve({ status, rttMs, rtt: learned() });
  // The items this thread takes: all of them, or chunks claimed from the shared cursor, so that
  // threads which run faster take more and all finish together.
  let chunkNext = 0;
  let chunkEnd = shared ? 0 : n;
  const claim = (): number => {
    if (chunkNext < chunkEnd) return chunkNext++;
    if (!shared) return -1;
    const from = Atomics.add(shared.cursor, 0, CLAIM_CHUNK);
    if (from >= n) {
      chunkNext = chunkEnd = n;
      return -1;
    }
    chunkNext = from + 1;
    chunkEnd = Math.min(n, from + CLAIM_CHUNK);
    return from;
  };
  let exhausted = false;

  const state = new Uint8Array(n);
  const started = new Float64Array(n);
  const handles: (RawTcp | net.Socket | undefined)[] = new Array(n);
  // Per target, the items in flight in start order: all share the target's current timeout, so
  // the oldest expires first and a tick only looks at the heads.
  const queues: number[][] = job.targets.map(() => []);
  const heads = new Uint32Array(job.targets.length);
  const retry: number[] = [];
  let inflight = 0;
  let finished = 0;
  let answered = 0;
  let expired = 0;
  const floor = Math.max(1, Math.min(job.concurrency, job.activeLimit ?? ACTIVE_LIMIT));
  /** Lowered after EMFILE and the like, then raised again tick by tick. */
  let cap = Math.max(1, job.concurrency);
  let limit = floor;
  let settle: (out: SweepOut) => void = () => {};
  let settled = false;
  const result = new Promise<SweepOut>((resolve) => {
    settle = resolve;
  });

  const finish = (i: number, st: number) => {
    state[i] = DONE;
    status[i] = st;
    inflight--;
    finished++;
    if (st === SILENT) {
      expired++;
      return;
    }
    answered++;
    const ms = performance.now() - (started[i] as number);
    rttMs[i] = ms;
    const t = job.target[i] as number;
    table.add(t, ms);
    table.add(networkOf[t] as number, ms);
  };

  const requeue = (i: number) => {
    state[i] = PENDING;
    inflight--;
    retry.push(i);
    // Spare sockets hold descriptors that a new connect may need (another target's, say).
    dropSpares();
    // Fewer in flight from now on; at least a few so the sweep keeps moving.
    cap = Math.max(8, Math.min(cap, inflight));
  };

  /**
   * A connect that reached this very socket (see isSelfConnect) says nothing about the target:
   * the port is dialled again from another ephemeral port, where the answer is the real one.
   */
  const selfConnects = new Uint8Array(n);
  const dialOver = (i: number) => {
    if (++(selfConnects[i] as number) >= 2) {
      finish(i, SELF);
      return;
    }
    state[i] = PENDING;
    inflight--;
    retry.push(i);
  };

  // Sockets whose last connect failed, per target, ready to dial the same address again (see
  // dialAgain): a socket keeps what its first address set (family, IPv4-mapped mode, the device
  // of a link-local scope), so it never goes to another address. A few are enough: a completion
  // hands its socket to the connect that pump() starts next. When the limit is reached, the
  // spares of other targets go first: a thread works through the targets one after another, and
  // a spare left with a target it has finished would never dial again (over 200 targets, that
  // stopped all reuse after the first few).
  const spares: RawTcp[][] = job.targets.map(() => []);
  /** The targets whose spare list may be non-empty, each once (`listed`). */
  let withSpares: number[] = [];
  const listed = new Uint8Array(job.targets.length);
  let spareCount = 0;
  const dropSpares = (keep = -1) => {
    if (!spareCount) return;
    for (const t of withSpares) {
      listed[t] = 0;
      if (t === keep) continue;
      const list = spares[t] as RawTcp[];
      spareCount -= list.length;
      for (const h of list.splice(0)) h.close();
    }
    withSpares = [];
    if (keep >= 0 && (spares[keep] as RawTcp[]).length) {
      withSpares.push(keep);
      listed[keep] = 1;
    }
  };
  /** Keeps a socket whose connect failed for the next connect to target t, or closes it. */
  const stash = (h: RawTcp, t: number) => {
    if (spareCount >= MAX_SPARES) dropSpares(t);
    if (spareCount >= MAX_SPARES) {
      h.close();
      return;
    }
    const list = spares[t] as RawTcp[];
    if (!listed[t]) {
      withSpares.push(t);
      listed[t] = 1;
    }
    list.push(h);
    spareCount++;
  };

  const onComplete = WRAP
    ? (st: number, handle: RawTcp, req: RawReq) => {
        const i = req.i;
        if (state[i] !== INFLIGHT) {
          handle.close(); // already timed out; this is the cancellation
          return;
        }
        handles[i] = undefined;
        if (st < 0 && isLocalResourceStatus(st)) {
          handle.close();
          requeue(i);
        } else if (st === 0 && isSelfConnect(handle)) {
          closeSelf(handle);
          dialOver(i);
        } else {
          const out = connectStatus(st);
          // Only a socket whose connect was refused or unreachable is dialled again (dialAgain).
          if (out < 0 && REUSE_SOCKETS) stash(handle, job.target[i] as number);
          else handle.close();
          finish(i, out);
        }
        pump();
      }
    : undefined;

  const dial = (h: RawTcp, i: number, t: SweepTarget, port: number): number => {
    const W = WRAP as TcpWrap;
    const req = new W.TCPConnectWrap();
    req.oncomplete = onComplete as RawReq['oncomplete'];
    req.i = i;
    return t.family === 4 ? h.connect(req, t.address, port) : h.connect6(req, t.address, port);
  };

  const startRaw = (i: number, t: SweepTarget, port: number): number => {
    const spare = (spares[job.target[i] as number] as RawTcp[]).pop();
    if (spare) {
      spareCount--;
      if (dialAgain(spare, i, t, port) === 0) {
        handles[i] = spare;
        return 0;
      }
      spare.close(); // not reusable after all: a fresh socket decides
    }
    const W = WRAP as TcpWrap;
    const h = new W.TCP(W.constants.SOCKET);
    const err = dial(h, i, t, port);
    if (err) {
      h.close();
      return err;
    }
    handles[i] = h;
    return 0;
  };

  /**
   * Linux lets a TCP socket whose connect failed (reset, ICMP error) connect again: the next
   * connect() reports ECONNABORTED once and leaves it unconnected, and the one after dials
   * afresh from a new ephemeral port. Against a host that resets, this saves a socket(), a
   * close() and two epoll changes per port, about 40% of the sweep's kernel time.
   */
  const dialAgain = (h: RawTcp, i: number, t: SweepTarget, port: number): number => {
    const err = dial(h, i, t, port);
    return err === UV_ECONNABORTED ? dial(h, i, t, port) : err;
  };

  const startNet = (i: number, t: SweepTarget, port: number): number => {
    const s = new net.Socket();
    handles[i] = s;
    const done = (st: number) => {
      s.destroy();
      if (state[i] !== INFLIGHT) return;
      handles[i] = undefined;
      if (st < 0 && isLocalResourceStatus(st)) requeue(i);
      else finish(i, connectStatus(st));
      pump();
    };
    s.once('connect', () => {
      if (s.localPort === s.remotePort && s.localAddress === s.remoteAddress) {
        s.resetAndDestroy();
        if (state[i] !== INFLIGHT) return;
        handles[i] = undefined;
        dialOver(i);
        pump();
      } else done(OPEN);
    });
    s.once('error', (err: NodeJS.ErrnoException) => done(typeof err.errno === 'number' ? err.errno : -1));
    s.connect({ host: t.address, port, family: t.family });
    return 0;
  };

  const start = WRAP ? startRaw : startNet;

  let paced: NodeJS.Timeout | undefined;
  function pump(): void {
    while (inflight < Math.min(limit, cap)) {
      if (limiter && (retry.length || !exhausted)) {
        const wait = limiter.tryTake();
        if (wait > 0) {
          paced ??= setTimeout(
            () => {
              paced = undefined;
              if (!settled) pump();
            },
            Math.max(1, Math.ceil(wait)),
          );
          break;
        }
      }
      const i = retry.length ? (retry.pop() as number) : exhausted ? -1 : claim();
      if (i < 0) {
        exhausted = true;
        break;
      }
      const ti = job.target[i] as number;
      state[i] = INFLIGHT;
      started[i] = performance.now();
      inflight++;
      const err = start(i, job.targets[ti] as SweepTarget, job.port[i] as number);
      if (err) {
        if (isLocalResourceStatus(err)) {
          // Out of descriptors or ports: stop here; a completion or the next tick tries again.
          requeue(i);
          break;
        }
        finish(i, err);
        continue;
      }
      (queues[ti] as number[]).push(i);
    }
    if (exhausted && inflight === 0 && retry.length === 0 && !settled) {
      settled = true;
      clearInterval(timer);
      if (paced) clearTimeout(paced);
      dropSpares();
      onProgress?.(finished);
      settle({ status, rttMs, rtt: learned() });
    }
  }

  const tick = () => {
    if (settled) return;
    const now = performance.now();
    // Some connect has waited OVERDUE_MS (or half its timeout) without an answer: the target
    // drops, or is farther away than that.
    let overdue = false;
    for (let t = 0; t < queues.length; t++) {
      const q = queues[t] as number[];
      let h = heads[t] as number;
      if (h >= q.length) {
        // Nothing of this target's in flight here.
        if (h) {
          q.length = 0;
          heads[t] = 0;
        }
        continue;
      }
      // Other threads' answers (and other targets' of the network) count too.
      const timeout = timeoutOf(t);
      while (h < q.length) {
        const i = q[h] as number;
        if (state[i] !== INFLIGHT) {
          h++;
          continue;
        }
        if (now - (started[i] as number) < timeout) break;
        const handle = handles[i];
        handles[i] = undefined;
        finish(i, SILENT);
        if (handle instanceof net.Socket) handle.destroy();
        else handle?.close();
        h++;
      }
      if (h < q.length && now - (started[q[h] as number] as number) >= Math.min(timeout / 2, OVERDUE_MS))
        overdue = true;
      if (h > 4096 && h * 2 > q.length) {
        q.splice(0, h);
        h = 0;
      }
      heads[t] = h;
    }
    if (expired > answered || (answered === 0 && overdue && inflight >= Math.min(limit, cap)))
      limit = Math.min(job.concurrency, limit * 2);
    else if (expired === 0 && answered > 0) limit = Math.max(floor, limit >> 1);
    expired = 0;
    answered = 0;
    // Creep back up after a shortage: a descriptor freed by others may be ours again.
    if (cap < job.concurrency && inflight >= cap)
      cap = Math.min(job.concurrency, cap + Math.max(1, cap >> 3));
    onProgress?.(finished);
    pump();
  };
  // The tick runs in the check phase (setImmediate), after the poll phase of the same loop turn has
  // run the completions the kernel already delivered: a timer fires before the poll phase, so a
  // loop held up past a connect's timeout (shared CPU) would otherwise call silent the connects
  // whose answers sit unread in epoll, and retry them in the next round.
  const timer = setInterval(
    () => setImmediate(tick),
    Math.max(2, Math.min(10, Math.floor(job.minTimeoutMs / 20))),
  );
  pump();
  return result;
}

/** What one quiet connect saw: OPEN, SILENT or a negative errno, and the time it took. */
export interface QuietConnect {
  status: number;
  ms: number;
}

/**
 * One connect with nothing else in flight, timed from just before the connect() call to the
 * completion callback, which runs as soon as the event loop wakes for it: the round trip of the
 * SYN and its answer plus the loop's wake-up (tens of microseconds), not the queueing of a sweep.
 * Used for the `rttMs` that `check` reports; the sweep's own per-port times include its queueing
 * and serve only its timeouts.
 */
export function quietConnect(
  address: string,
  family: 4 | 6,
  port: number,
  timeoutMs: number,
): Promise<QuietConnect> {
  return new Promise((resolve) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let t0 = 0;
    const end = (status: number, close: () => void) => {
      const ms = performance.now() - t0;
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      close();
      resolve({ status, ms });
    };
    if (WRAP) {
      const h = new WRAP.TCP(WRAP.constants.SOCKET);
      const req = new WRAP.TCPConnectWrap();
      req.oncomplete = (st) => {
        if (st === 0 && isSelfConnect(h)) end(SILENT, () => closeSelf(h));
        else end(connectStatus(st), () => h.close());
      };
      timer = setTimeout(() => end(SILENT, () => h.close()), timeoutMs);
      t0 = performance.now();
      const err = family === 4 ? h.connect(req, address, port) : h.connect6(req, address, port);
      if (err) end(err, () => h.close());
      return;
    }
    const s = new net.Socket();
    timer = setTimeout(() => end(SILENT, () => s.destroy()), timeoutMs);
    s.once('connect', () => end(OPEN, () => s.destroy()));
    s.once('error', (e: NodeJS.ErrnoException) => {
      const st = typeof e.errno === 'number' ? e.errno : -1;
      end(connectStatus(st), () => s.destroy());
    });
    t0 = performance.now();
    s.connect({ host: address, port, family });
  });
}
