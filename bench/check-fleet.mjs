#!/usr/bin/env node
// `npm run bench`: portolan check from one source to 200 targets on TCP 2500-3300, side by side with
// nmap -sT -T4 and -T5 over the same targets and ports. The 200 targets are 200 addresses of one
// network namespace, reached over a veth pair from a client namespace. Two regimes: closed ports
// answer with a reset, and an input policy of drop. In both, OPEN ports listen on every address (an
// answer per target, as a real fleet's SSH or agent port gives). Each run is timed by GNU time
// (wall, CPU-seconds user + system, peak RSS); every run's verdicts are compared per target and
// port with the others'. Medians go to bench/RESULTS.md, section check-fleet. Needs root, ip, nft,
// nmap and /usr/bin/time. BENCH_RUNS sets the runs per regime (3); BENCH_REGIMES=reset (or drop)
// runs one regime and prints its rows without writing RESULTS.md; BENCH_TOOLS picks the tools
// (portolan,nmap-T4,nmap-T5).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { counts, have, median, regimeRules, removeNamespaces, sh, timed, writeSection } from './results.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'portolan.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const REGIMES = (process.env.BENCH_REGIMES ?? 'reset,drop').split(',');
const TOOLS = (process.env.BENCH_TOOLS ?? 'portolan,nmap-T4,nmap-T5').split(',');
for (const r of REGIMES)
  if (r !== 'reset' && r !== 'drop') {
    console.error(
      `BENCH_REGIMES: ${JSON.stringify(r)} is not a regime (expected reset, drop or both, comma-separated)`,
    );
    process.exit(2);
  }
for (const t of TOOLS)
  if (!['portolan', 'nmap-T4', 'nmap-T5'].includes(t)) {
    console.error(`BENCH_TOOLS: ${JSON.stringify(t)} is not a tool (expected portolan, nmap-T4, nmap-T5)`);
    process.exit(2);
  }
const TARGETS = 200;
const LO = 2500;
const HI = 3300;
const OPEN = [2600, 3200];
const PREFIX = `pt${process.pid}f`;
const CLIENT = `${PREFIX}c`;
const SERVER = `${PREFIX}s`;
const C_IP = '10.214.0.1';
const ADDRS = Array.from({ length: TARGETS }, (_, k) => `10.214.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`);

/**
 * Runs `cmd args` in the client namespace under GNU time: exit code, output, wall seconds,
 * CPU-seconds (user + system, children included) and peak RSS in MiB.
 */
async function run(dir, cmd, args) {
  const stats = join(dir, 'time.txt');
  const r = await timed('ip', [
    'netns',
    'exec',
    CLIENT,
    '/usr/bin/time',
    '-o',
    stats,
    '-f',
    '%e %U %S %M',
    cmd,
    ...args,
  ]);
  const [wall, user, sys, kb] = readFileSync(stats, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
  return { ...r, wall, cpu: user + sys, rssMiB: kb / 1024 };
}

let peer;
function setup(dir) {
  sh('ip', ['netns', 'add', CLIENT]);
  sh('ip', ['netns', 'add', SERVER]);
  sh('ip', ['link', 'add', 'c0', 'netns', CLIENT, 'type', 'veth', 'peer', 'name', 's0', 'netns', SERVER]);
  sh('ip', ['-n', CLIENT, 'addr', 'add', `${C_IP}/16`, 'dev', 'c0']);
  sh('ip', ['-n', SERVER, '-batch', '-'], `${ADDRS.map((a) => `addr add ${a}/16 dev s0`).join('\n')}\n`);
  for (const [ns, dev] of [
    [CLIENT, 'c0'],
    [SERVER, 's0'],
  ]) {
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
  const listener = `const net = require('node:net'); for (const p of ${JSON.stringify(OPEN)}) net.createServer((s) => s.on('error', () => {})).listen(p, '0.0.0.0');`;
  peer = spawn('ip', ['netns', 'exec', SERVER, process.execPath, '-e', listener], {
    stdio: 'ignore',
    detached: true,
  });
  writeFileSync(
    join(dir, 'fleet.yaml'),
    [
      'product: fleet',
      'title: a port range on every host of a fleet',
      'documents:',
      '  - { file: fleet.txt, title: fleet }',
      'roles:',
      '  client: { title: client }',
      '  server: { title: server }',
      'entries:',
      `  - { id: range, from: client, to: server, protocol: tcp, ports: ["${LO}-${HI}"], service: fleet-any, purpose: a port range, sources: [{ doc: fleet.txt, table: t, row: 1 }] }`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'site.yaml'),
    [
      'site: fleet',
      'catalogs: [fleet.yaml]',
      'products:',
      '  fleet: {}',
      'hosts:',
      `  cli: { address: ${C_IP}, roles: [fleet:client] }`,
      ...ADDRS.map((a, k) => `  t${k}: { address: ${a}, roles: [fleet:server] }`),
      '',
    ].join('\n'),
  );
}

function teardown(dir) {
  if (peer?.pid)
    try {
      process.kill(peer.pid, 'SIGKILL');
    } catch {}
  removeNamespaces([CLIENT, SERVER]);
  rmSync(dir, { recursive: true, force: true });
}

/** portolan JSON -> "address port" -> open|closed|filtered|other */
function portolanVerdicts(text) {
  const doc = JSON.parse(text);
  const out = new Map();
  const word = { 'open-unverified': 'open', closed: 'closed', filtered: 'filtered' };
  for (const f of doc.flows)
    for (const r of f.results)
      for (let p = r.ports[0]; p <= r.ports[1]; p++)
        out.set(`${r.address} ${p}`, word[r.verdict] ?? r.verdict);
  return out;
}

/** nmap XML -> "address port" -> state; collapsed ("extraports") states come with their port lists. */
function nmapVerdicts(xml) {
  const out = new Map();
  for (const h of xml.matchAll(/<host\b[\s\S]*?<\/host>/g)) {
    const text = h[0];
    const address = /<address addr="([^"]+)"/.exec(text)?.[1];
    for (const m of text.matchAll(/<extraports state="([^"]+)"[^>]*>([\s\S]*?)<\/extraports>/g))
      for (const r of (m[2] ?? '').matchAll(/<extrareasons [^>]*ports="([^"]+)"/g))
        for (const part of (r[1] ?? '').split(',')) {
          const [lo, hi = lo] = part.split('-').map(Number);
          for (let p = lo; p <= hi; p++) out.set(`${address} ${p}`, m[1]);
        }
    for (const m of text.matchAll(/<port protocol="tcp" portid="(\d+)"><state state="([^"]+)"/g))
      out.set(`${address} ${m[1]}`, m[2]);
  }
  return out;
}

function compare(a, b) {
  const diff = [];
  for (const addr of ADDRS)
    for (let p = LO; p <= HI; p++) {
      const k = `${addr} ${p}`;
      if (a.get(k) !== b.get(k)) diff.push(`${k}: ${a.get(k) ?? 'none'} vs ${b.get(k) ?? 'none'}`);
    }
  return diff;
}

function command(tool, dir) {
  if (tool === 'portolan')
    // Uncapped, as nmap -T4/-T5 are: the default --max-rate is for production paths.
    return [
      process.execPath,
      [BIN, 'check', join(dir, 'site.yaml'), '--from', 'cli', '--format', 'json', '--max-rate', '0'],
    ];
  const first = ADDRS[0].split('.');
  const last = ADDRS.at(-1).split('.');
  const range =
    first[2] === last[2] ? `${first.slice(0, 3).join('.')}.${first[3]}-${last[3]}` : ADDRS.join(' ');
  return [
    'nmap',
    ['-sT', '-n', '-Pn', `-p${LO}-${HI}`, `-${tool.slice(5)}`, '-oX', '-', ...range.split(' ')],
  ];
}

async function main() {
  const missing = ['ip', 'nft', 'nmap', '/usr/bin/time'].filter((c) => !have(c));
  if (process.getuid?.() !== 0 || missing.length) {
    console.error(
      `bench needs root and ${missing.length ? missing.join(', ') : 'ip, nft, nmap, /usr/bin/time'}: not run`,
    );
    process.exitCode = 2;
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'portolan-fleet-'));
  const cleanup = () => teardown(dir);
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.once(sig, () => {
      cleanup();
      process.exit(130);
    });
  const loads = [loadavg()[0]];
  const rows = [];
  try {
    setup(dir);
    await new Promise((r) => setTimeout(r, 500));
    for (const regime of REGIMES) {
      sh('ip', ['netns', 'exec', SERVER, 'nft', '-f', '-'], regimeRules(regime, OPEN));
      const got = Object.fromEntries(
        TOOLS.map((t) => [t, { wall: [], cpu: [], rss: [], diff: [], summary: '' }]),
      );
      for (let i = 0; i < RUNS; i++) {
        // Rotate which tool goes first: a neighbour cache or a busy minute favours no tool.
        const order = TOOLS.map((_, k) => TOOLS[(k + i) % TOOLS.length]);
        const verdicts = {};
        for (const tool of order) {
          const [cmd, args] = command(tool, dir);
          const r = await run(dir, cmd, args);
          if (tool === 'portolan' ? !r.out.startsWith('{') : r.code !== 0)
            throw new Error(`${tool} failed (exit ${r.code}): ${r.err.slice(0, 2000)}`);
          verdicts[tool] = tool === 'portolan' ? portolanVerdicts(r.out) : nmapVerdicts(r.out);
          const g = got[tool];
          g.wall.push(r.wall);
          g.cpu.push(r.cpu);
          g.rss.push(r.rssMiB);
          g.summary = counts(verdicts[tool]);
          loads.push(loadavg()[0]);
          console.error(
            `${regime} run ${i + 1}: ${tool} ${r.wall.toFixed(2)} s, ${r.cpu.toFixed(2)} CPU-s, ${r.rssMiB.toFixed(0)} MiB (${g.summary}); load ${loadavg()[0].toFixed(2)}`,
          );
        }
        // Every tool's verdicts against the first tool's (portolan's when it runs).
        const base = TOOLS[0];
        for (const tool of TOOLS) {
          const diff = tool === base ? [] : compare(verdicts[base], verdicts[tool]);
          got[tool].diff.push(diff.length);
          if (diff.length)
            console.error(
              `  ${tool}: ${diff.length} differ from ${base}, e.g. ${diff.slice(0, 5).join('; ')}`,
            );
        }
      }
      rows.push({ regime, got });
    }
  } finally {
    cleanup();
  }
  const nmapVersion = (
    spawnSync('nmap', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? ''
  ).trim();
  const fmt = (xs) => xs.map((x) => x.toFixed(2)).join(', ');
  const label = { portolan: 'portolan check', 'nmap-T4': 'nmap -sT -T4', 'nmap-T5': 'nmap -sT -T5' };
  const lines = [
    `# portolan check vs nmap -sT: ${TARGETS} targets, TCP ${LO}-${HI}`,
    '',
    'Written by `npm run bench` (bench/check-fleet.mjs). One client namespace and one target namespace',
    `holding ${TARGETS} addresses, joined by a veth pair; a site with the client and ${TARGETS} hosts whose plan`,
    `names TCP ${LO}-${HI} on each (${TARGETS * (HI - LO + 1)} target ports). Each run executes`,
    '`portolan check SITE --from cli --format json --max-rate 0`, `nmap -sT -n -Pn -T4` and `-T5` against the',
    'same targets and ports, rotating which goes first, each under GNU time: wall time (process start-up',
    'included), CPU-seconds (user + system) and peak RSS.',
    '',
    `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}, Node ${process.version}, ${nmapVersion}`,
    `- load average (1 min) before, during (min-max), after: ${loads[0].toFixed(2)}, ${Math.min(...loads).toFixed(2)}-${Math.max(...loads).toFixed(2)}, ${loads.at(-1).toFixed(2)}; runs per regime: ${RUNS}`,
    `- open ports on every target in both regimes: ${OPEN.join(', ')}; reset: nothing else listens (RST); drop: an input policy of drop lets only those in`,
    '',
    '| regime | tool | wall median (s) | runs (s) | CPU-s median | peak RSS median (MiB) | ports that differ from portolan, per run | verdicts |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.flatMap((r) =>
      TOOLS.map((t) => {
        const g = r.got[t];
        return `| ${r.regime === 'reset' ? 'closed ports answer RST' : 'input policy drop'} | ${label[t]} | ${median(g.wall).toFixed(2)} | ${fmt(g.wall)} | ${median(g.cpu).toFixed(2)} | ${median(g.rss).toFixed(0)} | ${g.diff.join(', ')} | ${g.summary} |`;
      }),
    ),
    '',
    'Verdicts compared per target and port: portolan open-unverified = nmap open, closed = closed,',
    'filtered = filtered. The machine is shared (2 cores), so the load average is part of the result.',
    '',
  ];
  if (REGIMES.join(',') === 'reset,drop' && TOOLS.join(',') === 'portolan,nmap-T4,nmap-T5')
    writeSection('check-fleet', lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
