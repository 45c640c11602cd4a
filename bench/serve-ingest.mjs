#!/usr/bin/env node
// `npm run bench` (second part): server ingest. `portolan serve` runs as its own process (the
// bench's HTTP clients must not share its event loop), first on SQLite, then on a throwaway
// PostgreSQL cluster (when Debian's server is installed and this runs as root). 1,000 agents are
// enrolled, each with its own token. Two kinds of load:
//
// - steady: the agents on their intervals. An agent checks every INTERVAL from a random phase, so
//   the fleet's cycles arrive as a Poisson process at AGENTS / INTERVAL per second (the sum of many
//   independent periodic sources). Each arrival is one agent's whole cycle, as src/agent/agent.ts
//   makes it: heartbeat, plan, then the result post (4 flow results) that is timed. Run at the
//   default 5-minute interval and at a 30-second one (ten times the load).
// - burst: every agent posts at the same instant (a fleet restarted together): mostly queueing,
//   reported apart.
//
// Per case: result posts, results per second, p50/p99/max latency of the result post, and a check
// that every run was stored exactly once. The table goes to bench/RESULTS.md (its own section).
// BENCH_AGENTS (1000), BENCH_STEADY_SECONDS (90: how long each steady case runs).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { openDb } = await import(join(ROOT, 'dist/src/server/db.js'));
const { pgUnavailable, startPg } = await import(join(ROOT, 'dist/test/pg-cluster.js'));
const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 90);
const YAML = readFileSync(join(ROOT, 'examples/lab/loopback.yaml'), 'utf8');
const MARK = '<!-- serve-ingest: written by bench/serve-ingest.mjs -->';
const END = '<!-- end serve-ingest -->';
const { replaceSection } = await import(join(ROOT, 'bench/section.mjs'));

function pct(sorted, p) {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServe(db, dir, priority) {
  const port = await freePort();
  // BENCH_PROFILE=DIR: the serve process writes a V8 CPU profile there (node --cpu-prof) when it exits.
  const prof = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  // priority: the serve process alone runs at nice -15 (needs root), ahead of the machine's other work.
  const [cmd, pre] = priority ? ['nice', ['-n', '-15', process.execPath]] : [process.execPath, []];
  const child = spawn(
    cmd,
    [
      ...pre,
      ...prof,
      join(ROOT, 'bin/portolan.js'),
      'serve',
      '--db',
      db,
      '--listen',
      `127.0.0.1:${port}`,
      '--no-examples',
      '--token-file',
      join(dir, 'admin-token'),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b) => {
      out += String(b);
      if (out.includes('portolan serve: http')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
  return {
    child,
    base: `http://127.0.0.1:${port}`,
    admin: readFileSync(join(dir, 'admin-token'), 'utf8').trim(),
  };
}

/** CPU seconds (user + system) the process has used so far, from /proc (Linux); NaN elsewhere. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Runs one load case and adds the server's CPU time per result post (its service cost, whatever the queueing). */
async function measured(pid, fn) {
  const c0 = cpuSeconds(pid);
  const row = await fn();
  row.cpuMs = ((cpuSeconds(pid) - c0) * 1000) / Math.max(1, row.posts);
  return row;
}

async function call(base, token, method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status} ${text}`);
  return JSON.parse(text);
}

/** A run of every flow of `plan` found ok, under a fresh idempotency key. */
function resultBody(plan) {
  return {
    key: randomUUID(),
    version: plan.version,
    startedAt: new Date().toISOString(),
    isolated: false,
    results: plan.flowIds.map((flowId) => ({ flowId, verdict: 'ok', detail: { reason: 'bench' } })),
  };
}

/** One agent cycle: heartbeat, plan, result post. Returns the result post's latency in ms. */
async function cycle(base, agent) {
  await call(base, agent.token, 'POST', '/api/agent/heartbeat', {});
  const plan = await call(base, agent.token, 'GET', '/api/agent/plan');
  const body = resultBody(plan);
  const s = performance.now();
  const r = await call(base, agent.token, 'POST', '/api/agent/results', body);
  const ms = performance.now() - s;
  if (r.key !== body.key || !r.stored) throw new Error(`result post not stored: ${JSON.stringify(r)}`);
  return { ms, results: body.results.length };
}

function summary(name, lat, results, seconds, failures) {
  lat.sort((a, b) => a - b);
  return {
    name,
    posts: lat.length,
    failures,
    perSecond: results / seconds,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    max: lat.at(-1) ?? Number.NaN,
  };
}

/** Poisson arrivals at `rate` per second for `seconds`; each arrival is a random agent's cycle. */
async function steady(base, agents, intervalSeconds, seconds) {
  const rate = agents.length / intervalSeconds;
  const lat = [];
  let results = 0;
  let failures = 0;
  const inflight = [];
  const t0 = performance.now();
  let next = 0;
  for (;;) {
    next += -Math.log(1 - Math.random()) / rate;
    if (next > seconds) break;
    const wait = t0 + next * 1000 - performance.now();
    if (wait > 0) await sleep(wait);
    const agent = agents[Math.floor(Math.random() * agents.length)];
    inflight.push(
      cycle(base, agent).then(
        (r) => {
          lat.push(r.ms);
          results += r.results;
        },
        (err) => {
          failures++;
          console.error(`a cycle failed: ${err.message}`);
        },
      ),
    );
  }
  await Promise.all(inflight);
  const label = intervalSeconds >= 60 ? `${intervalSeconds / 60} min` : `${intervalSeconds} s`;
  return summary(
    `steady, ${agents.length} agents every ${label} (Poisson, ${rate.toFixed(1)} cycles/s, ${seconds} s)`,
    lat,
    results,
    (performance.now() - t0) / 1000,
    failures,
  );
}

/** Every agent posts its result at the same instant (plans fetched beforehand). */
async function burst(base, agents) {
  const plan = await call(base, agents[0].token, 'GET', '/api/agent/plan');
  const lat = [];
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    agents.map(async (agent) => {
      const body = resultBody(plan);
      const s = performance.now();
      try {
        await call(base, agent.token, 'POST', '/api/agent/results', body);
        lat.push(performance.now() - s);
      } catch (err) {
        failures++;
        console.error(`a post failed: ${err.cause?.code ?? err.message}`);
      }
    }),
  );
  return summary(
    `burst, all ${agents.length} agents at once`,
    lat,
    lat.length * plan.flowIds.length,
    (performance.now() - t0) / 1000,
    failures,
  );
}

async function bench(store, db, target, dir, priority = false) {
  const serve = await startServe(db, dir, priority);
  const rows = [];
  try {
    await call(serve.base, serve.admin, 'POST', '/api/sites', { yaml: YAML });
    const agents = [];
    for (let i = 0; i < AGENTS; i++)
      agents.push(
        await call(serve.base, serve.admin, 'POST', '/api/agents', {
          site: 'lab-loopback',
          host: 'vbr',
          name: `sim-${i}`,
        }),
      );
    const pid = serve.child.pid;
    rows.push(await measured(pid, () => steady(serve.base, agents, 300, STEADY_SECONDS)));
    rows.push(await measured(pid, () => steady(serve.base, agents, 30, Math.min(STEADY_SECONDS, 30))));
    rows.push(await measured(pid, () => burst(serve.base, agents)));
  } finally {
    const gone = new Promise((r) => serve.child.once('exit', r));
    serve.child.kill('SIGTERM');
    await gone;
  }
  // Exactly once: every acknowledged post is one stored run, and no run was stored twice.
  const handle = await openDb(target);
  try {
    const runs = Number(
      (
        await handle
          .selectFrom('runs')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirst()
      ).n,
    );
    const posted = rows.reduce((n, r) => n + r.posts, 0);
    for (const r of rows) {
      r.store = store;
      r.priority = priority ? 'nice -15' : 'as-is';
      r.load = loadavg()[0];
      console.log(
        `${store} (${r.priority}): ${r.name}: ${r.posts} result posts, ${r.failures} failed, ${r.perSecond.toFixed(0)} results/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms, server CPU ${r.cpuMs.toFixed(1)} ms per post`,
      );
    }
    console.log(`${store}: ${posted} posts acknowledged, ${runs} runs stored`);
    if (runs !== posted || rows.some((r) => r.failures)) process.exitCode = 1;
    return { rows, runs, posted };
  } finally {
    await handle.destroy();
  }
}

const load0 = loadavg()[0];
const done = [];
const dir = mkdtempSync(join(tmpdir(), 'ptbench-'));
try {
  const file = join(dir, 'bench.db');
  done.push(await bench('SQLite', file, { kind: 'sqlite', file }, dir));
  // The same load with the serve process alone given CPU priority over the machine's other work
  // (nice -15; root only): the part of the latency that is waiting for a CPU behind other processes.
  if (process.getuid?.() === 0) {
    const file2 = join(dir, 'bench-nice.db');
    done.push(await bench('SQLite', file2, { kind: 'sqlite', file: file2 }, dir, true));
  } else console.log('SQLite at nice -15: skipped (needs root)');
} finally {
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
}
const why = process.env.BENCH_STORES === 'sqlite' ? 'BENCH_STORES=sqlite' : pgUnavailable();
if (why) console.log(`PostgreSQL: skipped (${why})`);
else {
  const pg = await startPg();
  const pgDir = mkdtempSync(join(tmpdir(), 'ptbench-'));
  try {
    done.push(await bench('PostgreSQL', pg.url, { kind: 'postgres', url: pg.url }, pgDir));
  } finally {
    pg.stop();
    rmSync(pgDir, { recursive: true, force: true, maxRetries: 5 });
  }
}

const f = (n) => n.toFixed(1);
const lines = [
  MARK,
  '# Server ingest: 1,000 agents posting to `portolan serve`',
  '',
  'Written by `npm run bench` (bench/serve-ingest.mjs). `portolan serve` runs as its own process; the',
  'clients post over loopback HTTP. Steady: the agents on their intervals, arriving as a Poisson',
  'process, each arrival one whole agent cycle (heartbeat, plan, result post of 4 flow results); the',
  'latency is the result post. Burst: every agent posts at the same instant (queueing, not service time).',
  "Target: p99 under 50 ms at 1,000 agents on SQLite. Server CPU per post is the serve process's",
  'CPU time over the case divided by the result posts (a steady cycle also holds its heartbeat and',
  'plan fetch): the service cost with the queueing behind a busy machine taken out.',
  '',
  `- machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, Node ${process.version}; load average (1 min) before/after: ${load0.toFixed(2)} / ${loadavg()[0].toFixed(2)}`,
  '',
  '| store | serve process | load | load average after | result posts | results/s | p50 (ms) | p99 (ms) | max (ms) | server CPU per post (ms) | stored once |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
  ...done.flatMap((d) =>
    d.rows.map(
      (r) =>
        `| ${r.store} | ${r.priority} | ${r.name} | ${r.load.toFixed(2)} | ${r.posts} | ${r.perSecond.toFixed(0)} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.max)} | ${f(r.cpuMs)} | ${d.runs === d.posted ? `yes (${d.runs} runs)` : `NO: ${d.posted} acknowledged, ${d.runs} stored`} |`,
    ),
  ),
  '',
  ...targetLines(),
  '',
];

/** Plainly, which measured rows met the target (p99 under 50 ms, SQLite, 1,000 agents every 5 minutes) and which did not. */
function targetLines() {
  const rows = done
    .flatMap((d) => d.rows)
    .filter((r) => r.store === 'SQLite' && r.name.includes('every 5 min'));
  const say = (r) => `${r.priority === 'as-is' ? 'as-is' : 'serve at nice -15'}: p99 ${f(r.p99)} ms`;
  const met = rows.filter((r) => r.p99 < 50);
  const missed = rows.filter((r) => !(r.p99 < 50));
  return [
    `Target (p99 < 50 ms, SQLite, ${AGENTS} agents every 5 min): ${met.length ? `met ${met.map(say).join('; ')}` : 'not met in any row'}${missed.length ? `; not met ${missed.map(say).join('; ')}` : ''}.`,
  ];
}
if (!process.env.BENCH_AGENTS && !process.env.BENCH_STEADY_SECONDS) {
  // Only this script's section is replaced; the check below proves the rest of the file unchanged.
  const results = join(ROOT, 'bench', 'RESULTS.md');
  const old = existsSync(results) ? readFileSync(results, 'utf8') : '';
  const text = replaceSection(old, MARK, END, [...lines, END, ''].join('\n'));
  const outside = (t) => {
    const at = t.indexOf(MARK);
    return at < 0 ? t.trimEnd() : t.slice(0, at) + t.slice(t.indexOf(END, at) + END.length);
  };
  if (old.includes(MARK) && outside(text) !== outside(old))
    throw new Error('bench/RESULTS.md: writing the server ingest section would change other sections');
  writeFileSync(`${results}.tmp`, text);
  renameSync(`${results}.tmp`, results);
}
