import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { Verdict } from '../src/probe/verdict.js';
import { type Db, openDb } from '../src/server/db.js';
import { type PostedRun, Store } from '../src/server/store.js';
import { ROOT, startServe } from './helpers.js';
import { type PgCluster, pgUnavailable, startPg } from './pg-cluster.js';

// Housekeeping by time (retention, stale agents) on an injected clock, and several `serve`
// processes sharing one PostgreSQL database.

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
const LOOPBACK_V2 = `${LOOPBACK.trimEnd()}\n  wrk: { address: 127.0.0.4, roles: [veeam-proxmox:worker] }\n`;
const SSH = 'veeam-proxmox vbr/backup-server flr/flr-appliance tcp ssh';
const T0 = Date.parse('2026-01-01T00:00:00.000Z');

const dirs: string[] = [];
const children: ChildProcess[] = [];
let pg: PgCluster | undefined;
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  pg?.stop();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ptfleet-'));
  dirs.push(d);
  return d;
}

async function cluster(): Promise<PgCluster> {
  pg ??= await startPg();
  return pg;
}

/** A fresh database in the shared cluster, so tests do not see each other's rows. */
async function pgDatabase(name: string): Promise<string> {
  const c = await cluster();
  const admin = await openDb({ kind: 'postgres', url: c.url });
  try {
    await sql.raw(`create database ${name}`).execute(admin);
  } finally {
    await admin.destroy();
  }
  return c.url.replace(/\/postgres$/, `/${name}`);
}

/** `portolan serve` as its own process, on 127.0.0.1 at a port it binds itself; resolves once it listens. */
async function serve(db: string, tokenFile: string, extra: string[] = []) {
  const s = await startServe('127.0.0.1:0', ['--db', db, '--token-file', tokenFile, ...extra]);
  children.push(s.child);
  return s;
}

async function call(base: string, token: string, method: string, path: string, body?: unknown) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> & { [k: string]: unknown } };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

const run = (key: string, verdict: Verdict, at: number): PostedRun => ({
  key,
  version: 1,
  startedAt: new Date(at).toISOString(),
  isolated: false,
  results: [{ flowId: SSH, verdict, detail: { reason: `seen ${verdict}` } }],
});

function housekeeping(
  name: string,
  open: () => Promise<{ db: Db; close: () => Promise<void> }>,
  skip?: string,
) {
  describe(`housekeeping by time on ${name}`, { skip: skip ?? false, timeout: 300_000 }, () => {
    let db: Db;
    let close: () => Promise<void> = async () => {};
    let t = T0;
    let store: Store;
    let agentId: string;
    before(async () => {
      const o = await open();
      db = o.db;
      close = o.close;
      store = new Store(db, [], { clock: () => t });
      await store.putSite(LOOPBACK);
      agentId = (await store.enrol('lab-loopback', 'vbr', undefined)).id;
    });
    after(() => close());

    test('retention: runs, their results and events older than the period are removed; newer ones stay', async () => {
      // Three runs a minute apart; the flow turns failing at the second, so each run after the first is an event.
      t = T0;
      await store.ingest(agentId, run('ret-run-0000000000a', 'ok', t));
      t = T0 + 60_000;
      await store.ingest(agentId, run('ret-run-0000000000b', 'blocked', t));
      t = T0 + 120_000;
      await store.ingest(agentId, run('ret-run-0000000000c', 'ok', t));
      const before = await store.events('lab-loopback', 100);
      assert.deepEqual(before.map((e) => e.kind).sort(), [
        'agent-enrolled',
        'flow-failing',
        'flow-ok',
        'site-version',
      ]);
      // A retention of 90 s at T0+150 s: the cutoff is T0+60 s; only what is older goes.
      t = T0 + 150_000;
      await store.prune(90_000);
      const runs = await db.selectFrom('runs').select('key').orderBy('key').execute();
      assert.deepEqual(
        runs.map((r) => r.key),
        ['ret-run-0000000000b', 'ret-run-0000000000c'],
      );
      const results = await db.selectFrom('results').select('run_key').orderBy('run_key').execute();
      assert.deepEqual(
        results.map((r) => r.run_key),
        ['ret-run-0000000000b', 'ret-run-0000000000c'],
      );
      assert.deepEqual(
        (await store.history('lab-loopback', SSH, 10)).map((h) => h.verdict),
        ['ok', 'blocked'],
      );
      const kept = await store.events('lab-loopback', 100);
      assert.deepEqual(kept.map((e) => e.kind).sort(), ['flow-failing', 'flow-ok']);
      // The flow's latest verdict is not history: it stays.
      assert.equal((await store.status('lab-loopback')).find((s) => s.flow_id === SSH)?.verdict, 'ok');
      // A day later everything but the latest verdict has aged out.
      t = T0 + 86_400_000;
      await store.prune(90_000);
      assert.equal((await db.selectFrom('runs').select('key').execute()).length, 0);
      assert.equal((await db.selectFrom('results').select('run_key').execute()).length, 0);
      assert.equal((await store.events(undefined, 100)).length, 0);
    });

    test('stale agents: marked once when heartbeats stop for the period, back on the next heartbeat', async () => {
      t = T0 + 2 * 86_400_000;
      assert.deepEqual(await store.heartbeat(agentId), []);
      t += 14 * 60_000;
      assert.deepEqual(await store.markStale(15 * 60_000), [], 'not stale before the period');
      t += 2 * 60_000;
      const stale = await store.markStale(15 * 60_000);
      assert.deepEqual(
        stale.map((e) => e.kind),
        ['agent-stale'],
      );
      assert.equal((await store.listAgents()).find((a) => a.id === agentId)?.stale, true);
      assert.deepEqual(await store.markStale(15 * 60_000), [], 'one event, not one per tick');
      const back = await store.heartbeat(agentId);
      assert.deepEqual(
        back.map((e) => e.kind),
        ['agent-back'],
      );
      assert.equal((await store.listAgents()).find((a) => a.id === agentId)?.stale, false);
    });
  });
}

housekeeping('SQLite', async () => {
  const dir = tempDir();
  const db = await openDb({ kind: 'sqlite', file: join(dir, 'store.db') });
  return { db, close: () => db.destroy() };
});
housekeeping(
  'PostgreSQL',
  async () => {
    const db = await openDb({ kind: 'postgres', url: await pgDatabase(`ret${process.pid}`) });
    return { db, close: () => db.destroy() };
  },
  pgUnavailable(),
);

test('serve --retention prunes at start: a store with year-old runs loses them, keeps the new', {
  timeout: 120_000,
}, async () => {
  const dir = tempDir();
  const file = join(dir, 'store.db');
  const db = await openDb({ kind: 'sqlite', file });
  const old = Date.now() - 366 * 86_400_000;
  const oldStore = new Store(db, [], { clock: () => old });
  await oldStore.putSite(LOOPBACK);
  const { id } = await oldStore.enrol('lab-loopback', 'vbr', undefined);
  await oldStore.ingest(id, run('cli-run-old-0000001', 'ok', old));
  await new Store(db).ingest(id, run('cli-run-new-0000002', 'ok', Date.now()));
  await db.destroy();
  const s = await serve(file, join(dir, 'admin'), ['--retention', '30d']);
  try {
    const check = await openDb({ kind: 'sqlite', file });
    try {
      let keys: string[] = [];
      for (let i = 0; i < 600; i++) {
        keys = (await check.selectFrom('runs').select('key').execute()).map((r) => r.key);
        if (keys.length === 1) break;
        await sleep(100);
      }
      assert.deepEqual(keys, ['cli-run-new-0000002']);
    } finally {
      await check.destroy();
    }
  } finally {
    await stop(s.child);
  }
});

describe('two serve processes on one PostgreSQL database', {
  skip: pgUnavailable() ?? false,
  timeout: 600_000,
}, () => {
  test('enrol on one, post on the other; both show the same sites, events, change rows and stale marks', async () => {
    const url = await pgDatabase(`two${process.pid}`);
    const dir = tempDir();
    const a = await serve(url, join(dir, 'admin-a'));
    const b = await serve(url, join(dir, 'admin-b'));
    try {
      // One admin token for the database: made by the first process, honoured by the second.
      const admin = readFileSync(join(dir, 'admin-a'), 'utf8').trim();
      assert.match(b.log(), /admin token: made earlier/);
      const site = await call(a.base, admin, 'POST', '/api/sites', { yaml: LOOPBACK });
      assert.equal(site.status, 201, JSON.stringify(site.json));
      // The same new version uploaded to both at once: stored once, as version 2.
      const both = await Promise.all(
        [a, b].map((s) => call(s.base, admin, 'POST', '/api/sites', { yaml: LOOPBACK_V2 })),
      );
      assert.deepEqual(
        both.map((r) => r.json.version).sort(),
        [2, 2],
        JSON.stringify(both.map((r) => r.json)),
      );
      assert.deepEqual(both.map((r) => r.status).sort(), [200, 201]);
      for (const s of [a, b]) {
        const v = await call(s.base, admin, 'GET', '/api/sites/lab-loopback');
        assert.deepEqual(
          (v.json.versions as { version: number }[]).map((x) => x.version),
          [1, 2],
        );
      }
      const cr = await call(b.base, admin, 'POST', '/api/sites/lab-loopback/change-requests', {
        from: 1,
        to: 2,
      });
      assert.equal(cr.status, 201, JSON.stringify(cr.json));

      const enrol = await call(a.base, admin, 'POST', '/api/agents', { site: 'lab-loopback', host: 'vbr' });
      assert.equal(enrol.status, 201);
      const token = enrol.json.token as string;
      const plan = await call(b.base, token, 'GET', '/api/agent/plan');
      assert.equal(plan.status, 200, JSON.stringify(plan.json));
      const flows = plan.json.flowIds as string[];
      const post = (key: string, verdict: string, s: number) => ({
        key,
        version: 2,
        startedAt: new Date(Date.now() + s * 1000).toISOString(),
        isolated: false,
        results: flows.map((flowId) => ({ flowId, verdict, detail: { reason: `seen ${verdict}` } })),
      });
      const ok = await call(
        b.base,
        token,
        'POST',
        '/api/agent/results',
        post('two-run-ok-00000001', 'ok', 1),
      );
      assert.deepEqual(ok.json, { key: 'two-run-ok-00000001', stored: true, duplicate: false });
      // One run sent to both processes at once (a retry through another node): stored once.
      const twice = await Promise.all(
        [a, b].map((s) =>
          call(s.base, token, 'POST', '/api/agent/results', post('two-run-bad-0000002', 'filtered', 2)),
        ),
      );
      assert.deepEqual(twice.map((r) => r.json.stored).sort(), [false, true]);

      const seen = await Promise.all(
        [a, b].map(async (s) => ({
          events: (await call(s.base, admin, 'GET', '/api/events?site=lab-loopback')).json.events as {
            id: string;
            kind: string;
          }[],
          crs: (await call(s.base, admin, 'GET', '/api/sites/lab-loopback/change-requests')).json
            .changeRequests as { rows: { rule: string; state: string; flowIds: string[] }[] }[],
          status: (await call(s.base, admin, 'GET', '/api/sites/lab-loopback/status')).json.flows as {
            flow: { id: string };
            verdict: string | null;
            history: unknown[];
          }[],
        })),
      );
      const [fromA, fromB] = seen;
      assert.ok(fromA && fromB);
      assert.deepEqual(
        fromA.events.map((e) => e.id),
        fromB.events.map((e) => e.id),
      );
      const kinds = fromA.events.map((e) => e.kind);
      for (const k of ['site-version', 'change-requested', 'agent-enrolled', 'flow-failing', 'change-broken'])
        assert.ok(kinds.includes(k), `${k} in ${kinds.join(',')}`);
      assert.equal(
        kinds.filter((k) => k === 'flow-failing').length,
        flows.length,
        'one event per flow, once',
      );
      assert.deepEqual(fromA.crs, fromB.crs);
      const mine = fromA.crs[0]?.rows.filter((r) => r.flowIds.every((id) => flows.includes(id))) ?? [];
      assert.ok(mine.length > 0 && mine.every((r) => r.state === 'broken'), JSON.stringify(mine));
      for (const s of [fromA, fromB]) {
        const row = s.status.find((f) => f.flow.id === flows[0]);
        assert.equal(row?.verdict, 'filtered');
        assert.equal(row?.history.length, 2, 'the run sent twice is one result');
      }
      const stored = await openDb({ kind: 'postgres', url });
      try {
        const runs = await stored.selectFrom('runs').select('key').orderBy('key').execute();
        assert.deepEqual(
          runs.map((r) => r.key),
          ['two-run-bad-0000002', 'two-run-ok-00000001'],
        );
      } finally {
        await stored.destroy();
      }
    } finally {
      await Promise.all([stop(a.child), stop(b.child)]);
    }
  });

  test('two processes marking the same agent stale at once: one event', async () => {
    const url = await pgDatabase(`stl${process.pid}`);
    let t = T0;
    const dbs = [await openDb({ kind: 'postgres', url }), await openDb({ kind: 'postgres', url })];
    try {
      const [one, two] = dbs.map((d) => new Store(d, [], { clock: () => t })) as [Store, Store];
      await one.putSite(LOOPBACK);
      const agents = [];
      for (let i = 0; i < 10; i++) agents.push((await one.enrol('lab-loopback', 'vbr', `s${i}`)).id);
      for (const id of agents) await two.heartbeat(id);
      t += 20 * 60_000;
      const events = (await Promise.all([one.markStale(15 * 60_000), two.markStale(15 * 60_000)])).flat();
      assert.equal(events.length, agents.length, events.map((e) => e.subject).join(','));
      assert.equal(new Set(events.map((e) => e.subject)).size, agents.length);
      const stored = (await one.events('lab-loopback', 100)).filter((e) => e.kind === 'agent-stale');
      assert.equal(stored.length, agents.length);
    } finally {
      for (const d of dbs) await d.destroy();
    }
  });
});
