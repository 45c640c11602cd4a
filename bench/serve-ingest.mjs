#!/usr/bin/env node
// `npm run bench` (second part): server ingest. 1,000 simulated agents, each enrolled with its own
// token, post one check run (4 flow results) at once over loopback HTTP to `portolan serve`'s app;
// first on SQLite, then on a throwaway PostgreSQL cluster (when Debian's server is installed and
// this runs as root). Prints results per second, p50/p99 request latency, and checks that every
// run was stored exactly once. BENCH_AGENTS sets the agent count (1000).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { buildApp } = await import(join(ROOT, 'dist/src/server/app.js'));
const { openDb } = await import(join(ROOT, 'dist/src/server/db.js'));
const { Store } = await import(join(ROOT, 'dist/src/server/store.js'));
const { pgUnavailable, startPg } = await import(join(ROOT, 'dist/test/pg-cluster.js'));
const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const YAML = readFileSync(join(ROOT, 'examples/lab/loopback.yaml'), 'utf8');

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function bench(name, target) {
  const db = await openDb(target);
  const store = new Store(db);
  await store.putSite(YAML);
  const flows = (await store.version('lab-loopback', 'latest')).parsed.plan.flows.filter(
    (f) => f.from.host === 'vbr',
  );
  const tokens = [];
  for (let i = 0; i < AGENTS; i++) tokens.push((await store.enrol('lab-loopback', 'vbr', `sim-${i}`)).token);
  const app = await buildApp({ store, generatorVersion: 'bench' });
  await app.listen({ host: '127.0.0.1', port: 0, backlog: 4096 });
  const url = `http://127.0.0.1:${app.server.address().port}/api/agent/results`;
  const lat = [];
  const t0 = performance.now();
  const statuses = await Promise.all(
    tokens.map(async (token) => {
      const body = JSON.stringify({
        key: randomUUID(),
        version: 1,
        startedAt: new Date().toISOString(),
        isolated: false,
        results: flows.map((f) => ({ flowId: f.id, verdict: 'ok', detail: { reason: 'bench' } })),
      });
      const s = performance.now();
      let r;
      try {
        r = await fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body,
        });
        await r.text();
      } catch (err) {
        console.error(`${name}: a post failed: ${err.cause?.code ?? err.message}`);
        return 0;
      }
      lat.push(performance.now() - s);
      return r.status;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const runs = await db
    .selectFrom('runs')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirst();
  await app.close();
  await db.destroy();
  lat.sort((a, b) => a - b);
  const ok = statuses.filter((s) => s === 200).length;
  const line = `${name}: ${AGENTS} agents, ${ok} runs acknowledged, ${Number(runs.n)} stored, ${((ok * flows.length) / seconds).toFixed(0)} results/s, p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms`;
  console.log(line);
  if (ok !== AGENTS || Number(runs.n) !== AGENTS) process.exitCode = 1;
}

const dir = mkdtempSync(join(tmpdir(), 'ptbench-'));
try {
  await bench('SQLite', { kind: 'sqlite', file: join(dir, 'bench.db') });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const why = pgUnavailable();
if (why) console.log(`PostgreSQL: skipped (${why})`);
else {
  const pg = await startPg();
  try {
    await bench('PostgreSQL', { kind: 'postgres', url: pg.url });
  } finally {
    pg.stop();
  }
}
