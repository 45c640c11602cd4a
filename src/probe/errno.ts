import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import type { Verdict } from './verdict.js';

/**
 * Socket errors to verdicts (docs/architecture.md, facts measured on Linux): a refused connect or an ICMP
 * port unreachable means the packet got through and nothing listens; a connect that fails with
 * ECONNRESET or EPIPE completed its handshake and was reset after it (see isReset), which
 * is a listener that accepted and reset, never a closed port; ICMP admin-prohibited and
 * host-unreachable surface as EHOSTUNREACH, net-unreachable as ENETUNREACH, ICMPv6
 * administratively prohibited as EACCES; a firewall on this host (our own output chain) fails
 * the connect with EPERM or EACCES.
 */
const BY_ERRNO: Record<string, Verdict> = {
  ECONNREFUSED: 'closed',
  ECONNRESET: 'reset-after-connect',
  EPIPE: 'reset-after-connect',
  EHOSTUNREACH: 'blocked',
  ENETUNREACH: 'blocked',
  EHOSTDOWN: 'blocked',
  ENONET: 'blocked',
  EACCES: 'blocked',
  EPERM: 'blocked',
  EPROTO: 'blocked',
};

export const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (TCP reset or ICMP port unreachable)',
  ECONNRESET: 'connection reset after the handshake completed',
  EPIPE: 'connection reset after the handshake completed',
  EHOSTUNREACH: 'host unreachable (ICMP host unreachable or administratively prohibited)',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host down',
  EACCES: 'administratively prohibited (ICMPv6) or refused by a firewall on this host',
  EPERM: 'refused by a firewall on this host',
  EADDRNOTAVAIL: 'no local address or port available',
};

/** Verdict for an errno, or undefined when the error says nothing about the path (e.g. EMFILE). */
export function verdictForErrno(code: string): Verdict | undefined {
  return BY_ERRNO[code];
}

const ERRNO_NUMBERS = osConstants.errno as Record<string, number>;

/** The libuv statuses (negative errnos) of `names`, leaving out any this platform lacks. */
function statusesOf(names: readonly string[]): Set<number> {
  return new Set(names.map((c) => -(ERRNO_NUMBERS[c] ?? 0)).filter((n) => n !== 0));
}

const RESET_CODES = ['ECONNRESET', 'EPIPE'];

/**
 * The peer (or something on the path) reset a connection whose handshake had completed. Linux
 * reports a reset that answers the SYN (SYN-SENT) as ECONNREFUSED, and a reset of an established
 * or closing connection as ECONNRESET or EPIPE (tcp_reset(), net/ipv4/tcp_input.c). A connect
 * reports the latter when the reset arrived before the caller read the completion (a busy event
 * loop, or a peer that accepts and resets at once, as `portolan listen` does at its connection
 * limit): the SYN got through and something accepted, so for reachability the port is open.
 */
export function isReset(code: string): boolean {
  return RESET_CODES.includes(code);
}

const RESET_STATUS = statusesOf(RESET_CODES);

/** The same test on a libuv status (a negative errno): for the sweep's hot path. */
export function isResetStatus(status: number): boolean {
  return RESET_STATUS.has(status);
}

const SYN_TIMEOUT = statusesOf(['ETIMEDOUT']);

/**
 * A connect that completes with ETIMEDOUT: the kernel sent its SYN retransmissions
 * (net.ipv4.tcp_syn_retries: 6 by default, about 127 s; some hardened hosts set 1 or 2, 3 or 7 s)
 * and gave up with no answer at all before the caller's own timeout (a long --timeout). Nothing
 * answered, so the port is as silent as one whose connect timed out here: never a reject.
 */
export function isSynTimeoutStatus(status: number): boolean {
  return SYN_TIMEOUT.has(status);
}

const LOCAL_RESOURCE = ['EMFILE', 'ENFILE', 'EADDRNOTAVAIL', 'ENOBUFS', 'EAGAIN'];

/** Errors that are about this machine's resources: retry the port, never report them. */
export function isLocalResourceError(code: string): boolean {
  return LOCAL_RESOURCE.includes(code);
}

const LOCAL_STATUS = statusesOf(LOCAL_RESOURCE);

/** The same test on a libuv status (a negative errno), without naming it: for the sweep's hot path. */
export function isLocalResourceStatus(status: number): boolean {
  return LOCAL_STATUS.has(status);
}

const NAMES = new Map<number, string>();

/** libuv status (a negative errno) to its name: -111 -> ECONNREFUSED. */
export function errnoName(status: number): string {
  let name = NAMES.get(status);
  if (name === undefined) {
    try {
      name = getSystemErrorName(status);
    } catch {
      name = `E${-status}`;
    }
    NAMES.set(status, name);
  }
  return name;
}
