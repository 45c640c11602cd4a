import { UsageError } from '../errors.js';
import { chooseBind, shownAddress } from '../listen/addresses.js';
import { DEFAULT_TTL_SECONDS, formatTtl, parseTtl } from '../listen/duration.js';
import { inboundFor } from '../listen/inbound.js';
import { LOG_FORMATS, type LogFormat, ProbeLog, type Summary } from '../listen/log.js';
import {
  hostSecret,
  newSecret,
  RESPONDER_CONNECTIONS,
  RESPONDER_CONNECTIONS_PER_SOURCE,
} from '../listen/protocol.js';
import { Answerer, Responder } from '../listen/responder.js';
import { allot, bindReport, type PortGroup, socketBudget, socketGroups } from '../listen/sockets.js';
import { formatPorts, portCount } from '../model/ports.js';
import { buildPlan } from '../plan/plan.js';
import { counted } from '../util/plural.js';
import { notAHost } from '../util/suggest.js';
import { writeHelp } from '../util/wrap.js';
import { COMMON_HELP, exactlyOne, forUsage, oneOf, parse } from './args.js';
import { INVENTORY_OPTIONS, siteFrom } from './site.js';

const USAGE = `Usage: portolan listen SITE.yaml --host NAME [--ttl 15m] [--secret S] [--bind ADDR] [--format text|json]

Binds every TCP and UDP port the plan says host NAME must accept and answers only probes signed
with the shared secret (portolan check --secret), until the TTL ends (90s, 15m, 1h; at most 24h).

  --host NAME     the inventory host this machine stands in for
  --ttl D         how long to listen (default 15m)
  --secret S      the shared secret (or env PORTOLAN_SECRET); without one, a new one is made and printed
  --bind ADDR     address to bind (repeatable); default: the host's inventory address when it is on
                  this machine, else all addresses (:: and 0.0.0.0)
  --format F      text (default) or json (JSON lines)
  SITE.yaml       the inventory file; - reads it from stdin
  --max-inventory-size SIZE
                  the largest inventory file read (default 64MiB, or env PORTOLAN_MAX_INVENTORY_SIZE)

Exits 0 at the TTL or on SIGINT/SIGTERM (after a summary of probes by source), 1 when no port
could be bound, 2 on bad input. Ports it cannot bind (in use, privileged, over the open-file
limit) are listed and the rest still answer.

Safe by default: unauthenticated input gets no bytes at all, a reply is never longer than the probe
it answers, logging is rate limited per source, and the responder exits at the TTL. It binds beyond
loopback because other hosts must reach it; the narrowest such binding is the host's own address.

${COMMON_HELP}`;

/** Below this a captured probe lets someone guess the secret offline. newSecret() gives 24. */
const MIN_SECRET_CHARS = 16;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      host: { type: 'string' },
      ttl: { type: 'string' },
      secret: { type: 'string' },
      bind: { type: 'string', multiple: true },
      format: { type: 'string', short: 'f' },
      ...INVENTORY_OPTIONS,
    },
    USAGE,
  );
  if (values.help) {
    writeHelp(USAGE);
    return 0;
  }
  const file = exactlyOne(positionals, 'inventory file', USAGE);
  const format: LogFormat = oneOf(values.format, LOG_FORMATS, '--format') ?? 'text';
  const ttl = values.ttl === undefined ? DEFAULT_TTL_SECONDS : parseTtl(values.ttl);
  if (!values.host)
    throw new UsageError(
      `--host is required: the inventory host this machine stands in for\n${forUsage(USAGE)}`,
    );
  const given = values.secret ?? process.env.PORTOLAN_SECRET;
  if (given === '') throw new UsageError('the secret is empty (--secret or PORTOLAN_SECRET)');
  const secret = given ?? newSecret();
  if (given !== undefined && given.length < MIN_SECRET_CHARS)
    process.stderr.write(
      `portolan: warning: a secret of ${given.length} characters can be guessed offline from one captured probe; use at least ${MIN_SECRET_CHARS} (or let listen make one)\n`,
    );

  const { inventory, catalogs } = siteFrom(file, values);
  const host = inventory.hosts.find((h) => h.name === values.host);
  if (!host)
    throw new UsageError(
      notAHost(
        '--host',
        values.host,
        file,
        inventory.hosts.map((h) => h.name),
      ),
    );
  const plan = buildPlan(inventory, catalogs);
  const inbound = inboundFor(plan, host.name);
  const bind = await chooseBind(host, values.bind ?? []);

  const groups = socketGroups(inbound, bind);

  const out = (text: string) => process.stdout.write(text);
  const emit = (event: Record<string, unknown>) =>
    out(`${JSON.stringify({ event: event.event, time: new Date().toISOString(), ...event })}\n`);
  const text = format === 'text';
  const icmp = inbound.icmp.map((f) => ({
    from: f.from.host ?? f.from.description ?? 'any',
    type: f.icmpType ?? 'any',
  }));

  if (!groups.length) {
    const line = `host ${host.name} accepts no TCP or UDP flow in this plan: nothing to listen on`;
    if (text) out(`portolan listen: ${line}${icmp.length ? `\n${icmpLine(icmp)}` : ''}\n`);
    else emit({ event: 'nothing-to-bind', site: plan.site, host: host.name, message: line, icmp });
    return 0;
  }

  // Stop on SIGINT/SIGTERM from here on, even while binding.
  let signalled = false;
  let stop: () => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    stop = () => {
      signalled = true;
      resolve('signal');
    };
  });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const log = new ProbeLog(format, out);
  const fds = socketBudget();
  const budget = fds?.listeners;
  const responder = new Responder(
    new Answerer(hostSecret(secret, host.name), undefined, {
      host: host.name,
      // What a prober may have signed for instead: another host of the inventory, or this host's
      // address (what probe signs for without --name).
      others: [
        ...new Set([
          host.address.text,
          ...bind.addresses,
          ...inventory.hosts.filter((h) => h !== host).map((h) => h.name),
        ]),
      ]
        .filter((name) => name !== host.name)
        .map((name) => ({ name, key: hostSecret(secret, name) })),
    }),
    (e) => log.probe(e),
    fds?.connections,
  );
  try {
    const { sockets, over } = allot(groups, budget);
    const outcomes = await responder.bindAll(sockets);
    const { bound, notBound } = bindReport(outcomes, over, budget);
    const wanted = groups.reduce((n, g) => n + portCount(g.ports), 0);
    const boundCount = bound.reduce((n, g) => n + portCount(g.ports), 0);
    const checks = checkCommands(file, inbound.peers, given === undefined ? secret : undefined);
    const until = new Date(Date.now() + ttl * 1000).toISOString();

    if (text) {
      out(
        `portolan listen: site ${plan.site}, host ${host.name}: ${boundCount} of ${counted(wanted, 'port')} bound\n`,
      );
      out(`binding ${bind.addresses.map(shownAddress).join(', ')}: ${bind.why}\n`);
      const at = (a: string) => (a.includes(':') ? `[${a}]` : a);
      for (const g of bound)
        out(
          `listening on ${at(g.address)}${g.local ? ' (local flows)' : ''}: ${g.proto} ${formatPorts(g.ports)}\n`,
        );
      for (const g of notBound)
        out(`not bound on ${at(g.address)}: ${g.proto} ${formatPorts(g.ports)}: ${g.reason} (${g.code})\n`);
      if (icmp.length) out(`${icmpLine(icmp)}\n`);
      if (given === undefined) out(`secret: ${secret} (generated; the probing side needs it)\n`);
      if (checks.length)
        out(
          `probe from ${inbound.peers.length ? inbound.peers.join(', ') : 'the peer'} with:\n${checks.map((c) => `  ${c}\n`).join('')}`,
        );
    } else {
      emit({
        event: 'listening',
        site: plan.site,
        host: host.name,
        bind: { addresses: bind.addresses, why: bind.why },
        ports: { wanted, bound: boundCount },
        listening: bound.map(groupJson),
        notBound: notBound.map((g) => ({ ...groupJson(g), code: g.code, reason: g.reason })),
        icmp,
        ttlSeconds: ttl,
        until,
        ...(given === undefined ? { secret } : {}),
        check: checks,
      });
    }
    if (boundCount === 0) {
      if (text) out('nothing could be bound; exiting\n');
      else emit({ event: 'exit', reason: 'nothing bound' });
      return 1;
    }
    if (signalled) return finish(await close(responder, log), 'signal');

    if (text) out(`answering signed probes until ${until} (${formatTtl(ttl)}); Ctrl-C stops early\n`);
    // --debug: what the responder holds, every HELD_EVERY_MS while it changes, and once at the end.
    let lastHeld = '';
    const showHeld = (when: string) => {
      const line = heldLine(responder.held());
      if (line === lastHeld && when === 'now') return;
      lastHeld = line;
      process.stderr.write(`portolan listen: debug: ${when === 'now' ? '' : `${when}: `}${line}\n`);
    };
    const heldTimer = values.debug ? setInterval(() => showHeld('now'), HELD_EVERY_MS) : undefined;
    heldTimer?.unref();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('ttl'), ttl * 1000);
    });
    const why = await Promise.race([expired, stopped]);
    clearTimeout(timer);
    clearInterval(heldTimer);
    if (values.debug) showHeld('at stop');
    return finish(await close(responder, log), why);
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    await responder.close();
  }

  function finish(summary: Summary, why: string): number {
    const end = why === 'ttl' ? `TTL of ${formatTtl(ttl)} ended` : 'stopped by signal';
    if (text) for (const line of summaryLines(summary, end)) out(`${line}\n`);
    else emit({ event: 'summary', end: why, ...summary });
    return 0;
  }
}

/** How often `listen --debug` says what the responder holds (ms). */
const HELD_EVERY_MS = 10_000;

/**
 * `listen --debug`'s line on what the responder holds: open connections, per source address, and
 * nonces remembered; e.g. "holding 3 connections (10.0.0.1: 2, 10.0.0.2: 1), 801 nonces".
 */
export function heldLine(h: {
  connections: number;
  sources: Record<string, number>;
  nonces: number;
}): string {
  const per = Object.entries(h.sources)
    .map(([a, n]) => `${a}: ${n}`)
    .join(', ');
  return `holding ${h.connections} connection${h.connections === 1 ? '' : 's'}${per ? ` (${per})` : ''}, ${h.nonces} nonce${h.nonces === 1 ? '' : 's'}`;
}

/**
 * The closing summary in words: what was answered, what `check`'s reachability pass looked like,
 * and what went wrong, so that a good test reads as one and a bad one says why.
 */
export function summaryLines(s: Summary, end: string): string[] {
  const n = (k: number, one: string, many = `${one}s`) => `${k} ${k === 1 ? one : many}`;
  const lines = [
    `${end}: ${n(s.answered, 'signed probe')} answered, ${s.reach} reach (connected and closed without data), ${s.rejected} rejected, ${s.refused} refused for load`,
  ];
  const per = (x: Summary['sources'][number]) =>
    [
      `${x.answered} answered`,
      `${x.rejected} rejected`,
      x.reach ? `${x.reach} reach` : '',
      x.refused ? `${x.refused} refused for load` : '',
    ]
      .filter(Boolean)
      .join(', ') + (x.suppressed ? ` (${x.suppressed} not logged: rate limit)` : '');
  for (const x of s.sources.slice(0, 50)) lines.push(`  ${x.source}: ${per(x)}`);
  if (s.sources.length > 50) lines.push(`  ... and ${s.sources.length - 50} more sources`);
  if (s.suppressed) lines.push(`  ${s.suppressed} more lines not logged (log budget over all sources)`);
  const answering = s.sources.filter((x) => x.answered > 0).length;
  if (s.answered && !s.rejected && !s.refused)
    lines.push(
      `result: every signed probe from ${n(answering, 'source')} was answered; reach probes are check's first pass, not failures`,
    );
  else if (!s.answered && !s.rejected && !s.refused)
    lines.push(
      s.reach
        ? 'result: connections arrived but no signed probe: was check run with --secret (the same secret)?'
        : 'result: nothing arrived: run check --secret on the peers, or look for a firewall in between',
    );
  if (s.rejected)
    lines.push(
      `result: ${n(s.rejected, 'probe')} rejected: not signed with this secret for this host (another --secret, a scanner, or another service's client); no bytes were sent back`,
    );
  if (s.refused)
    lines.push(
      `result: ${n(s.refused, 'connection')} refused for load (idle past a source's share of ${RESPONDER_CONNECTIONS_PER_SOURCE}, or over ${RESPONDER_CONNECTIONS} at once): check's reachability pass loses nothing by it, a refused signed probe is tried again until answered, and reported responder-overloaded if it keeps being refused`,
    );
  return lines;
}

async function close(responder: Responder, log: ProbeLog): Promise<Summary> {
  await responder.close();
  return log.summary();
}

function icmpLine(icmp: { from: string; type: string }[]): string {
  const from = [...new Set(icmp.map((i) => i.from))].join(', ');
  return `icmp (${[...new Set(icmp.map((i) => i.type))].join(', ')} from ${from}): nothing to bind; the kernel answers echo requests unless a firewall drops them`;
}

function groupJson(g: PortGroup) {
  return { proto: g.proto, address: g.address, ports: g.ports, local: g.local };
}

/** The commands to run on the probing hosts; the secret itself only when this run made it up. */
function checkCommands(file: string, peers: readonly string[], generated: string | undefined): string[] {
  const secret = generated === undefined ? '"$PORTOLAN_SECRET"' : shellQuote(generated);
  const site = shellQuote(file);
  const froms = peers.length ? peers.map((p) => ` --from ${shellQuote(p)}`) : [''];
  return froms.map((from) => `portolan check ${site}${from} --secret ${secret}`);
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
