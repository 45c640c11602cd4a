#!/usr/bin/env node
// `npm run bench` (third part): sites the size of real estates. For each size (BENCH_SCALE, default
// 1000,10000,100000 hosts) it generates a site (bench/gen-site.mjs), then times, under
// /usr/bin/time -v: `plan --format json`, `export --to nftables --network` and a one-host export
// (`--host proxy-0`), recording wall time, CPU seconds, peak RSS, output size and the growth factor
// from the size before. The physical reference is `nft -c -f` reading the nftables export (the time
// the kernel's own tool takes to parse what portolan wrote). The table replaces the "scale" section
// of bench/RESULTS.md. The machine is shared: the load average is part of the result.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSite } from './gen-site.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'portolan.js');
const SIZES = (process.env.BENCH_SCALE ?? '1000,10000,100000').split(',').map(Number);
const RESULTS = join(ROOT, 'bench', 'RESULTS.md');
const BEGIN = '<!-- scale: written by bench/scale.mjs -->';
const END = '<!-- end scale -->';

/** Runs a command under /usr/bin/time -v; wall s, CPU s, peak RSS MiB, exit code, stdout to `out`. */
function timed(args, out) {
  const fd = out ? openSync(out, 'w') : 'ignore';
  const r = spawnSync('/usr/bin/time', ['-v', ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    stdio: ['ignore', fd, 'pipe'],
  });
  if (typeof fd === 'number') closeSync(fd);
  const field = (name) => {
    const m = new RegExp(`${name}: (.*)`).exec(r.stderr);
    return m ? m[1].trim() : '';
  };
  const wallText = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)');
  const wall = wallText.split(':').reduce((a, p) => a * 60 + Number(p), 0);
  const cpu = Number(field('User time \\(seconds\\)')) + Number(field('System time \\(seconds\\)'));
  const rss = Number(field('Maximum resident set size \\(kbytes\\)')) / 1024;
  const code = Number(field('Exit status'));
  const last = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('portolan:'))
    .at(-1);
  return { wall, cpu, rss, code, error: last };
}

function size(file) {
  return existsSync(file) ? statSync(file).size : 0;
}

const mib = (b) => (b < 2 ** 20 ? `${Math.round(b / 1024)} KiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);
const dir = mkdtempSync(join(tmpdir(), 'portolan-scale-'));
const rows = [];
let nftRef = '';
const before = loadavg()[0].toFixed(2);
try {
  let prev;
  for (const n of SIZES) {
    const site = join(dir, `site-${n}.yaml`);
    writeFileSync(site, generateSite(n));
    const planOut = join(dir, `plan-${n}.json`);
    const nftOut = join(dir, `net-${n}.nft`);
    const oneOut = join(dir, `one-${n}.nft`);
    const plan = timed(['node', BIN, 'plan', site, '--format', 'json'], planOut);
    const net = timed(['node', BIN, 'export', site, '--to', 'nftables', '--network', '-o', nftOut]);
    const one = timed(['node', BIN, 'export', site, '--to', 'nftables', '--host', 'proxy-0', '-o', oneOut]);
    const flows = plan.code === 0 ? JSON.parse(readFileSync(planOut, 'utf8')).flows.length : 0;
    const row = {
      n,
      bytes: size(site),
      flows,
      plan,
      net,
      one,
      planBytes: size(planOut),
      nftBytes: size(nftOut),
      oneBytes: size(oneOut),
    };
    row.growth = prev ? (plan.cpu / prev.plan.cpu).toFixed(1) : '';
    rows.push(row);
    prev = row;
    console.log(JSON.stringify({ ...row }));
    if (n === 10000 && net.code === 0) {
      const nft = timed(['nft', '-c', '-f', nftOut]);
      nftRef = `\`nft -c -f\` of the ${n}-host network export (${mib(row.nftBytes)}): ${nft.wall.toFixed(2)} s wall, ${nft.cpu.toFixed(2)} CPU-s, ${nft.rss.toFixed(0)} MiB peak, exit ${nft.code}${nft.code ? ' (needs root and nf_tables)' : ''}; portolan's export of the same site: ${net.wall.toFixed(2)} s wall, ${net.cpu.toFixed(2)} CPU-s.`;
      console.log(nftRef);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const cell = (r, bytes) =>
  r.code === 0
    ? `${r.wall.toFixed(2)} s (${r.cpu.toFixed(2)} CPU-s), ${r.rss.toFixed(0)} MiB${bytes !== undefined ? `, ${mib(bytes)}` : ''}`
    : `exit ${r.code}${r.error ? `: ${r.error.slice(0, 160)}` : ''}`;
const lines = [
  BEGIN,
  '# Scale: plan and export of generated sites',
  '',
  `Written by \`npm run bench\` (bench/scale.mjs). Sites from bench/gen-site.mjs (three products; ESXi hosts as`,
  'addresses and /28s, guests with facts, PlateSpin sources with drives). Each cell: wall time (CPU seconds,',
  'user + system), peak RSS from `/usr/bin/time -v`, and the output size. Growth: CPU of the plan over the',
  'size before (10 means linear for 10 times the hosts).',
  '',
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}; load average (1 min) before/after: ${before} / ${loadavg()[0].toFixed(2)}`,
  '',
  '| hosts (inventory) | flows | `plan --format json` | plan growth | `export --to nftables --network` | one-host export (`--host proxy-0`) |',
  '|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.n} (${mib(r.bytes)}) | ${r.flows} | ${cell(r.plan, r.planBytes)} | ${r.growth || '-'} | ${cell(r.net, r.nftBytes)} | ${cell(r.one, r.oneBytes)} |`,
  ),
  '',
  nftRef ? `Reference: ${nftRef}` : 'Reference: `nft -c -f` was not run (no 10000-host export).',
  END,
  '',
];
const old = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '';
const start = old.indexOf(BEGIN);
const stop = old.indexOf(END);
const kept =
  start >= 0 && stop > start ? old.slice(0, start) + old.slice(stop + END.length).replace(/^\n/, '') : old;
writeFileSync(RESULTS, `${kept.replace(/\n*$/, '\n\n')}${lines.join('\n')}`);
console.log(`wrote the scale section of ${RESULTS}`);
