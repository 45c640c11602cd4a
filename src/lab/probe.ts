import dgram from 'node:dgram';
import net from 'node:net';

/**
 * The probe `lab verify` runs inside a source namespace for ports the plan does NOT name (check
 * refuses those: the plan is its scope). It only tells whether the target's firewall let the
 * packet through: a connect or a reply means open, a TCP reset or ICMP port unreachable means the
 * firewall passed it and nothing listens (closed), silence or an ICMP error of the firewall means
 * blocked. Targets are lab addresses only: the caller builds the list from the lab's state.
 */

export interface ProbeTarget {
  address: string;
  protocol: 'tcp' | 'udp';
  port: number;
}

export type ProbeResult = 'blocked' | 'open' | 'closed';

export interface ProbeOutcome extends ProbeTarget {
  result: ProbeResult;
  /** The errno or "no answer in N ms". */
  detail: string;
}

/** Errors a firewall answers with (ICMP admin-prohibited, host/net unreachable) or a local reject. */
const FIREWALL_ERRNO = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EACCES', 'EPERM', 'ETIMEDOUT']);

function tcp(t: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const s = net.connect({ host: t.address, port: t.port });
    const done = (result: ProbeResult, detail: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ ...t, result, detail });
    };
    const timer = setTimeout(() => done('blocked', `no answer in ${timeoutMs} ms`), timeoutMs);
    s.once('connect', () => done('open', 'connected'));
    s.once('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'EUNKNOWN';
      done(code === 'ECONNREFUSED' ? 'closed' : FIREWALL_ERRNO.has(code) ? 'blocked' : 'closed', code);
    });
  });
}

function udp(t: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(t.address.includes(':') ? 'udp6' : 'udp4');
    let settled = false;
    const done = (result: ProbeResult, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.close();
      resolve({ ...t, result, detail });
    };
    const timer = setTimeout(() => done('blocked', `no answer in ${timeoutMs} ms`), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'EUNKNOWN';
      done(code === 'ECONNREFUSED' ? 'closed' : FIREWALL_ERRNO.has(code) ? 'blocked' : 'closed', code);
    });
    s.on('message', () => done('open', 'a datagram came back'));
    // Only a connected UDP socket surfaces ICMP port unreachable (DESIGN.md).
    s.connect(t.port, t.address, () => s.send(Buffer.from('portolan lab: unplanned port probe\n')));
  });
}

/** Probes every target, `width` at a time. */
export async function probeAll(
  targets: readonly ProbeTarget[],
  timeoutMs = 1500,
  width = 256,
): Promise<ProbeOutcome[]> {
  const out: ProbeOutcome[] = new Array(targets.length);
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      const i = next++;
      const t = targets[i] as ProbeTarget;
      out[i] = await (t.protocol === 'tcp' ? tcp(t, timeoutMs) : udp(t, timeoutMs));
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, targets.length) }, worker));
  return out;
}
