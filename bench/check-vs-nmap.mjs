#!/usr/bin/env node
// `npm run bench`: portolan check against nmap -sT on all 65535 TCP ports of one namespace host,
// in two regimes: closed ports answer with a reset, and an input policy of drop with a few open
// ports. Both tools run in the same namespace against the same host, alternately; every run's
// verdicts are compared port for port; the medians go to bench/RESULTS.md. Needs root (network
// namespaces, nftables) and nmap. Not part of npm test. BENCH_RUNS sets the runs per regime (3);
// BENCH_REGIMES=reset (or drop) runs one regime and prints its row without writing RESULTS.md.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { counts, have, median, regimeRules, removeNamespaces, sh, timed, writeSection } from './results.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'portolan.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const REGIMES = (process.env.BENCH_REGIMES ?? 'reset,drop').split(',');
for (const r of REGIMES)
  if (r !== 'reset' && r !== 'drop') {
    console.error(
      `BENCH_REGIMES: ${JSON.stringify(r)} is not a regime (expected reset, drop or both, comma-separated)`,
    );
    process.exit(2);
  }
const OPEN = [22, 443, 902, 3389, 50000];
const PREFIX = `pt${process.pid}x`;
const CLIENT = `${PREFIX}c`;
const SERVER = `${PREFIX}s`;
const C_IP = '10.213.200.1';
const S_IP = '10.213.200.2';

/** Runs `cmd args` in the client namespace: exit code, output and wall time (seconds). */
function run(cmd, args) {
  return timed('ip', ['netns', 'exec', CLIENT, cmd, ...args]);
}

let peer;
function setup(dir) {
  sh('ip', ['netns', 'add', CLIENT]);
  sh('ip', ['netns', 'add', SERVER]);
  sh('ip', ['link', 'add', 'c0', 'netns', CLIENT, 'type', 'veth', 'peer', 'name', 's0', 'netns', SERVER]);
  sh('ip', ['-n', CLIENT, 'addr', 'add', `${C_IP}/24`, 'dev', 'c0']);
  sh('ip', ['-n', SERVER, 'addr', 'add', `${S_IP}/24`, 'dev', 's0']);
  for (const [ns, dev] of [
    [CLIENT, 'c0'],
    [SERVER, 's0'],
  ]) {
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
  const listener = `const net = require('node:net'); for (const p of ${JSON.stringify(OPEN)}) net.createServer((s) => s.on('error', () => {})).listen(p, '${S_IP}');`;
  peer = spawn('ip', ['netns', 'exec', SERVER, process.execPath, '-e', listener], {
    stdio: 'ignore',
    detached: true,
  });
  writeFileSync(
    join(dir, 'bench.yaml'),
    [
      'product: bench',
      'title: every TCP port',
      'documents:',
      '  - { file: bench.txt, title: bench }',
      'roles:',
      '  client: { title: client }',
      '  server: { title: server }',
      'entries:',
      '  - { id: all, from: client, to: server, protocol: tcp, ports: ["1-65535"], service: bench-any, purpose: every port, sources: [{ doc: bench.txt, table: t, row: 1 }] }',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'site.yaml'),
    `site: bench\ncatalogs: [bench.yaml]\nproducts:\n  bench: {}\nhosts:\n  cli: { address: ${C_IP}, roles: [bench:client] }\n  srv: { address: ${S_IP}, roles: [bench:server] }\n`,
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

/** portolan JSON -> port -> open|closed|filtered|other */
function portolanVerdicts(text) {
  const doc = JSON.parse(text);
  const out = new Map();
  const word = { 'open-unverified': 'open', closed: 'closed', filtered: 'filtered' };
  for (const f of doc.flows)
    for (const r of f.results)
      for (let p = r.ports[0]; p <= r.ports[1]; p++) out.set(p, word[r.verdict] ?? r.verdict);
  return out;
}

/** nmap XML -> port -> state; collapsed ("extraports") states come with their port lists. */
function nmapVerdicts(xml) {
  const out = new Map();
  for (const m of xml.matchAll(/<extraports state="([^"]+)"[^>]*>([\s\S]*?)<\/extraports>/g))
    for (const r of (m[2] ?? '').matchAll(/<extrareasons [^>]*ports="([^"]+)"/g))
      for (const part of (r[1] ?? '').split(',')) {
        const [lo, hi = lo] = part.split('-').map(Number);
        for (let p = lo; p <= hi; p++) out.set(p, m[1]);
      }
  for (const m of xml.matchAll(/<port protocol="tcp" portid="(\d+)"><state state="([^"]+)"/g))
    out.set(Number(m[1]), m[2]);
  return out;
}

function compare(a, b) {
  const diff = [];
  for (let p = 1; p <= 65535; p++)
    if (a.get(p) !== b.get(p)) diff.push(`${p}: portolan ${a.get(p) ?? 'none'}, nmap ${b.get(p) ?? 'none'}`);
  return diff;
}

async function main() {
  const missing = ['ip', 'nft', 'nmap'].filter((c) => !have(c));
  if (process.getuid?.() !== 0 || missing.length) {
    console.error(`bench needs root and ${missing.length ? missing.join(', ') : 'ip, nft, nmap'}: not run`);
    process.exitCode = 2;
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'portolan-bench-'));
  const cleanup = () => teardown(dir);
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.once(sig, () => {
      cleanup();
      process.exit(130);
    });
  const loadBefore = loadavg()[0];
  const rows = [];
  try {
    setup(dir);
    await new Promise((r) => setTimeout(r, 500));
    for (const regime of REGIMES) {
      sh('ip', ['netns', 'exec', SERVER, 'nft', '-f', '-'], regimeRules(regime, OPEN));
      const times = { portolan: [], nmap: [] };
      const mismatches = [];
      const startup = [];
      let summary = '';
      for (let i = 0; i < RUNS; i++) {
        // The same check narrowed to one open port: what portolan spends before and after the sweep.
        const one = await run(process.execPath, [
          BIN,
          'check',
          join(dir, 'site.yaml'),
          '--from',
          'cli',
          '--format',
          'json',
          '--port',
          '22',
        ]);
        startup.push(one.seconds);
        const order = i % 2 ? ['nmap', 'portolan'] : ['portolan', 'nmap'];
        const got = {};
        for (const tool of order) {
          const r =
            tool === 'portolan'
              ? await run(process.execPath, [
                  BIN,
                  'check',
                  join(dir, 'site.yaml'),
                  '--from',
                  'cli',
                  '--format',
                  'json',
                  // Uncapped, as nmap -T5 is: the default --max-rate is for production paths.
                  '--max-rate',
                  '0',
                ])
              : await run('nmap', ['-sT', '-n', '-Pn', '-p-', '-T5', '-oX', '-', S_IP]);
          if (tool === 'nmap' && r.code !== 0) throw new Error(`nmap failed: ${r.err}`);
          if (tool === 'portolan' && !r.out.startsWith('{')) throw new Error(`portolan failed: ${r.err}`);
          times[tool].push(r.seconds);
          got[tool] = tool === 'portolan' ? portolanVerdicts(r.out) : nmapVerdicts(r.out);
          console.error(`${regime} run ${i + 1}: ${tool} ${r.seconds.toFixed(2)} s (${counts(got[tool])})`);
        }
        const diff = compare(got.portolan, got.nmap);
        mismatches.push(diff.length);
        if (diff.length) console.error(`  ${diff.length} ports differ, e.g. ${diff.slice(0, 5).join('; ')}`);
        summary = counts(got.portolan);
      }
      rows.push({ regime, times, mismatches, summary, startup });
    }
  } finally {
    cleanup();
  }
  const loadAfter = loadavg()[0];
  const nmapVersion = (
    spawnSync('nmap', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? ''
  ).trim();
  const fmt = (xs) => xs.map((x) => x.toFixed(2)).join(', ');
  const lines = [
    '# portolan check vs nmap -sT: all 65535 TCP ports',
    '',
    'Written by `npm run bench` (bench/check-vs-nmap.mjs). One host in a network namespace, reached over a',
    'veth pair from a client namespace; a site whose plan names every TCP port (1-65535). Each run',
    'executes `portolan check SITE --from cli --format json` and `nmap -sT -n -Pn -p- -T5 -oX -`',
    'against the same host, alternating which goes first; wall time includes process start-up.',
    '',
    `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}, Node ${process.version}, ${nmapVersion}`,
    `- load average (1 min) before/after: ${loadBefore.toFixed(2)} / ${loadAfter.toFixed(2)}; runs per regime: ${RUNS}`,
    `- open ports in both regimes: ${OPEN.join(', ')}`,
    '',
    '| regime | portolan median (s) | nmap median (s) | nmap / portolan | ports that differ per run | portolan verdicts | portolan start-up (s) |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.regime === 'reset' ? 'closed ports answer RST' : 'input policy drop, 5 open'} | ${median(r.times.portolan).toFixed(2)} (${fmt(r.times.portolan)}) | ${median(r.times.nmap).toFixed(2)} (${fmt(r.times.nmap)}) | ${(median(r.times.nmap) / median(r.times.portolan)).toFixed(2)}× | ${r.mismatches.join(', ')} | ${r.summary} | ${median(r.startup).toFixed(2)} |`,
    ),
    '',
    'Start-up is the same check narrowed to one open port (`--port 22`): loading the tool, its',
    'catalogs and the site, and writing the report. The sweep itself is roughly the difference.',
    'Verdicts compared port for port: portolan open-unverified = nmap open, closed = closed,',
    'filtered = filtered. The machine is shared, so the load average is part of the result.',
    '',
  ];
  if (REGIMES.join(',') === 'reset,drop') writeSection('check-vs-nmap', lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
