import { execFile } from 'node:child_process';

/**
 * The kernel's neighbour (ARP / NDP) entry for an on-link target, read from the namespace this
 * process runs in with iproute2's JSON output (`ip -j route get`, `ip -j neigh show`). An on-link
 * address with no machine behind it leaves the entry INCOMPLETE while the kernel asks (3 tries a
 * second apart) and FAILED after that; connects to it fail with EHOSTUNREACH only after those
 * ~3 s, so a shorter connect timeout sees silence that looks like a firewall drop (DESIGN.md,
 * measured facts). Linux only; anywhere else, or without `ip`, nothing is known.
 */
export interface Neighbour {
  /** NUD state as iproute2 names it: FAILED, INCOMPLETE, REACHABLE, STALE, ... */
  state: string;
  device?: string;
}

/** States in which no machine has answered for the address. */
const UNANSWERED = new Set(['FAILED', 'INCOMPLETE']);

function ipJson(args: readonly string[]): Promise<unknown> {
  return new Promise((resolve) => {
    execFile('ip', ['-j', ...args], { timeout: 5000 }, (err, stdout) => {
      if (err) return resolve(undefined);
      try {
        resolve(JSON.parse(stdout || 'null'));
      } catch {
        resolve(undefined);
      }
    });
  });
}

/**
 * The neighbour entry of `address` when the route to it is on-link (no gateway, not a local
 * address); undefined when it goes through a router, is this machine's own, or nothing is known.
 */
export async function neighbourOf(address: string): Promise<Neighbour | undefined> {
  if (process.platform !== 'linux') return undefined;
  const routes = await ipJson(['route', 'get', address]);
  const route = Array.isArray(routes) ? (routes[0] as Record<string, unknown> | undefined) : undefined;
  if (!route || route.gateway || (route.type !== undefined && route.type !== 'unicast')) return undefined;
  const dev = typeof route.dev === 'string' ? route.dev : undefined;
  if (!dev || dev === 'lo') return undefined;
  const neigh = await ipJson(['neigh', 'show', 'to', address, 'dev', dev]);
  const entry = Array.isArray(neigh)
    ? (neigh as Record<string, unknown>[]).find((n) => typeof n.dst === 'string')
    : undefined;
  if (!entry) return undefined;
  const states = Array.isArray(entry.state) ? (entry.state as string[]) : [];
  const state = states.find((s) => UNANSWERED.has(s)) ?? states[0];
  return state ? { state, device: dev } : undefined;
}

/** True when the entry shows that no machine answered ARP / NDP for the address. */
export function isUnanswered(n: Neighbour | undefined): boolean {
  return n !== undefined && UNANSWERED.has(n.state);
}
