import { UsageError } from '../errors.js';
import type { Flow } from '../model/flow.js';
import { mergePortRanges, type PortRange } from '../model/ports.js';
import { pushAll } from '../util/arrays.js';
import type { Target } from './dns.js';

/**
 * Most probes one `check` makes without being told otherwise (`--max-probes`): one probe is one
 * (address, protocol, port). 262144 is four hosts' full port range, or a /24 of CIDR hosts on 1024
 * ports; a /24 over the Windows dynamic range 49152-65535 (4.2 million connects) needs the flag.
 */
export const MAX_PROBES = 262_144;

/**
 * Most addresses one DNS name may resolve to and have every one probed (`--max-addresses`). A name
 * with more (a CDN, a round-robin pool, a wildcard record) is refused before any probe.
 */
export const MAX_NAME_ADDRESSES = 16;

/** What a check will probe, counted once targets are resolved and before the first packet. */
export interface PlannedProbes {
  flows: number;
  /** Distinct addresses probed. */
  addresses: number;
  /** Distinct (address, protocol, port): each is one probe, shared by the flows that name it. */
  probes: number;
  /** DNS-named targets and the number of addresses each resolved to. */
  names: { host: string; name: string; addresses: number }[];
}

export class ProbeLimitError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'ProbeLimitError';
  }
}

/** Counts the probes of resolved flows: per (address, protocol), the union of their port ranges. */
export function plannedProbes(
  work: readonly { flow: Flow; target: Target; ports: readonly PortRange[] }[],
): PlannedProbes {
  const byKey = new Map<string, PortRange[]>();
  const names = new Map<string, { host: string; name: string; addresses: number }>();
  let flows = 0;
  for (const w of work) {
    if (w.target.kind !== 'probe') continue;
    flows++;
    if (w.target.servername && w.flow.to.host)
      names.set(w.target.servername, {
        host: w.flow.to.host,
        name: w.target.servername,
        addresses: w.target.addresses.length,
      });
    for (const { address } of w.target.addresses) {
      const key = `${address}|${w.flow.protocol}`;
      const list = byKey.get(key);
      if (list) pushAll(list, w.ports);
      else byKey.set(key, [...w.ports]);
    }
  }
  let probes = 0;
  const addresses = new Set<string>();
  for (const [key, ranges] of byKey) {
    addresses.add(key.slice(0, key.lastIndexOf('|')));
    for (const [lo, hi] of mergePortRanges(ranges)) probes += hi - lo + 1;
  }
  return { flows, addresses: addresses.size, probes, names: [...names.values()] };
}

/**
 * Refuses a check larger than its limits, naming the limit, the count and the flag that lifts it.
 * Throws ProbeLimitError (exit 2).
 */
export function checkLimits(
  p: PlannedProbes,
  limits: { maxProbes?: number; maxAddresses?: number } = {},
): void {
  const maxAddresses = limits.maxAddresses ?? MAX_NAME_ADDRESSES;
  for (const n of p.names)
    if (n.addresses > maxAddresses)
      throw new ProbeLimitError(
        `refused: ${n.name} (host ${n.host}) resolves to ${n.addresses} addresses, more than the ${maxAddresses} one name may have probed; name its hosts in the inventory, or give --max-addresses ${n.addresses} to probe them all`,
      );
  const maxProbes = limits.maxProbes ?? MAX_PROBES;
  if (p.probes > maxProbes)
    throw new ProbeLimitError(
      `refused: this check would make ${p.probes} probes (${p.addresses} address${p.addresses === 1 ? '' : 'es'} x ports), more than the limit of ${maxProbes}; narrow it with --to or --port, or give --max-probes ${p.probes} to run it`,
    );
}

/** One line for the start of a check: what will be probed. */
export function plannedText(p: PlannedProbes, maxProbes = MAX_PROBES): string {
  return `${p.flows} flow${p.flows === 1 ? '' : 's'}, ${p.addresses} address${p.addresses === 1 ? '' : 'es'}, ${p.probes} probe${p.probes === 1 ? '' : 's'} planned (limit ${maxProbes})`;
}
