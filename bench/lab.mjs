#!/usr/bin/env node
// `npm run bench` (third part): `portolan lab` on the Veeam example site grown to 20 hosts
// (bench/veeam-20.yaml). Per run: `lab up` wall time, `lab verify` wall time (check from every
// source namespace, every planned range swept in full, plus the sampled unplanned probes), probes
// per second, `lab down` wall time. Compared, on the same machine in the same run:
//   - nmap -sT from the same source namespaces over the same TCP (address, port) pairs of the
//     planned flows, two at a time as verify runs its sources;
//   - the bare topology (21 namespaces, a bridge, 20 veths, addresses, routes) made and removed one
//     `ip` command at a time: the floor any namespace lab pays (containerlab adds a container
//     runtime on top), without rulesets or responders.
// Needs root (network namespaces, nftables). Cleans up after itself even when killed: every object
// is named by a per-run prefix (pb<pid>) or listed in a state file under /run/portolan/bench/pb<pid>,
// a watchdog process removes them when this process dies (SIGKILL included), and a later run
// removes what a run whose watchdog died too left behind. BENCH_LAB_RUNS sets the runs (3).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { timed, writeSection } from './results.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'portolan.js');
const SITE = join(ROOT, 'bench', 'veeam-20.yaml');
const SELF = fileURLToPath(import.meta.url);
const BENCH_ROOT = '/run/portolan/bench';
const RUNS = Number(process.env.BENCH_LAB_RUNS ?? 3);
const PREFIX = `pb${process.pid}`;

/** Start time of a process (field 22 of /proc/PID/stat), so a reused pid is not taken for ours. */
function startTime(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function netnsList() {
  return (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '')
    .split('\n')
    .map((l) => l.split(/\s/)[0] ?? '')
    .filter(Boolean);
}

/**
 * Removes what run `prefix` made: kills the processes started with its state directory in their
 * environment (lab up/verify, the responders), `lab down --all` on that directory (exactly what its
 * state files list), the baseline namespaces named `prefix...`, then the directory.
 */
function reap(prefix) {
  const dir = join(BENCH_ROOT, prefix);
  const marker = `PORTOLAN_LAB_DIR=${dir}\0`;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (`${readFileSync(`/proc/${p}/environ`, 'latin1')}\0`.includes(marker))
        process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone, or not ours to read
    }
  }
  if (existsSync(dir))
    spawnSync(process.execPath, [BIN, 'lab', 'down', '--all'], {
      env: { ...process.env, PORTOLAN_LAB_DIR: dir },
      stdio: 'ignore',
    });
  for (const ns of netnsList()) if (ns.startsWith(`${prefix}x`)) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
}

// Watchdog mode: `lab.mjs --reap PID START PREFIX` waits for the benchmark to die, then reaps it.
if (process.argv[2] === '--reap') {
  const [pid, start, prefix] = process.argv.slice(3);
  const timer = setInterval(() => {
    if (startTime(Number(pid)) === start) return;
    clearInterval(timer);
    reap(prefix);
  }, 500);
} else {
  main().catch((err) => {
    console.error(err?.stack ?? err);
    process.exitCode = 1;
  });
}

function sh(...args) {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

/** The bare topology of the lab, one ip command at a time; returns [make seconds, remove seconds]. */
function bareTopology(addresses, made) {
  const hub = `${PREFIX}xhub`;
  const t0 = performance.now();
  sh('netns', 'add', hub);
  sh('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
  sh('-n', hub, 'link', 'set', 'br0', 'up');
  const mine = [hub];
  addresses.forEach((a, i) => {
    const ns = `${PREFIX}x${i}`;
    mine.push(ns);
    const v6 = a.includes(':');
    sh('netns', 'add', ns);
    sh('link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `v${i}`, 'netns', hub);
    sh('-n', hub, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
    sh('-n', ns, 'link', 'set', 'lo', 'up');
    sh('-n', ns, 'addr', 'add', `${a}/${v6 ? 128 : 32}`, 'dev', 'eth0', ...(v6 ? ['nodad'] : []));
    sh('-n', ns, 'link', 'set', 'eth0', 'up');
    sh('-n', ns, ...(v6 ? ['-6'] : []), 'route', 'add', 'default', 'dev', 'eth0');
  });
  const t1 = performance.now();
  for (const ns of mine) {
    made.add(ns);
    sh('netns', 'del', ns);
  }
  return [(t1 - t0) / 1000, (performance.now() - t1) / 1000];
}

/** nmap -sT from each source namespace over the TCP pairs verify swept, two sources at a time. */
async function nmapSame(state, verifyDoc) {
  const ns = new Map(state.hosts.map((h) => [h.name, h.ns]));
  const jobs = new Map(); // "ns|address" -> Set of ports
  for (const f of verifyDoc.flows) {
    if (f.protocol !== 'tcp') continue;
    for (const r of f.results) {
      if (r.verdict === 'no-route') continue;
      const key = `${ns.get(f.from)}|${r.address}`;
      const ports = jobs.get(key) ?? new Set();
      for (let p = r.ports[0]; p <= r.ports[1]; p++) ports.add(p);
      jobs.set(key, ports);
    }
  }
  const bySource = new Map();
  for (const [key, ports] of jobs) {
    const [src, address] = key.split('|');
    bySource.set(src, [...(bySource.get(src) ?? []), { address, ports: [...ports].sort((a, b) => a - b) }]);
  }
  const counts = { probes: 0, open: 0, other: 0, runs: 0 };
  const t0 = performance.now();
  const sources = [...bySource.keys()];
  let next = 0;
  const worker = async () => {
    while (next < sources.length) {
      const src = sources[next++];
      for (const { address, ports } of bySource.get(src)) {
        const list = compress(ports);
        const r = await timed('ip', [
          'netns',
          'exec',
          src,
          'nmap',
          '-sT',
          '-n',
          '-Pn',
          '-T5',
          ...(address.includes(':') ? ['-6'] : []),
          '-p',
          list,
          '-oX',
          '-',
          address,
        ]);
        if (r.code !== 0) throw new Error(`nmap from ${src} to ${address} failed: ${r.err}`);
        counts.runs++;
        counts.probes += ports.length;
        const tally = (state, n) => {
          if (state === 'open') counts.open += n;
          else counts.other += n;
        };
        for (const m of r.out.matchAll(/<state state="([a-z|]+)"/g)) tally(m[1], 1);
        for (const m of r.out.matchAll(/<extraports state="([a-z|]+)" count="(\d+)"/g))
          tally(m[1], Number(m[2]));
      }
    }
  };
  await Promise.all([worker(), worker()]);
  return { ...counts, seconds: (performance.now() - t0) / 1000 };
}

function compress(ports) {
  const out = [];
  for (const p of ports) {
    const last = out[out.length - 1];
    if (last && last[1] === p - 1) last[1] = p;
    else out.push([p, p]);
  }
  return out.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const missing = ['ip', 'nft', 'nmap', 'iptables-nft-restore'].filter((c) => !have(c));
  if (process.getuid?.() !== 0) {
    console.error(
      'bench/lab.mjs needs root: it makes network namespaces, veths and nftables rulesets (run it as root, e.g. sudo npm run bench); not run',
    );
    process.exitCode = 2;
    return;
  }
  if (missing.length) {
    console.error(
      `bench/lab.mjs needs ${missing.join(', ')} (Debian: iproute2 nftables nmap iptables); not run`,
    );
    process.exitCode = 2;
    return;
  }
  if (!Number.isInteger(RUNS) || RUNS < 1) {
    console.error(
      `BENCH_LAB_RUNS: ${JSON.stringify(process.env.BENCH_LAB_RUNS)} is not a whole number of runs`,
    );
    process.exitCode = 2;
    return;
  }
  // What earlier runs left when both they and their watchdog were killed.
  mkdirSync(BENCH_ROOT, { recursive: true, mode: 0o700 });
  for (const d of readdirSync(BENCH_ROOT)) {
    const m = /^pb(\d+)$/.exec(d);
    if (!m) continue;
    const watch = join(BENCH_ROOT, d, 'watchdog');
    const alive = (pid) => startTime(pid) !== null;
    const watchPid = existsSync(watch) ? Number(readFileSync(watch, 'utf8')) : 0;
    if (!alive(Number(m[1])) && !(watchPid && alive(watchPid))) {
      console.error(`removing what bench run ${d} left behind`);
      reap(d);
    }
  }
  const dir = join(BENCH_ROOT, PREFIX);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const watchdog = spawn(
    process.execPath,
    [SELF, '--reap', String(process.pid), startTime(process.pid), PREFIX],
    {
      detached: true,
      stdio: 'ignore',
    },
  );
  watchdog.unref();
  spawnSync('sh', ['-c', `echo ${watchdog.pid} > ${join(dir, 'watchdog')}`]);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
    process.once(sig, () => {
      reap(PREFIX);
      process.exit(130);
    });

  const env = { PORTOLAN_LAB_DIR: dir };
  const loadBefore = loadavg()[0];
  const rows = [];
  const linksBefore = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
  // Every namespace this run made (the labs' from their state files, the bare topologies'): none may be left.
  const made = new Set();
  try {
    for (let i = 0; i < RUNS; i++) {
      const name = `${PREFIX}-${i}`;
      const up = await timed(process.execPath, [BIN, 'lab', 'up', SITE, '--name', name, '-q'], env);
      if (up.code !== 0) throw new Error(`lab up failed: ${up.err}`);
      const state = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
      for (const ns of state.objects.netns) made.add(ns);
      const verify = await timed(
        process.execPath,
        [BIN, 'lab', 'verify', '--name', name, '--format', 'json'],
        env,
      );
      let doc;
      try {
        doc = JSON.parse(verify.out);
      } catch {
        throw new Error(`lab verify printed no JSON (exit ${verify.code}): ${verify.err}`);
      }
      const span = (r) => r.ports[1] - r.ports[0] + 1;
      const planned = { tcp: 0, udp: 0 };
      let passed = 0;
      let expected = 0;
      let unexpected = 0;
      for (const f of doc.flows) {
        for (const r of f.results) if (r.verdict !== 'no-route') planned[f.protocol] += span(r);
        if (!f.failed) passed++;
        else if (f.expectedFailure) expected++;
        else unexpected++;
      }
      const unplanned = doc.unplanned.length;
      const leaks = doc.unplanned.filter((u) => u.result !== 'blocked').length;
      const nmap = await nmapSame(state, doc);
      const down = await timed(process.execPath, [BIN, 'lab', 'down', '--name', name], env);
      if (down.code !== 0) throw new Error(`lab down failed: ${down.err}`);
      const [bareUp, bareDown] = bareTopology(
        state.hosts.map((h) => h.addresses[0]),
        made,
      );
      const row = {
        up: up.seconds,
        verify: verify.seconds,
        down: down.seconds,
        planned,
        unplanned,
        flows: doc.flows.length,
        passed,
        expected,
        unexpected,
        leaks,
        errors: doc.errors.length,
        nmap,
        bareUp,
        bareDown,
        namespaces: state.objects.netns.length,
        responders: state.objects.pids.length,
      };
      rows.push(row);
      const probes = planned.tcp + planned.udp + unplanned;
      console.error(
        `run ${i + 1}: up ${row.up.toFixed(2)} s, verify ${row.verify.toFixed(2)} s (${probes} probes, ${(probes / row.verify).toFixed(0)}/s; flows ${passed} passed, ${expected} expected failures, ${unexpected} unexpected; ${leaks} unplanned not blocked), down ${row.down.toFixed(2)} s; nmap ${nmap.seconds.toFixed(2)} s over ${nmap.probes} TCP pairs (${nmap.open} open); bare topology ${bareUp.toFixed(2)} s + ${bareDown.toFixed(2)} s`,
      );
    }
  } finally {
    reap(PREFIX);
    try {
      process.kill(watchdog.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const loadAfter = loadavg()[0];
  const linksAfter = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
  const left = netnsList().filter((n) => n.startsWith(PREFIX) || made.has(n));
  const clean =
    linksAfter === linksBefore && left.length === 0
      ? `root namespace links identical before and after; none of the ${made.size} namespaces this run made is left`
      : `NOT clean: ${left.length} namespaces of this run left (${left.join(', ')}); root namespace links ${linksAfter === linksBefore ? 'identical' : 'differ'}`;

  const nmapVersion = (
    spawnSync('nmap', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? ''
  ).trim();
  const med = (f) => median(rows.map(f));
  const all = (f, d = 2) => rows.map((r) => f(r).toFixed(d)).join(', ');
  const r0 = rows[0];
  const probes = (r) => r.planned.tcp + r.planned.udp + r.unplanned;
  const lines = [
    '# portolan lab: the Veeam site grown to 20 hosts',
    '',
    'Written by `npm run bench` (bench/lab.mjs). bench/veeam-20.yaml: examples/veeam-proxmox.yaml grown',
    `to 20 hosts (one IPv6 guest, one DNS-name host), ${r0.flows} probed flows. Each run: \`lab up\`, \`lab verify`,
    '--format json` (check --secret from every source namespace, two at a time; every planned range swept',
    'in full; the sampled unplanned probes), then nmap over the same TCP pairs, then `lab down`, then',
    'the bare topology. Wall times include process start-up. Median first, every run in brackets.',
    '',
    `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}, Node ${process.version}, ${nmapVersion}`,
    `- load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${loadAfter.toFixed(2)} (the machine is shared); runs: ${RUNS}`,
    `- per run: ${r0.namespaces} namespaces, ${r0.responders} responders; probes: ${r0.planned.tcp} planned TCP + ${r0.planned.udp} planned UDP (address, port) pairs + ${r0.unplanned} unplanned = ${probes(r0)}`,
    `- verdicts per run: flows passed ${all((r) => r.passed, 0)}; failing as expected (no shared address family) ${all((r) => r.expected, 0)}; failing otherwise ${all((r) => r.unexpected, 0)}; unplanned probes not blocked ${all((r) => r.leaks, 0)}; errors ${all((r) => r.errors, 0)}`,
    `- clean-up: ${clean}`,
    '',
    '| step | portolan lab (s) | compared with (s) |',
    '|---|---|---|',
    `| up: 21 namespaces, bridge, veths, addresses, generated nftables rulesets, 20 responders bound | ${med((r) => r.up).toFixed(2)} (${all((r) => r.up)}) | bare topology, one \`ip\` command at a time, no rulesets or responders: ${med((r) => r.bareUp).toFixed(2)} (${all((r) => r.bareUp)}) |`,
    `| verify: ${probes(r0)} probes through both hosts' rulesets to authenticated responders | ${med((r) => r.verify).toFixed(2)} (${all((r) => r.verify)}) | nmap -sT -T5 over the ${r0.nmap.probes} planned TCP pairs from the same namespaces (${r0.nmap.runs} runs, 2 at a time): ${med((r) => r.nmap.seconds).toFixed(2)} (${all((r) => r.nmap.seconds)}); open ${all((r) => r.nmap.open, 0)} |`,
    `| probes per second | ${med((r) => probes(r) / r.verify).toFixed(0)} (${all((r) => probes(r) / r.verify, 0)}) | nmap: ${med((r) => r.nmap.probes / r.nmap.seconds).toFixed(0)} (${all((r) => r.nmap.probes / r.nmap.seconds, 0)}) |`,
    `| down: every namespace, process and file the state file lists | ${med((r) => r.down).toFixed(2)} (${all((r) => r.down)}) | bare topology removed: ${med((r) => r.bareDown).toFixed(2)} (${all((r) => r.bareDown)}) |`,
    '',
    'nmap reports a port open when anything accepts the connection. verify does more per port: the',
    "connect sweep, then on every open TCP port a signed exchange with the target's responder (its",
    "`ok (responder)`: the lab's secret answered, so the right host is behind the port), held under the",
    "responder's per-source connection share; it also probes UDP and the unplanned ports. containerlab",
    'was not measured here (it needs a container runtime per node); the bare topology row is the part',
    'of any namespace lab that does not depend on the tool.',
    '',
  ];
  writeSection('lab', lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}
