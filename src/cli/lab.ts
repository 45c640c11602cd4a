import { quote, UsageError } from '../errors.js';
import { inventoryLimit, loadSite, readInventory } from '../inventory/load.js';
import { ablate } from '../lab/ablate.js';
import { breakFlow, parseFlowSpec } from '../lab/break.js';
import { down, downAll } from '../lab/down.js';
import { checkLabName, defaultLabName, labRoot } from '../lab/names.js';
import {
  ablateJson,
  ablateTable,
  LAB_FORMATS,
  type LabFormat,
  labHtml,
  labJson,
  labJunit,
  labTable,
} from '../lab/report.js';
import { FIREWALLS, type Firewall, listLabNames, pickLab, readState } from '../lab/state.js';
import { netnsList, requireNetAdmin } from '../lab/sys.js';
import { up } from '../lab/up.js';
import { verify } from '../lab/verify.js';
import { parseTtl } from '../listen/duration.js';
import { colorEnabled } from '../util/color.js';
import { counted } from '../util/plural.js';
import { notAHost, unknownName } from '../util/suggest.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, exactlyOne, forUsage, oneOf, parse } from './args.js';
import { INVENTORY_OPTIONS } from './site.js';

const USAGE = `Usage: portolan lab <up|verify|break|ablate|down|list> ...

Proves a site, its generated firewalls or your own, in network namespaces on this machine
(needs root or CAP_NET_ADMIN). One namespace per inventory host on a private bridge, nothing
routed to this machine's network; state under ${labRoot()} (PORTOLAN_LAB_DIR).

  lab up SITE.yaml [--name N] [--firewall nftables|iptables]
         [--ruleset HOST=FILE ...] [--ttl D] [--quiet]
         [--max-inventory-size SIZE]
      one namespace per host with its inventory address (a CIDR host: its first usable address;
      a DNS-name host: a lab address the lab's resolver map gives the name), that host's generated
      ruleset (host mode, inbound default drop) or your own nftables / iptables-save FILE, and a
      responder on every port the plan says it accepts, for --ttl (default 24h); --quiet prints
      only the last two lines; --max-inventory-size as plan's (default 64MiB, or
      PORTOLAN_MAX_INVENTORY_SIZE)
  lab verify [--name N] [--to HOST] [--exhaustive] [--format table|json|junit|html]
      check --secret from every source host's namespace, then probe unplanned ports and pairs (a
      sample; every port of the plan on every pair with --exhaustive) to prove they are blocked;
      --to: only what goes to HOST
  lab break --flow FROM->TO:PORT/PROTO [--name N]
      takes that flow out of TO's generated ruleset; verify then shows it failing
  lab ablate [--name N] [--host H] [--full-ranges] [--format table|json]
      removes each generated inbound rule in turn, re-probes the planned flows it could carry (its
      host, protocol, sources and ports; ranges at their first, last and a few middle ports, every
      port with --full-ranges), puts it back, and reports which planned flows break (with their
      catalog rows); a rule whose removal breaks nothing is reported redundant
  lab down [--name N | --all]
      removes what the state file lists, and only that; safe to run twice
  lab list
      the labs that are up

Exit status: verify 0 when every planned flow passed and every unplanned probe was blocked, 1
otherwise; 2 on bad input (and without root or CAP_NET_ADMIN).

${COMMON_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'up':
      return runUp(rest);
    case 'down':
      return runDown(rest);
    case 'list':
      return runList(rest);
    case 'verify':
      return runVerify(rest);
    case 'break':
      return runBreak(rest);
    case 'ablate':
      return runAblate(rest);
    case '_probe':
      return runProbe();
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      writeHelp(USAGE);
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(
        `${unknownName('lab command', sub, ['up', 'verify', 'break', 'ablate', 'down', 'list'])}\n${forUsage(USAGE)}`,
      );
  }
}

function help(values: { help?: boolean | undefined }): boolean {
  if (values.help) writeHelp(USAGE);
  return values.help === true;
}

async function runUp(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      name: { type: 'string' },
      firewall: { type: 'string' },
      ruleset: { type: 'string', multiple: true },
      ttl: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      ...INVENTORY_OPTIONS,
    },
    USAGE,
  );
  if (help(values)) return 0;
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  const limit = inventoryLimit(values['max-inventory-size']);
  // The responders' TTL is checked here, before any namespace is made for them.
  if (values.ttl !== undefined) parseTtl(values.ttl);
  const firewall: Firewall = oneOf(values.firewall, FIREWALLS, '--firewall') ?? 'nftables';
  const rulesets = new Map<string, string>();
  for (const r of values.ruleset ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(r);
    if (!m) throw new UsageError(`--ruleset ${quote(r)} is not HOST=FILE`);
    if (rulesets.has(m[1] as string)) throw new UsageError(`--ruleset names host ${m[1]} twice`);
    rulesets.set(m[1] as string, m[2] as string);
  }
  requireNetAdmin();
  // Read once: the site is checked and the lab's copies are written from the same bytes (a pipe
  // cannot be read twice).
  const bytes = readInventory(file, limit);
  const site = loadSite(file, values.catalog ?? [], { bytes });
  const name = checkLabName(values.name ?? defaultLabName(site.inventory.site));
  const say = values.quiet ? undefined : (l: string) => process.stdout.write(`  ${l}\n`);
  if (!values.quiet) process.stdout.write(`portolan lab up: ${name} from ${file}\n`);
  const state = await up(
    {
      file,
      site,
      text: bytes.toString('utf8'),
      firewall,
      rulesets,
      catalogs: values.catalog ?? [],
      ...(values.ttl !== undefined ? { ttl: values.ttl } : {}),
      ...(say ? { say } : {}),
      ...(process.env.PORTOLAN_LAB_KILL_AT ? { killAt: process.env.PORTOLAN_LAB_KILL_AT } : {}),
    },
    name,
  );
  process.stdout.write(
    `lab ${state.name} is up: site ${state.site}, ${counted(state.hosts.length, 'host')}, ${counted(state.objects.netns.length, 'namespace')}, ${counted(state.hosts.filter((h) => h.responder).length, 'responder')}\n` +
      `next: portolan lab verify --name ${state.name}; portolan lab down --name ${state.name}\n`,
  );
  return 0;
}

async function runDown(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { name: { type: 'string' }, all: { type: 'boolean' } }, USAGE);
  if (help(values)) return 0;
  if (positionals.length)
    throw new UsageError(`lab down takes no file (got ${positionals.join(' ')}): it reads the state file`);
  if (values.all && values.name !== undefined) throw new UsageError('give --name N or --all, not both');
  requireNetAdmin();
  if (values.all) {
    const done = await downAll();
    for (const d of done)
      process.stdout.write(
        `lab ${d.name} is down (${counted(d.netns, 'namespace')}, ${counted(d.processes, 'process', 'processes')})\n`,
      );
    if (!done.length) process.stdout.write(`no labs under ${labRoot()}\n`);
    return 0;
  }
  const name = values.name !== undefined ? checkLabName(values.name) : undefined;
  if (name !== undefined && !listLabNames().includes(name)) {
    process.stdout.write(`no lab named ${name} under ${labRoot()}: nothing to remove\n`);
    return 0;
  }
  const d = await down(name !== undefined ? readState(name) : pickLab(undefined));
  process.stdout.write(
    `lab ${d.name} is down (${counted(d.netns, 'namespace')}, ${counted(d.processes, 'process', 'processes')})\n`,
  );
  return 0;
}

async function runList(argv: string[]): Promise<number> {
  const { values } = parse(argv, { format: { type: 'string', short: 'f' } }, USAGE);
  if (help(values)) return 0;
  const format = oneOf(values.format, ['table', 'json'] as const, '--format') ?? 'table';
  const present = new Set(netnsList());
  const labs = listLabNames().map((n) => readState(n));
  if (format === 'json') {
    process.stdout.write(
      `${JSON.stringify(
        labs.map((s) => ({
          name: s.name,
          site: s.site,
          phase: s.phase,
          firewall: s.firewall,
          createdAt: s.createdAt,
          inventory: s.inventory,
          hosts: s.hosts.map((h) => ({
            name: h.name,
            ns: h.ns,
            addresses: h.addresses,
            ruleset: h.ruleset,
            broken: h.broken,
          })),
          netnsPresent: s.objects.netns.filter((x) => present.has(x)).length,
        })),
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  if (!labs.length) {
    process.stdout.write(`no labs under ${labRoot()}\n`);
    return 0;
  }
  for (const s of labs) {
    const live = s.objects.netns.filter((x) => present.has(x)).length;
    const broken = s.hosts.flatMap((h) =>
      h.broken.map((b) => `${b.from}->${h.name}:${b.port}/${b.protocol}`),
    );
    process.stdout.write(
      `${s.name}  site ${s.site}  ${s.phase === 'up' ? 'up' : `incomplete (up pid ${s.upPid})`}  ${counted(s.hosts.length, 'host')}  ${live}/${counted(s.objects.netns.length, 'namespace')}  ${s.firewall}  since ${s.createdAt}${broken.length ? `  broken: ${broken.join(', ')}` : ''}\n`,
    );
  }
  return 0;
}

function formatOf(value: unknown): LabFormat {
  return oneOf(value, LAB_FORMATS, '--format') ?? (process.stdout.isTTY ? 'table' : 'json');
}

async function runVerify(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      name: { type: 'string' },
      to: { type: 'string' },
      exhaustive: { type: 'boolean' },
      format: { type: 'string', short: 'f' },
    },
    USAGE,
  );
  if (help(values)) return 0;
  const format = formatOf(values.format);
  requireNetAdmin();
  const state = pickLab(values.name === undefined ? undefined : checkLabName(values.name));
  if (values.to !== undefined && !state.hosts.some((h) => h.name === values.to))
    throw new UsageError(
      notAHost(
        '--to',
        values.to,
        `lab ${state.name}`,
        state.hosts.map((h) => h.name),
      ),
    );
  const report = await verify(state, {
    exhaustive: values.exhaustive === true,
    ...(values.to !== undefined ? { to: values.to } : {}),
  });
  const color = !values['no-color'] && colorEnabled();
  const out = {
    table: () => labTable(report, { color }),
    json: () => labJson(report),
    junit: () => labJunit(report),
    html: () => labHtml(report),
  }[format]();
  process.stdout.write(out);
  return report.failed ? 1 : 0;
}

async function runBreak(argv: string[]): Promise<number> {
  const { values } = parse(argv, { name: { type: 'string' }, flow: { type: 'string' } }, USAGE);
  if (help(values)) return 0;
  if (values.flow === undefined)
    throw new UsageError(`--flow FROM->TO:PORT/PROTO is required\n${forUsage(USAGE)}`);
  const spec = parseFlowSpec(values.flow);
  requireNetAdmin();
  const state = pickLab(values.name === undefined ? undefined : checkLabName(values.name));
  const result = await breakFlow(state, spec);
  process.stdout.write(`${result}\n`);
  return 0;
}

async function runAblate(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      name: { type: 'string' },
      host: { type: 'string' },
      'full-ranges': { type: 'boolean' },
      format: { type: 'string', short: 'f' },
    },
    USAGE,
  );
  if (help(values)) return 0;
  const format =
    oneOf(values.format, ['table', 'json'] as const, '--format') ?? (process.stdout.isTTY ? 'table' : 'json');
  requireNetAdmin();
  const state = pickLab(values.name === undefined ? undefined : checkLabName(values.name));
  const report = await ablate(state, {
    ...(values.host !== undefined ? { host: values.host } : {}),
    fullRanges: values['full-ranges'] === true,
    onRule: format === 'table' && process.stderr.isTTY ? (l) => process.stderr.write(`${l}\n`) : undefined,
  });
  process.stdout.write(format === 'json' ? ablateJson(report) : ablateTable(report));
  return report.failed ? 1 : 0;
}

/** Internal: run inside a source namespace by `lab verify` for the unplanned probes (JSON in, JSON out). */
async function runProbe(): Promise<number> {
  const { probeAll } = await import('../lab/probe.js');
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  const targets = JSON.parse(text) as import('../lab/probe.js').ProbeTarget[];
  const res = await probeAll(targets, 1500, targets.length > 2000 ? 2048 : 512);
  process.stdout.write(JSON.stringify(res));
  return 0;
}
