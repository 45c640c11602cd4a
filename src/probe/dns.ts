import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Host } from '../inventory/types.js';
import { isUnspecified } from '../model/address.js';
import type { Flow } from '../model/flow.js';
import { isLoopback, localAddresses, sameIp } from './scope.js';
import type { Evidence } from './verdict.js';

/** Where a flow's probes go, or why they go nowhere. */
export type Target =
  | { kind: 'probe'; addresses: { address: string; family: 4 | 6 }[]; servername?: string; note?: string }
  | { kind: 'skipped'; reason: string }
  | { kind: 'dns-failed'; reason: string; evidence: Evidence };

export type Lookup = (name: string) => Promise<string[]>;

const DNS_TIMEOUT_MS = 5000;
/** A CIDR target is probed address by address up to this many (a /24); beyond, name the hosts. */
export const MAX_CIDR_ADDRESSES = 256;

export const systemLookup: Lookup = async (name) => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error(`lookup ${name} timed out`), { code: 'ETIMEOUT' })),
      DNS_TIMEOUT_MS,
    );
  });
  try {
    const rs = await Promise.race([lookup(name, { all: true, verbatim: true }), timeout]);
    return rs.map((r) => r.address);
  } finally {
    clearTimeout(timer);
  }
};

function family(ip: string): 4 | 6 {
  return isIP(ip) === 6 ? 6 : 4;
}

/** Host addresses of a CIDR: all of them, less network and broadcast for IPv4 prefixes up to /30. */
export function expandCidr(cidr: string): string[] | undefined {
  const [net = '', p = '0'] = cidr.split('/');
  const prefix = Number(p);
  if (isIP(net) === 4) {
    const size = 2 ** (32 - prefix);
    if (size > MAX_CIDR_ADDRESSES) return undefined;
    const base = net.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    const skipEnds = prefix <= 30;
    const out: string[] = [];
    for (let i = skipEnds ? 1 : 0; i < (skipEnds ? size - 1 : size); i++) {
      const v = base + i;
      out.push([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.'));
    }
    return out;
  }
  if (128 - prefix > 8) return undefined;
  const size = 2 ** (128 - prefix);
  const groups = expand6(net);
  const out: string[] = [];
  for (let i = 0; i < size; i++) {
    const g = [...groups];
    g[7] = ((g[7] as number) + i) & 0xffff;
    out.push(g.map((x) => x.toString(16)).join(':'));
  }
  return out;
}

function expand6(ip: string): number[] {
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') && tail ? tail.split(':') : [];
  const fill = ip.includes('::') ? Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t].map((x) => Number.parseInt(x || '0', 16));
}

function owner(hosts: readonly Host[], ip: string, self: string): Host | undefined {
  return hosts.find((h) => h.name !== self && (h.address.kind === 'ip' ? sameIp(h.address.text, ip) : false));
}

/**
 * Resolves a flow's destination. Unspecified peers and ICMP are skipped with the reason; a local
 * flow goes to loopback; a DNS name must resolve, not to loopback, and not to another inventory
 * host's address; a host whose name is a DNS name and whose address is an IP must agree with DNS.
 */
export async function resolveTarget(
  flow: Flow,
  hosts: readonly Host[],
  resolve: Lookup = systemLookup,
): Promise<Target> {
  const to = flow.to;
  if (to.host === null)
    return {
      kind: 'skipped',
      reason: `the documents leave this peer unspecified (${to.description ?? 'any'}): nothing to probe`,
    };
  if (flow.protocol === 'icmp')
    return {
      kind: 'skipped',
      reason: 'ICMP is not probed (Node has no raw sockets); ping from this host to check it',
    };
  const host = hosts.find((h) => h.name === to.host);
  if (!host) return { kind: 'skipped', reason: `host ${to.host} is not in the inventory` };
  const a = host.address;
  if (flow.local) {
    const lo = a.kind !== 'dns' && a.version === 6 ? '::1' : '127.0.0.1';
    return {
      kind: 'probe',
      addresses: [{ address: lo, family: family(lo) }],
      note: `local flow: probed on loopback (${lo})`,
    };
  }
  if (a.kind === 'ip') {
    // A host named like a DNS name must resolve to its inventory address; a bare label need not resolve.
    if (host.name.includes('.') && isIP(host.name) === 0) {
      let ips: string[] = [];
      try {
        ips = await resolve(host.name);
      } catch {
        ips = [];
      }
      if (ips.length && !ips.some((ip) => sameIp(ip, a.text)))
        return {
          kind: 'dns-failed',
          reason: `${host.name} resolves to ${ips.join(', ')}, but the inventory gives ${a.text}`,
          evidence: {},
        };
    }
    return { kind: 'probe', addresses: [{ address: a.text, family: a.version }] };
  }
  if (a.kind === 'cidr') {
    // 0.0.0.0 inside a CIDR (0.0.0.0/31) is this machine, not a host of the network.
    const all = expandCidr(a.text)?.filter((ip) => !isUnspecified(ip));
    if (!all)
      return {
        kind: 'skipped',
        reason: `${a.text} has more than ${MAX_CIDR_ADDRESSES} addresses: list its hosts in the inventory to probe them`,
      };
    return {
      kind: 'probe',
      addresses: all.map((ip) => ({ address: ip, family: a.version })),
      note: `${all.length} addresses of ${a.text}`,
    };
  }
  if (a.text.startsWith('*.'))
    return { kind: 'skipped', reason: `${a.text} is a wildcard name: no single address to probe` };
  let ips: string[];
  try {
    ips = await resolve(a.text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    return { kind: 'dns-failed', reason: `${a.text} does not resolve (${code})`, evidence: { errno: code } };
  }
  if (!ips.length) return { kind: 'dns-failed', reason: `${a.text} resolves to no address`, evidence: {} };
  const loop = ips.filter(isLoopback);
  if (loop.length)
    return {
      kind: 'dns-failed',
      reason: `${a.text} resolves to loopback (${loop.join(', ')}): a remote host's name must not point at this machine`,
      evidence: {},
    };
  // A sinkhole answer (0.0.0.0, ::) or one of this machine's own addresses would probe this
  // machine and call the remote path ok.
  const none = ips.filter(isUnspecified);
  if (none.length)
    return {
      kind: 'dns-failed',
      reason: `${a.text} resolves to the unspecified address (${none.join(', ')}), as a DNS sinkhole answers: a connect to it reaches this machine, not the host`,
      evidence: {},
    };
  const here = localAddresses().filter((l) => !isLoopback(l));
  const self = ips.filter((ip) => here.some((l) => sameIp(l, ip)));
  if (self.length)
    return {
      kind: 'dns-failed',
      reason: `${a.text} resolves to ${self.join(', ')}, an address of this machine: a remote host's name must not point at this machine`,
      evidence: {},
    };
  for (const ip of ips) {
    const other = owner(hosts, ip, host.name);
    if (other)
      return {
        kind: 'dns-failed',
        reason: `${a.text} resolves to ${ip}, which the inventory gives to host ${other.name}`,
        evidence: {},
      };
  }
  return {
    kind: 'probe',
    addresses: ips.map((ip) => ({ address: ip, family: family(ip) })),
    servername: a.text,
    note: `${a.text} resolves to ${ips.join(', ')}`,
  };
}
