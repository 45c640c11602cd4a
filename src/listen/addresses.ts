import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { containsCidr, normalizeCidr } from 'cidr-tools';
import { UsageError } from '../errors.js';
import type { Host } from '../inventory/types.js';

/**
 * Where the responder binds, and why.
 *
 * Safe by default, within what a responder is for: it must be reachable from the other hosts of the
 * plan, so loopback alone would prove nothing. It therefore binds the narrowest set that still
 * works: the host's own inventory address when that address is on this machine (the firewall
 * question is about exactly that address), and only when it is not (NAT, a DNS name that resolves
 * elsewhere, a CIDR with no local member) every address, with a notice. Whatever it binds, it answers
 * only probes that carry the shared secret's HMAC, never with more bytes than it received, and only
 * until the TTL; everything else gets no bytes at all. A TCP handshake still shows a scanner that the
 * port is open: that is the point of the test and cannot be hidden.
 */
export interface BindChoice {
  /** Addresses for the ports other hosts reach (a wildcard is one dual-stack socket per port). */
  addresses: string[];
  /** The addresses include loopback (a wildcard or 127.0.0.1 itself): local flows need no socket of their own. */
  coversLoopback: boolean;
  wildcard: boolean;
  /** One line for the user: why these addresses. */
  why: string;
}

export const LOOPBACK = '127.0.0.1';
const WILDCARDS = new Set(['0.0.0.0', '::']);

/** This machine's interface addresses, normalized. */
export function localAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((i) => normalizeIp(i.address.replace(/%.*$/, '')));
}

/** Canonical text of an IP address; IPv4-mapped IPv6 addresses become IPv4. */
export function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  return isIP(ip) ? normalizeCidr(ip) : ip;
}

/** An interface address, or anywhere in 127.0.0.0/8 (Linux routes the whole block to loopback). */
export function isLocalAddress(ip: string, locals: readonly string[]): boolean {
  const n = normalizeIp(ip);
  return locals.includes(n) || (isIP(n) === 4 && containsCidr('127.0.0.0/8', n));
}

/** The unspecified address to bind "everything": `::` is dual-stack on Linux; IPv4 only without IPv6. */
export function wildcardFor(locals: readonly string[]): string {
  return locals.some((a) => isIP(a) === 6) ? '::' : '0.0.0.0';
}

export interface ChooseOptions {
  locals?: readonly string[];
  /** Resolves a DNS name to addresses (tests pass a fake). */
  resolve?: (name: string) => Promise<string[]>;
}

async function resolveName(name: string): Promise<string[]> {
  const timeout = new Promise<string[]>((resolve) => setTimeout(() => resolve([]), 5000).unref());
  const found = lookup(name, { all: true, verbatim: true }).then(
    (list) => list.map((a) => a.address),
    () => [],
  );
  return Promise.race([found, timeout]);
}

export async function chooseBind(
  host: Host,
  explicit: readonly string[],
  opts: ChooseOptions = {},
): Promise<BindChoice> {
  const locals = opts.locals ?? localAddresses();
  if (explicit.length) {
    const addresses = [...new Set(explicit.map((a) => checkBindFlag(a, locals)))];
    return finish(addresses, `--bind ${addresses.join(', ')}`);
  }
  const a = host.address;
  let mine: string[] = [];
  let what = '';
  if (a.kind === 'ip') {
    mine = isLocalAddress(a.text, locals) ? [normalizeIp(a.text)] : [];
    what = `address ${a.text}`;
  } else if (a.kind === 'cidr') {
    mine = locals.filter((l) => isIP(l) === a.version && !l.startsWith('fe80:') && containsCidr(a.text, l));
    what = `network ${a.text}`;
  } else {
    const resolved = (await (opts.resolve ?? resolveName)(a.text)).map(normalizeIp);
    mine = resolved.filter((r) => isLocalAddress(r, locals));
    what = resolved.length
      ? `name ${a.text} (${resolved.join(', ')})`
      : `name ${a.text} (does not resolve here)`;
  }
  mine = [...new Set(mine)];
  if (mine.length) return finish(mine, `${host.name}'s ${what} is on this machine`);
  const any = wildcardFor(locals);
  return finish(
    [any],
    `${host.name}'s ${what} is not on this machine (NAT?), so every address is bound; use --bind to narrow`,
  );
}

function finish(addresses: string[], why: string): BindChoice {
  const wildcard = addresses.some((a) => WILDCARDS.has(a));
  // `::` is dual-stack and covers 127.0.0.1; 0.0.0.0 covers it too. A specific address does not.
  const coversLoopback = wildcard || addresses.includes(LOOPBACK);
  return { addresses, coversLoopback, wildcard, why };
}

function checkBindFlag(raw: string, locals: readonly string[]): string {
  if (!isIP(raw))
    throw new UsageError(
      `--bind ${JSON.stringify(raw)} is not an IP address (expected an address of this machine, 0.0.0.0 or ::)`,
    );
  const ip = normalizeIp(raw);
  if (WILDCARDS.has(ip) || isLocalAddress(ip, locals)) return ip;
  throw new UsageError(
    `--bind ${ip} is not an address of this machine (expected one of: ${[...new Set(locals)].join(', ')}, 0.0.0.0 or ::)`,
  );
}

/** An address as the user reads it: wildcards say what they cover. */
export function shownAddress(a: string): string {
  if (a === '::') return '[::] (every address, IPv6 and IPv4)';
  if (a === '0.0.0.0') return '0.0.0.0 (every IPv4 address)';
  return a;
}
