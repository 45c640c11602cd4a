import type { PortRange } from './ports.js';

export type Protocol = 'tcp' | 'udp' | 'icmp';

export interface Endpoint {
  /** Inventory host name; null for a peer the documents leave unspecified. */
  host: string | null;
  role: string | null;
  /** The host's address as the inventory gives it (IP, CIDR or DNS name); null when unspecified. */
  address: string | null;
  /** For an unspecified peer: who the documents say it is. */
  description?: string;
}

export interface FlowSource {
  doc: string;
  ref: string;
}

/** One flow of the plan (docs/contracts.md, the plan contract). */
export interface Flow {
  /** Stable within a plan: product, hosts, roles, protocol and service. */
  id: string;
  product: string;
  from: Endpoint;
  to: Endpoint;
  protocol: Protocol;
  /** Inclusive [low, high] pairs, merged; empty for ICMP. */
  ports: PortRange[];
  icmpType?: 'echo-request' | 'any';
  service: string;
  tls: boolean;
  purpose: string;
  sources: FlowSource[];
  notes: string[];
  /** Catalog entry ids that produced this flow. */
  entries: string[];
  /** From and to are the same host: the flow never crosses the network. */
  local: boolean;
  /** Present only on flows from a catalog advisory (a vendor page beyond the documents). */
  basis?: 'advisory';
  /**
   * The ranges among `ports` that the product assigns at run time (catalog `dynamic-ports`:
   * Windows dynamic RPC, Veeam transmission channels): most of them have nothing listening until
   * a job runs, so `check` counts a reset there as `reachable`. Absent when there are none.
   */
  dynamicPorts?: PortRange[];
}

export interface Warning {
  code: string;
  message: string;
  host?: string;
  product?: string;
  /** condition-unknown: the host facts the inventory leaves out that the skipped entry needs. */
  facts?: { host: string; fact: string }[];
}

export interface Plan {
  site: string;
  flows: Flow[];
  warnings: Warning[];
}
