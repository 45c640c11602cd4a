import { lookup } from 'node:dns/promises';
import { quote, UsageError } from '../errors.js';
import type { Host, Inventory } from '../inventory/types.js';
import { parseAddress } from '../model/address.js';
import type { Flow, Plan } from '../model/flow.js';
import { formatPorts, mergePortRanges, type PortRange } from '../model/ports.js';
import { MAX_CIDR_ADDRESSES } from '../probe/dns.js';
import { CHECK_FORMATS } from '../probe/report.js';
import { isLoopback, scopeFor } from '../probe/scope.js';
import { counted } from '../util/plural.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, forUsage, oneOf, parse, parsePorts } from './args.js';
import { INTERRUPT_HELP, OUTPUT_HELP, outputOptions, runAndReport } from './check.js';

/** Services probe can speak, as --service takes them (the catalog's service names). */
export const PROBE_SERVICES = [
  'https',
  'tls',
  'http',
  'ssh',
  'smb',
  'rdp',
  'msrpc',
  'vmware-authd',
  'ntp',
  'plain',
] as const;

/** The service assumed for a well-known port when --service is not given (IANA registry names). */
const WELL_KNOWN: Record<number, string> = {
  22: 'ssh',
  80: 'http',
  123: 'ntp',
  135: 'msrpc',
  443: 'https',
  445: 'smb',
  902: 'vmware-authd',
  3389: 'rdp',
};

export const USAGE = `Usage: portolan probe HOST PORTS[/udp] [--service NAME] [--secret S] [--name NAME]
                      [--format table|json|junit] [-o FILE] [--output-dir DIR] [--timeout MS]
                      [--max-rate N]

Probes the ports the command line names on one host, and nothing else, with the verdicts, evidence
and hints of "portolan check" but without an inventory.

  HOST               an IPv4/IPv6 address, a DNS name, or a CIDR of up to 256 addresses
  PORTS              443, 8000-8010 or 22,443,8006; /udp for UDP (default TCP)
  --service NAME     the service to expect: ${PROBE_SERVICES.join(', ')}
                     (default: each port its well-known service, one flow per service: 22 ssh,
                     80 http, 123 ntp, 135 msrpc, 443 https, 445 smb, 902 vmware-authd, 3389 rdp;
                     any other port plain, a connect only)
  --secret S         the secret of portolan listen on HOST (or env PORTOLAN_SECRET): a responder
                     that answers it is reported "ok (responder)"
  --name NAME        the inventory host name portolan listen runs as on HOST (default: HOST)
${OUTPUT_HELP}

${INTERRUPT_HELP}

Exit status: 0 when the probe did not fail, 1 when it failed, 2 on bad input, 130 on Ctrl-C.

${COMMON_HELP}`;

/**
 * HOST PORTS[/udp] as the flows to probe: one flow per expected service. With `service` (--service)
 * every port expects it, in one flow. Without it each port expects its well-known service (WELL_KNOWN;
 * over UDP only 123 ntp), so `22,23` is a tcp/22 ssh flow and a tcp/23 plain flow, and every port
 * with no well-known service shares one plain flow. Flows are ordered by their first port.
 * Throws UsageError for a malformed PORTS.
 */
export function probeFlows(
  host: string,
  portsText: string,
  service: string | undefined,
): { flows: Flow[]; ports: PortRange[] } {
  const m = /^(.*?)(?:\/(tcp|udp))?$/i.exec(portsText) as RegExpExecArray;
  const other = /\/([^/]*)$/.exec(m[1] ?? '');
  // `22/tcp/udp`: a second suffix is read as part of the ports, where parsePorts names it.
  if (other && !/^(tcp|udp)$/i.test(other[1] ?? ''))
    throw new UsageError(
      `PORTS ${quote(portsText)}: protocol ${quote(other[1])} is not one of: tcp, udp (expected PORTS or PORTS/udp, e.g. 443 or 123/udp)`,
    );
  const protocol = (m[2]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp';
  const ports = mergePortRanges(parsePorts(m[1] ?? '', 'PORTS', portsText));
  const groups = new Map<string, PortRange[]>();
  if (service !== undefined) groups.set(service, ports);
  else {
    const wellKnown = (p: number): string => {
      const name = WELL_KNOWN[p];
      return name === undefined || (protocol === 'udp' && name !== 'ntp') ? 'plain' : name;
    };
    for (const [lo, hi] of ports)
      for (let p = lo; p <= hi; p++) {
        const name = wellKnown(p);
        const ranges = groups.get(name) ?? [];
        const last = ranges[ranges.length - 1];
        if (last && last[1] === p - 1) ranges[ranges.length - 1] = [last[0], p];
        else ranges.push([p, p]);
        groups.set(name, ranges);
      }
  }
  const command = `portolan probe ${host} ${portsText}${service ? ` --service ${service}` : ''}`;
  const flows = [...groups]
    .sort((a, b) => (a[1][0]?.[0] ?? 0) - (b[1][0]?.[0] ?? 0))
    .map(
      ([svc, ranges]): Flow => ({
        id: `probe-${protocol}-${formatPorts(ranges)}`,
        product: 'probe',
        from: { host: 'this machine', role: null, address: null },
        to: { host, role: null, address: host },
        protocol,
        ports: ranges,
        service: svc,
        tls: svc === 'tls' || svc === 'https',
        purpose: 'named on the command line',
        sources: [{ doc: 'the command line', ref: command }],
        notes: [],
        entries: [],
        local: false,
      }),
    );
  return { flows, ports };
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      service: { type: 'string' },
      name: { type: 'string' },
      ...outputOptions,
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  // probe plans nothing from a catalog: the command line names the ports. Taken silently, a
  // --catalog would suggest its flows were probed.
  if (values.catalog?.length)
    throw new UsageError(
      `--catalog: probe reads no catalog, it probes the ports its command line names (expected no --catalog; "portolan check SITE.yaml --catalog DIR" probes a site's catalog flows)\n${forUsage(USAGE)}`,
    );
  if (positionals.length !== 2)
    throw new UsageError(
      `expected HOST and PORTS, got ${counted(positionals.length, 'argument')}\n${forUsage(USAGE)}`,
    );
  const [hostText = '', portsText = ''] = positionals;
  const service = oneOf(values.service, PROBE_SERVICES, '--service');
  oneOf(values.format, CHECK_FORMATS, '--format');
  const parsed = parseAddress(hostText);
  if ('error' in parsed) throw new UsageError(`HOST: ${parsed.error}`);
  if (parsed.kind === 'cidr') {
    // probe has no inventory to list a larger network's hosts in: refuse it before anything is planned.
    const bits = parsed.version === 4 ? 32 : 128;
    const size = 2n ** BigInt(bits - parsed.prefix);
    if (size > BigInt(MAX_CIDR_ADDRESSES))
      throw new UsageError(
        `probe: HOST ${quote(hostText)} has ${size} addresses; probe takes at most ${MAX_CIDR_ADDRESSES} (a /${bits - Math.log2(MAX_CIDR_ADDRESSES)} or smaller): give a smaller range or list the hosts in an inventory and use check`,
      );
  }
  const { flows } = probeFlows(hostText, portsText, service);
  const name = values.name ?? hostText;
  for (const flow of flows) flow.to.host = name;
  let address = parsed;
  if (parsed.kind === 'dns') {
    // A name the user typed may point at this machine: probe it there (check refuses that for
    // inventory hosts, whose names must not point at the prober).
    try {
      const ips = (await lookup(parsed.text, { all: true, verbatim: true })).map((r) => r.address);
      const loop = ips.find(isLoopback);
      if (loop && ips.every(isLoopback)) address = parseAddress(loop) as typeof parsed;
    } catch {
      // resolveTarget reports the lookup failure as dns-failed.
    }
  }
  const here: Host = {
    name: 'this machine',
    address: { kind: 'dns', text: 'this-machine.invalid' },
    roles: [],
    facts: {},
  };
  const target: Host = { name, address, roles: [], facts: {} };
  const inventory: Inventory = {
    file: 'the command line',
    site: `probe ${hostText}`,
    products: new Map(),
    hosts: [here, target],
    catalogs: [],
    sha256: '',
  };
  const plan: Plan = { site: inventory.site, flows, warnings: [] };
  // "this machine" is where the probes leave from by definition: no --from to warn about.
  const scope = await scopeFor(inventory, plan, { from: here.name, thisMachine: 'the command line' });
  return runAndReport(scope, { flows: scope.flows }, values, {
    title: `portolan probe ${hostText} ${portsText}, from this machine`,
    command: 'probe',
  });
}
