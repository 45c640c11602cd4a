import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { PortolanError, UsageError } from '../errors.js';
import type { Host, Inventory } from '../inventory/types.js';
import { isUnspecified } from '../model/address.js';
import type { Flow, Plan } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { didYouMean, notAHost } from '../util/suggest.js';

/**
 * The plan is the scope: `check` probes only flows of the plan that start at the host this
 * machine is (found from its interface addresses, or named with --from / --as). Anything else
 * (another host's flows, a flow not in the plan, a port the flow does not name) is refused.
 */
export class OutOfScopeError extends PortolanError {
  constructor(message: string) {
    super(message, 'EUSAGE');
    this.name = 'OutOfScopeError';
  }
}

export interface Scope {
  readonly site: string;
  readonly plan: Plan;
  readonly hosts: readonly Host[];
  /** The inventory hosts this machine probes for. */
  readonly from: readonly string[];
  /** How they were chosen, in words. */
  readonly how: string;
  /** The flows of the plan that start at those hosts, in plan order. */
  readonly flows: readonly Flow[];
  /** What the user should know about how this scope was chosen (a --from host not on this machine). */
  readonly warnings: readonly string[];
}

/** What to probe within a scope: some of its flows, optionally only some of their ports. */
export interface Selection {
  flows: readonly Flow[];
  ports?: readonly PortRange[];
  /** `--to ADDR`: probe this one address of each selected flow's target, never the rest of a CIDR. */
  address?: string;
}

/** Scopes made by scopeFor: a hand-made object with a flow list of its own is refused. */
const issued = new WeakSet<Scope>();

export interface ScopeRequest {
  /** --from HOST */
  from?: string;
  /** --as PRODUCT:ROLE */
  as?: string;
  /** This machine's addresses; defaults to os.networkInterfaces(). */
  addresses?: readonly string[];
  /**
   * The --from host stands for this machine itself (portolan probe): no warning that its
   * addresses are not here, and `how` says so in these words.
   */
  thisMachine?: string;
}

export function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) out.push(a.address.replace(/%.*$/, ''));
  return out;
}

function contains(host: Host, ip: string): boolean {
  const a = host.address;
  const fam = isIP(ip);
  if (a.kind === 'ip') return fam === a.version && sameIp(a.text, ip);
  if (a.kind === 'cidr') {
    if (fam !== a.version) return false;
    const [net = '', prefix = '0'] = a.text.split('/');
    const bl = new BlockList();
    bl.addSubnet(net, Number(prefix), a.version === 6 ? 'ipv6' : 'ipv4');
    return bl.check(ip, a.version === 6 ? 'ipv6' : 'ipv4');
  }
  return false;
}

export function sameIp(a: string, b: string): boolean {
  if (a === b) return true;
  const fam = isIP(a);
  if (fam === 0 || fam !== isIP(b)) return false;
  const bl = new BlockList();
  bl.addAddress(a, fam === 6 ? 'ipv6' : 'ipv4');
  return bl.check(b, fam === 6 ? 'ipv6' : 'ipv4');
}

/** Which hosts of the inventory this machine is: by interface address, or by resolving names. */
async function hostsHere(
  inv: Inventory,
  addresses: readonly string[],
): Promise<{ hosts: Host[]; matched: string[] }> {
  const hosts: Host[] = [];
  const matched: string[] = [];
  for (const h of inv.hosts) {
    let ips: string[] = [];
    if (h.address.kind === 'dns') {
      try {
        ips = (await lookup(h.address.text, { all: true, verbatim: true })).map((r) => r.address);
      } catch {
        ips = [];
      }
      // A name that resolves to loopback says nothing about which host this is.
      ips = ips.filter((ip) => !isLoopback(ip));
    }
    const hit = addresses.find(
      (ip) => !isLoopback(ip) && (contains(h, ip) || ips.some((x) => sameIp(x, ip))),
    );
    if (hit) {
      hosts.push(h);
      matched.push(`${hit} (${h.name})`);
    }
  }
  return { hosts, matched };
}

export function isLoopback(ip: string): boolean {
  return /^127\./.test(ip) || ip === '::1' || /^::ffff:127\./i.test(ip);
}

export async function scopeFor(inv: Inventory, plan: Plan, req: ScopeRequest = {}): Promise<Scope> {
  if (req.from !== undefined && req.as !== undefined)
    throw new UsageError('give --from HOST or --as PRODUCT:ROLE, not both');
  let from: string[];
  let how: string;
  let flows: Flow[];
  const warnings: string[] = [];
  if (req.from !== undefined) {
    const host = inv.hosts.find((h) => h.name === req.from);
    if (!host)
      throw new UsageError(
        notAHost(
          '--from',
          req.from,
          inv.file,
          inv.hosts.map((h) => h.name),
        ),
      );
    from = [host.name];
    how = req.thisMachine ?? `--from ${host.name}`;
    flows = plan.flows.filter((f) => f.from.host === host.name);
    // --from names the host; it does not move this machine. Say so when this machine is not it.
    const addresses = req.addresses ?? localAddresses();
    // Loopback addresses (a lab on one machine, 127.0.0.0/8) are all this machine's.
    const loop = host.address.kind === 'ip' && isLoopback(host.address.text);
    if (!req.thisMachine && !loop && !(await hostsHere({ ...inv, hosts: [host] }, addresses)).hosts.length) {
      const mine = addresses.filter((a) => !isLoopback(a));
      warnings.push(
        `--from ${host.name}: none of ${host.name}'s addresses (${host.address.text}) is on this machine (${mine.join(', ') || 'no addresses but loopback'}); the probes leave from this machine (evidence.source on each port), so the results say what this machine reaches, not what ${host.name} reaches`,
      );
    }
  } else if (req.as !== undefined) {
    const m = /^([a-z0-9-]+):([a-z0-9-]+)$/.exec(req.as);
    const roles = [...new Set(inv.hosts.flatMap((h) => h.roles.map((r) => `${r.product}:${r.role}`)))];
    if (!m || !roles.includes(req.as))
      throw new UsageError(
        `--as ${JSON.stringify(req.as)} is not a role any host of ${inv.file} has${didYouMean(req.as, roles)} (expected one of: ${roles.join(', ')})`,
      );
    const [, product, role] = m;
    flows = plan.flows.filter((f) => f.product === product && f.from.role === role && f.from.host !== null);
    from = [...new Set(flows.map((f) => f.from.host as string))];
    how = `--as ${req.as}`;
  } else {
    const addresses = req.addresses ?? localAddresses();
    const here = await hostsHere(inv, addresses);
    if (!here.hosts.length)
      throw new UsageError(
        `this machine (${addresses.filter((a) => !isLoopback(a)).join(', ') || 'no addresses but loopback'}) is not a host of ${inv.file}; name the host it stands for with --from HOST, or a role with --as PRODUCT:ROLE`,
      );
    from = here.hosts.map((h) => h.name);
    how = `this machine's address ${here.matched.join(', ')}`;
    flows = plan.flows.filter((f) => f.from.host !== null && from.includes(f.from.host));
  }
  const scope: Scope = { site: plan.site, plan, hosts: inv.hosts, from, how, flows, warnings };
  issued.add(scope);
  return scope;
}

/**
 * Narrows a scope to flows towards one host and/or some ports; refuses what is not in it. `to` is a
 * host name, a host's address as the inventory writes it, or an IP address: then the flows to every
 * host whose address contains it (an equal IP, or a CIDR around it), probed at that address alone.
 */
export function select(scope: Scope, req: { to?: string; ports?: readonly PortRange[] }): Selection {
  let flows = [...scope.flows];
  let address: string | undefined;
  if (req.to !== undefined) {
    const to = req.to;
    if (isUnspecified(to))
      throw new OutOfScopeError(
        `refused: --to ${to} is the unspecified address, which reaches this machine (expected a host name or a host's address)`,
      );
    const named = scope.hosts.find((h) => h.name === to);
    let hosts: Host[];
    if (named) hosts = [named];
    else if (isIP(to)) {
      hosts = scope.hosts.filter((h) => contains(h, to));
      address = to;
    } else hosts = scope.hosts.filter((h) => h.address.text === to);
    const names = new Set(hosts.map((h) => h.name));
    const towards = flows.filter((f) => f.to.host !== null && names.has(f.to.host));
    if (!towards.length) {
      const targets = [...new Set(scope.flows.map((f) => f.to.host).filter((h) => h !== null))];
      throw new OutOfScopeError(
        `refused: ${to} is not a target of any flow from ${scope.from.join(', ')} in the plan of ${scope.site} (the plan is the scope; targets: ${targets.join(', ') || 'none'})${didYouMean(to, targets)}`,
      );
    }
    flows = towards;
  }
  const at = address !== undefined ? { address } : {};
  if (req.ports !== undefined) {
    const want = mergePortRanges(req.ports);
    flows = flows.filter((f) => f.ports.some(([lo, hi]) => want.some(([a, b]) => a <= hi && b >= lo)));
    const covered = mergePortRanges(flows.flatMap((f) => f.ports.map(([lo, hi]) => [lo, hi] as PortRange)));
    const outside = want.flatMap(([a, b]) => subtract([a, b], covered));
    if (outside.length) {
      const many = outside.length > 1 || outside[0]?.[0] !== outside[0]?.[1];
      throw new OutOfScopeError(
        `refused: port${many ? 's' : ''} ${formatPorts(outside)}${req.to ? ` to ${req.to}` : ''} ${many ? 'are' : 'is'} not in any flow from ${scope.from.join(', ')} in the plan (the plan is the scope)`,
      );
    }
    return { flows, ports: want, ...at };
  }
  return { flows, ...at };
}

function subtract([a, b]: PortRange, covered: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  let lo = a;
  for (const [x, y] of covered) {
    if (y < lo || x > b) continue;
    if (x > lo) out.push([lo, x - 1]);
    lo = Math.max(lo, y + 1);
    if (lo > b) break;
  }
  if (lo <= b) out.push([lo, b]);
  return out;
}

/** The engine's gate: every flow to probe must be one of the scope's own flow objects. */
export function assertInScope(scope: Scope, sel: Selection): void {
  if (!issued.has(scope))
    throw new OutOfScopeError('refused: a scope must come from scopeFor (the plan is the scope)');
  const own = new Set(scope.flows);
  const inPlan = new Set(scope.plan.flows);
  for (const f of sel.flows) {
    if (own.has(f)) continue;
    const where = `${f.protocol}/${formatPorts(f.ports)} ${f.from.host ?? 'any'} -> ${f.to.host ?? f.to.address ?? 'any'}`;
    throw new OutOfScopeError(
      inPlan.has(f)
        ? `refused: ${where} starts at ${f.from.host ?? 'an unspecified host'}, not at ${scope.from.join(', ')} (${scope.how})`
        : `refused: ${where} is not a flow of the plan of ${scope.site} (the plan is the scope)`,
    );
  }
}
