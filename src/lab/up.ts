import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { loadSite, readInventory, type Site } from '../inventory/load.js';
import { inboundFor } from '../listen/inbound.js';
import { formatPorts, portCount } from '../model/ports.js';
import { buildPlan } from '../plan/plan.js';
import { maxOf } from '../util/arrays.js';
import { writeFileAtomic } from '../util/atomic.js';
import { makeDirectory } from '../util/mkdir.js';
import { counted } from '../util/plural.js';
import { notAHost } from '../util/suggest.js';
import { down } from './down.js';
import { adoptUserRuleset, checkUserRuleset, loadRuleset } from './firewall.js';
import { BRIDGE, filesDir, HOST_IF, hostNamespace, hubNamespace, hubPort, labKey, labRoot } from './names.js';
import { hostsFile, labAddresses, loadRulesSite, writeLabInventories } from './site.js';
import { claimState, type Firewall, LabError, type LabHost, type LabState, saveState } from './state.js';
import { CLI, ip, netnsList } from './sys.js';

export interface UpOptions {
  file: string;
  /** The site of `file`, already loaded (else `file` is loaded). */
  site?: Site;
  /** The inventory's text as read for `site` (else `file` is read): the lab's copies are made of it. */
  text?: string;
  name?: string;
  firewall: Firewall;
  /** HOST -> the user's ruleset file for that host. */
  rulesets: Map<string, string>;
  catalogs: string[];
  /** Responders live this long (listen's TTL, at most 24 h). */
  ttl?: string;
  /** Called with one line per step, for the terminal. */
  say?: (line: string) => void;
  /** Test hook: stop (SIGKILL this process) right after this step's state is saved. */
  killAt?: string;
}

/** How long to wait for every responder to say it listens (a big range takes a while to bind). */
const RESPONDER_READY_MS = 120_000;

/**
 * Builds the lab: a hub namespace with a bridge, one namespace per inventory host with a veth to
 * the bridge (both ends made directly in their namespaces), its lab address, the resolver map, its
 * ruleset, and a responder on every port the plan says it accepts. Every object is written to the
 * state file before it is made; on failure everything made so far is removed again.
 */
export async function up(o: UpOptions, name: string): Promise<LabState> {
  const say = o.say ?? (() => {});
  const file = resolve(o.file);
  const bytes = o.text === undefined ? readInventory(file) : undefined;
  const { inventory, catalogs } = o.site ?? loadSite(file, o.catalogs, bytes ? { bytes } : {});
  const text = o.text ?? (bytes as Buffer).toString('utf8');
  const plan = buildPlan(inventory, catalogs);
  for (const h of o.rulesets.keys())
    if (!inventory.hosts.some((x) => x.name === h))
      throw new LabError(
        notAHost(
          '--ruleset',
          h,
          o.file,
          inventory.hosts.map((x) => x.name),
        ),
      );
  // Every user ruleset is checked before anything is built: bad input stops here, with nothing to undo.
  for (const [host, f] of o.rulesets) checkUserRuleset(host, f);
  const root = labRoot();
  const key = labKey(root, name);
  const hub = hubNamespace(key);
  const addresses = labAddresses(inventory);
  const hosts: LabHost[] = inventory.hosts.map((h) => ({
    name: h.name,
    ns: hostNamespace(key, h.name),
    addresses: [addresses.get(h.name)?.address as string],
    inventoryAddress: h.address.text,
    addressNote: addresses.get(h.name)?.note ?? '',
    link: { inner: HOST_IF, outer: hubPort(h.name) },
    ruleset: { kind: 'generated', firewall: o.firewall },
    broken: [],
  }));
  const nsNames = new Set(hosts.map((h) => h.ns));
  if (nsNames.size !== hosts.length)
    throw new LabError(`two hosts of ${o.file} hash to one namespace name; rename one`);

  const state: LabState = {
    version: 1,
    name,
    key,
    site: plan.site,
    inventory: file,
    catalogs: o.catalogs.map((c) => resolve(c)),
    dir: filesDir(root, name),
    createdAt: new Date().toISOString(),
    upPid: process.pid,
    phase: 'creating',
    firewall: o.firewall,
    secret: randomBytes(18).toString('base64url'),
    hub,
    hosts,
    objects: { netns: [], links: [], etcDirs: [], pids: [] },
  };
  claimState(state, root);
  const existing = new Set(netnsList());
  const clash = [hub, ...nsNames].find((n) => existing.has(n));
  if (clash) {
    await down(state, root);
    throw new LabError(`namespace ${clash} already exists, but no state file names it: give another --name`);
  }
  const step = (what: string) => {
    saveState(state, root);
    if (o.killAt === what) process.kill(process.pid, 'SIGKILL');
  };
  try {
    for (const [host, f] of o.rulesets) {
      const h = hosts.find((x) => x.name === host) as LabHost;
      h.ruleset = adoptUserRuleset(state.dir, host, f);
    }
    writeLabInventories(text, inventory, addresses, state.dir);
    const etcHosts = hostsFile(inventory, addresses);

    state.objects.netns.push(hub);
    step('hub');
    ip('netns', 'add', hub);
    ip('-n', hub, 'link', 'add', BRIDGE, 'type', 'bridge');
    ip('-n', hub, 'link', 'set', BRIDGE, 'up');
    say(`hub ${hub}: bridge ${BRIDGE}, no uplink; every host below has one veth to it`);

    for (const h of hosts) {
      state.objects.netns.push(h.ns);
      step(`netns:${h.name}`);
      ip('netns', 'add', h.ns);
      const etc = `/etc/netns/${h.ns}`;
      state.objects.etcDirs.push(etc);
      step(`etc:${h.name}`);
      makeDirectory(etc);
      writeFileAtomic(join(etc, 'hosts'), etcHosts, { follow: false });
      // Nothing listens on the namespace's own loopback port 53: a name outside the map fails at once.
      writeFileAtomic(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n', {
        follow: false,
      });
      state.objects.links.push(`${h.ns}/${h.link.inner}`, `${hub}/${h.link.outer}`);
      step(`link:${h.name}`);
      ip(
        'link',
        'add',
        h.link.inner,
        'netns',
        h.ns,
        'type',
        'veth',
        'peer',
        'name',
        h.link.outer,
        'netns',
        hub,
      );
      ip('-n', hub, 'link', 'set', h.link.outer, 'master', BRIDGE, 'up');
      ip('-n', h.ns, 'link', 'set', 'lo', 'up');
      for (const a of h.addresses) {
        const v6 = isIP(a) === 6;
        ip('-n', h.ns, 'addr', 'add', `${a}/${v6 ? 128 : 32}`, 'dev', h.link.inner, ...(v6 ? ['nodad'] : []));
      }
      ip('-n', h.ns, 'link', 'set', h.link.inner, 'up');
      // Every lab address is on the one bridge: a default route on the link (no gateway) reaches them
      // by ARP/NDP, and the hub has no uplink, so nothing leaves the lab.
      const families = new Set(h.addresses.map((a) => isIP(a)));
      if (families.has(4)) ip('-n', h.ns, 'route', 'add', 'default', 'dev', h.link.inner);
      if (families.has(6)) ip('-n', h.ns, '-6', 'route', 'add', 'default', 'dev', h.link.inner);
    }

    const rules = loadRulesSite(state);
    for (const h of hosts) {
      step(`ruleset:${h.name}`);
      await loadRuleset(state, h, rules);
    }

    const site = join(state.dir, 'site.yaml');
    const waits: Promise<void>[] = [];
    for (const h of hosts) {
      const inbound = inboundFor(plan, h.name);
      const ports = [
        ...(['tcp', 'udp'] as const)
          .filter((p) => inbound.remote[p].length || inbound.local[p].length)
          .map(
            (p) =>
              `${p} ${formatPorts([...inbound.remote[p], ...inbound.local[p]].sort((a, b) => a[0] - b[0]))}`,
          ),
      ];
      if (!ports.length) continue;
      const log = join(state.dir, `${h.name}.listen.log`);
      h.responder = { log, ports: ports.join('; ') };
      step(`responder:${h.name}`);
      const pid = spawnResponder(state, h, site, log, o.ttl ?? '24h');
      h.responder.pid = pid;
      state.objects.pids.push(pid);
      step(`responder-pid:${h.name}`);
      waits.push(waitListening(h, log));
    }
    await Promise.all(waits);
    const width = maxOf(hosts.map((h) => h.name.length));
    for (const h of hosts) {
      const ruleset =
        h.ruleset.kind === 'generated'
          ? `generated ${h.ruleset.firewall}`
          : `your ${h.ruleset.format} ${h.ruleset.file}`;
      const responder = h.responder
        ? `responder on ${h.responder.ports} (${counted(portCount(portsOf(h.responder.ports ?? '')), 'port')})`
        : 'no responder (accepts no TCP/UDP flow)';
      say(
        `${h.name.padEnd(width)}  ${h.ns}  ${h.addresses.join(', ')} (${h.addressNote}); ${ruleset} ruleset; ${responder}`,
      );
    }
    state.phase = 'up';
    step('up');
    return state;
  } catch (err) {
    await down(state, root);
    throw err;
  }
}

function portsOf(text: string): [number, number][] {
  return [...text.matchAll(/(\d+)(?:-(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2] ?? m[1])]);
}

/** Starts `portolan listen` for a host inside its namespace, detached from this process. */
function spawnResponder(state: LabState, h: LabHost, site: string, log: string, ttl: string): number {
  // A new file of this lab's, never a link or a pipe put at its name (O_NOFOLLOW, non-blocking open).
  const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;
  const fd = openSync(log, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0o644);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new LabError(
      `the responder log ${log} is not a regular file (expected a file this lab makes)`,
      'EIO',
    );
  }
  try {
    const args = [
      'netns',
      'exec',
      h.ns,
      process.execPath,
      CLI,
      'listen',
      site,
      '--host',
      h.name,
      '--ttl',
      ttl,
      '--format',
      'json',
    ];
    for (const c of state.catalogs) args.push('--catalog', c);
    const child = spawn('ip', args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, PORTOLAN_SECRET: state.secret, NO_COLOR: '1' },
    });
    child.unref();
    if (!child.pid) throw new LabError(`could not start the responder of ${h.name}`, 'EIO');
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function waitListening(h: LabHost, log: string): Promise<void> {
  const deadline = Date.now() + RESPONDER_READY_MS;
  for (;;) {
    const text = readFileSync(log, 'utf8');
    if (/"event":"(listening|nothing-to-bind)"/.test(text)) {
      const m = /"ports":\{"wanted":(\d+),"bound":(\d+)\}/.exec(text);
      if (m && m[1] !== m[2])
        throw new LabError(
          `the responder of ${h.name} bound ${m[2]} of ${counted(Number(m[1]), 'port')} (see ${log})`,
          'EIO',
        );
      return;
    }
    let alive = true;
    try {
      process.kill(h.responder?.pid ?? 0, 0);
    } catch {
      alive = false;
    }
    if (!alive || Date.now() > deadline)
      throw new LabError(
        `the responder of ${h.name} ${alive ? 'did not start listening in time' : 'exited'}: ${text.trim().split('\n').slice(-3).join(' / ')}`,
        'EIO',
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}
