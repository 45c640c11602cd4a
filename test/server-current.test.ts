import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { buildApp } from '../src/server/app.js';
import { type Db, openDb, type Tables } from '../src/server/db.js';
import { migrationProvider } from '../src/server/migrations.js';
import { parseSite } from '../src/server/sites.js';
import { formsOf, Store } from '../src/server/store.js';
import { ROOT } from './helpers.js';
import { type PgCluster, pgUnavailable, startPg } from './pg-cluster.js';

// A site's current state counts only the latest version's flows, each with a verdict measured on
// its current addresses and ports: version 2 drops host flr and moves pve to 127.0.0.9.
const V1 = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8').replace(
  'site: lab-loopback',
  'site: lab-current',
);
const V2 = V1.replace(/^ {2}flr: .*\n/m, '').replace('address: 127.0.0.2', 'address: 127.0.0.9');
const SELF = 'veeam-proxmox vbr/backup-server vbr/backup-server tcp veeam-platform';
const PVE_HTTPS = 'veeam-proxmox vbr/backup-server pve/proxmox-server tcp https';
const PVE_SSH = 'veeam-proxmox vbr/backup-server pve/proxmox-server tcp ssh';
const FLR_SSH = 'veeam-proxmox vbr/backup-server flr/flr-appliance tcp ssh';

const T0 = Date.parse('2026-01-01T00:00:00Z');

interface FlowStatus {
  flow: { id: string };
  verdict: string | null;
  checkedAt: string | null;
  latest: unknown;
  history: unknown[];
}

type Inject = Awaited<ReturnType<FastifyInstance['inject']>>;

interface Opened {
  db: Db;
  close: () => Promise<void>;
}

/** A store: `open` gives a fresh, migrated one; `raw` an empty database not migrated yet. */
interface Backend {
  open: () => Promise<Opened>;
  raw: () => Promise<{ kysely: Kysely<Tables>; reopen: () => Promise<Opened> }>;
}

function suite(name: string, backend: () => Backend, skip?: string) {
  describe(`site status counts only the latest version's flows, on ${name}`, { skip: skip ?? false }, () => {
    let app: FastifyInstance;
    let opened: Opened;
    let admin = '';
    let agent = '';
    const call = (method: string, url: string, token: string, body?: unknown): Promise<Inject> =>
      app.inject({
        method: method as 'GET',
        url,
        headers: { authorization: `Bearer ${token}` },
        ...(body !== undefined ? { payload: body as object } : {}),
      });
    const post = async (key: string, version: number, at: number, verdicts: Record<string, string>) => {
      const r = await call('POST', '/api/agent/results', agent, {
        key,
        version,
        startedAt: new Date(at).toISOString(),
        isolated: false,
        results: Object.entries(verdicts).map(([flowId, verdict]) => ({ flowId, verdict, detail: {} })),
      });
      assert.equal(r.statusCode, 200, r.body);
    };
    const site = async () =>
      (await call('GET', '/api/sites', admin))
        .json()
        .sites.find((s: { name: string }) => s.name === 'lab-current');
    const metric = async () =>
      (await call('GET', '/metrics', admin)).body
        .split('\n')
        .filter((l) => l.startsWith('portolan_flows{site="lab-current"'))
        .sort();
    const status = async (): Promise<Map<string, FlowStatus>> =>
      new Map(
        ((await call('GET', '/api/sites/lab-current/status', admin)).json().flows as FlowStatus[]).map(
          (f) => [f.flow.id, f],
        ),
      );

    before(async () => {
      opened = await backend().open();
      const store = new Store(opened.db);
      admin = await store.createToken('admin');
      app = await buildApp({ store, generatorVersion: '0.0.0-test', bodyLimit: 256 * 1024 });
      assert.equal((await call('POST', '/api/sites', admin, { yaml: V1 })).statusCode, 201);
      const enrol = await call('POST', '/api/agents', admin, { site: 'lab-current', host: 'vbr' });
      agent = enrol.json().token;
    });
    after(async () => {
      await app?.close();
      await opened?.close();
    });

    test("version 2 without flr: the site list counts only version 2's flows", async () => {
      await post('run-current-v1-0001', 1, T0, {
        [SELF]: 'closed',
        [PVE_HTTPS]: 'closed',
        [PVE_SSH]: 'closed',
        [FLR_SSH]: 'closed',
      });
      assert.deepEqual((await site()).verdicts, { closed: 4 });
      assert.deepEqual(await metric(), [
        'portolan_flows{site="lab-current",verdict="closed"} 4',
        'portolan_flows{site="lab-current",verdict="unchecked"} 0',
      ]);
      const r = await call('POST', '/api/sites', admin, { yaml: V2 });
      assert.equal(r.statusCode, 201, r.body);
      assert.equal(r.json().flows, 3);
      const s = await site();
      assert.equal(s.flows, 3);
      // flr's flow is gone; pve's two flows go to a new address: only vbr's own flow keeps its verdict.
      assert.deepEqual(s.verdicts, { closed: 1 });
    });

    test("/metrics counts version 2's flows: one closed, two unchecked", async () => {
      assert.deepEqual(await metric(), [
        'portolan_flows{site="lab-current",verdict="closed"} 1',
        'portolan_flows{site="lab-current",verdict="unchecked"} 2',
      ]);
    });

    test('a flow whose address changed shows no verdict until checked at its new address', async () => {
      const st = await status();
      assert.deepEqual([...st.keys()].sort(), [PVE_HTTPS, PVE_SSH, SELF].sort());
      assert.equal(st.get(SELF)?.verdict, 'closed');
      for (const id of [PVE_HTTPS, PVE_SSH]) {
        assert.equal(st.get(id)?.verdict, null, `${id} was measured at 127.0.0.2 only`);
        assert.equal(st.get(id)?.checkedAt, null);
        assert.equal(st.get(id)?.latest, null);
      }
      // The old measurement stays in the flow's own history, with its version.
      const h = (
        await call('GET', `/api/sites/lab-current/flows/${encodeURIComponent(PVE_HTTPS)}/history`, admin)
      ).json();
      assert.deepEqual(
        h.history.map((x: { verdict: string; version: number }) => [x.verdict, x.version]),
        [['closed', 1]],
      );
      // Checked at 127.0.0.9: now it counts.
      await post('run-current-v2-0001', 2, T0 + 60_000, { [PVE_HTTPS]: 'ok' });
      assert.deepEqual((await site()).verdicts, { closed: 1, ok: 1 });
      assert.equal((await status()).get(PVE_HTTPS)?.verdict, 'ok');
      // A later result for version 1 (an agent's spooled run) tells about 127.0.0.2, not the current flow.
      await post('run-current-v1-0002', 1, T0 + 120_000, { [PVE_HTTPS]: 'blocked' });
      assert.deepEqual((await site()).verdicts, { closed: 1, ok: 1 });
      assert.equal((await status()).get(PVE_HTTPS)?.verdict, 'ok');
      // Moving pve back to 127.0.0.2 makes that form current again, with its own latest verdict.
      assert.equal((await call('POST', '/api/sites', admin, { yaml: V1 })).statusCode, 201);
      assert.deepEqual((await site()).verdicts, { blocked: 1, closed: 3 });
    });

    test("a change request's row is proven by checks of the flow as its target version has it", async () => {
      // Requested: pve's flows at 127.0.0.9 (version 2). The latest version has pve at 127.0.0.2 again.
      const latest = (await call('POST', '/api/sites', admin, { yaml: V1 })).json().version as number;
      assert.ok(latest > 2);
      const cr = await call('POST', '/api/sites/lab-current/change-requests', admin, { from: 1, to: 2 });
      assert.equal(cr.statusCode, 201, cr.body);
      type Row = { action: string; flowIds: string[]; state: string };
      const rows = async () =>
        (
          (await call('GET', `/api/sites/lab-current/change-requests/${cr.json().id}`, admin)).json()
            .rows as Row[]
        ).filter((r) => r.action === 'allow');
      assert.deepEqual((await rows()).flatMap((r) => r.flowIds).sort(), [PVE_HTTPS, PVE_SSH].sort());
      // Both pass at 127.0.0.2: that says nothing about the rules requested for 127.0.0.9.
      await post('run-current-v3-0001', latest, Date.now() + 1000, { [PVE_HTTPS]: 'ok', [PVE_SSH]: 'ok' });
      for (const r of await rows()) assert.equal(r.state, 'requested', JSON.stringify(r));
      await post('run-current-v2-0002', 2, Date.now() + 2000, { [PVE_HTTPS]: 'ok', [PVE_SSH]: 'ok' });
      for (const r of await rows()) assert.equal(r.state, 'working', JSON.stringify(r));
    });

    test("a site's status needs no earlier version to parse: one that today's catalogs refuse is history", async () => {
      // Version 1 as stored by a release whose catalog had a role this one has not (a catalog
      // changed since), with results of a run on it; version 2 is uploaded now.
      const old = V1.replace('lab-current', 'lab-old').replace('flr-appliance]', 'flr-appliance-gone]');
      assert.notEqual(old, V1);
      await opened.db
        .insertInto('site_versions')
        .values({
          site: 'lab-old',
          version: 1,
          yaml: old,
          plan: '{"flows":[]}',
          flows: 4,
          created_at: new Date(T0).toISOString(),
        })
        .execute();
      await opened.db
        .insertInto('runs')
        .values({
          key: 'old-run',
          agent_id: 'a',
          site: 'lab-old',
          version: 1,
          started_at: new Date(T0).toISOString(),
          received_at: new Date(T0).toISOString(),
          isolated: 0,
          results: 1,
        })
        .execute();
      await opened.db
        .insertInto('results')
        .values({
          run_key: 'old-run',
          site: 'lab-old',
          flow_id: SELF,
          verdict: 'ok',
          failed: 0,
          detail: '{}',
          checked_at: new Date(T0).toISOString(),
          form: '-',
        })
        .execute();
      assert.equal(
        (await call('POST', '/api/sites', admin, { yaml: V2.replace('lab-current', 'lab-old') })).statusCode,
        201,
      );
      const r = await call('GET', '/api/sites/lab-old/status', admin);
      assert.equal(r.statusCode, 200, r.body);
      const self = (r.json().flows as FlowStatus[]).find((f) => f.flow.id === SELF);
      assert.deepEqual(self?.history, [], "a result of an unknown form is not the current flow's history");
      const h = await call('GET', `/api/sites/lab-old/flows/${encodeURIComponent(SELF)}/history`, admin);
      assert.equal(h.json().history.length, 1, "it stays in the flow's history");
    });
  });

  describe(`migration 003 gives existing verdicts their form, on ${name}`, { skip: skip ?? false }, () => {
    test('a store from before migration 003 keeps the verdicts of current flows only', async () => {
      const { kysely, reopen } = await backend().raw();
      const m = await new Migrator({ db: kysely, provider: migrationProvider }).migrateTo(
        '002_change_row_action',
      );
      assert.equal(m.error, undefined);
      const old = kysely as unknown as Kysely<
        Omit<Tables, 'flow_status' | 'results'> & {
          flow_status: Omit<Tables['flow_status'], 'form'>;
          results: Omit<Tables['results'], 'form'>;
        }
      >;
      const at = (min: number) => new Date(T0 + min * 60_000).toISOString();
      for (const [version, yaml] of [
        [1, V1],
        [2, V2],
      ] as const) {
        const plan = parseSite(yaml).plan;
        await old
          .insertInto('site_versions')
          .values({
            site: 'lab-current',
            version,
            yaml,
            plan: JSON.stringify(plan),
            flows: plan.flows.length,
            created_at: at(version * 10),
          })
          .execute();
      }
      await old
        .insertInto('runs')
        .values({
          key: 'r1',
          agent_id: 'a',
          site: 'lab-current',
          version: 1,
          started_at: at(11),
          received_at: at(11),
          isolated: 0,
          results: 4,
        })
        .execute();
      const ids = [SELF, PVE_HTTPS, PVE_SSH, FLR_SSH];
      await old
        .insertInto('results')
        .values(
          ids.map((flow_id) => ({
            run_key: 'r1',
            site: 'lab-current',
            flow_id,
            verdict: 'closed',
            failed: 1,
            detail: '{}',
            checked_at: at(11),
          })),
        )
        .execute();
      // A version 1 run after version 2 was stored: its results say which version it measured.
      await old
        .insertInto('runs')
        .values({
          key: 'r2',
          agent_id: 'a',
          site: 'lab-current',
          version: 1,
          started_at: at(21),
          received_at: at(21),
          isolated: 0,
          results: 1,
        })
        .execute();
      await old
        .insertInto('results')
        .values({
          run_key: 'r2',
          site: 'lab-current',
          flow_id: PVE_SSH,
          verdict: 'ok',
          failed: 0,
          detail: '{}',
          checked_at: at(21),
        })
        .execute();
      await old
        .insertInto('flow_status')
        .values([
          ...[SELF, PVE_HTTPS, FLR_SSH].map((flow_id) => ({
            site: 'lab-current',
            flow_id,
            verdict: 'closed',
            failed: 1,
            checked_at: at(11),
          })),
          { site: 'lab-current', flow_id: PVE_SSH, verdict: 'ok', failed: 0, checked_at: at(21) },
        ])
        .execute();
      // A start that stopped half-way through 003 (SQLite migrates outside a transaction) left a table behind.
      await kysely.schema
        .createTable('version_flows')
        .addColumn('site', 'text')
        .addColumn('flow_id', 'text')
        .execute();
      await kysely.destroy();
      const o = await reopen();
      try {
        const store = new Store(o.db);
        const s = (await store.listSites()).find((x) => x.name === 'lab-current');
        assert.deepEqual(s, {
          name: 'lab-current',
          version: 2,
          flows: 3,
          updatedAt: at(20),
          verdicts: { closed: 1 },
          unchecked: 2,
          checkedAt: { oldest: at(11), newest: at(11) },
        });
        assert.deepEqual(
          (await store.status('lab-current')).map((r) => [r.flow_id, r.verdict]),
          [[SELF, 'closed']],
        );
        assert.deepEqual(
          (await store.status('lab-current', 1)).map((r) => [r.flow_id, r.verdict]).sort(),
          [
            [FLR_SSH, 'closed'],
            [PVE_HTTPS, 'closed'],
            [PVE_SSH, 'ok'],
            [SELF, 'closed'],
          ].sort(),
        );
        assert.equal(
          (await o.db.selectFrom('version_flows').select('flow_id').where('version', '=', 2).execute())
            .length,
          3,
        );
        // Migration 005: each result has its flow's form in its run's version (both runs: version 1).
        const v1 = formsOf(parseSite(V1));
        assert.deepEqual(
          (await o.db.selectFrom('results').select(['run_key', 'flow_id', 'form']).execute())
            .map((r) => [r.run_key, r.flow_id, r.form])
            .sort(),
          [...ids.map((id) => ['r1', id, v1.get(id)]), ['r2', PVE_SSH, v1.get(PVE_SSH)]].sort(),
        );
      } finally {
        await o.close();
      }
    });
  });
}

suite('SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptcur-'));
  let n = 0;
  const file = () => join(dir, `store-${++n}.db`);
  const opened = (db: Db, last: boolean) => ({
    db,
    close: async () => {
      await db.destroy();
      if (last) rmSync(dir, { recursive: true, force: true });
    },
  });
  return {
    open: async () => opened(await openDb({ kind: 'sqlite', file: file() }), false),
    raw: async () => {
      const f = file();
      const kysely = new Kysely<Tables>({ dialect: new SqliteDialect({ database: new Database(f) }) });
      return { kysely, reopen: async () => opened(await openDb({ kind: 'sqlite', file: f }), true) };
    },
  };
});

let cluster: PgCluster | undefined;
let databases = 0;
suite(
  'PostgreSQL',
  () => {
    const fresh = async () => {
      cluster ??= await startPg();
      const name = `cur${++databases}`;
      const admin = new pg.Client({ connectionString: cluster.url });
      await admin.connect();
      await admin.query(`create database ${name}`);
      await admin.end();
      return cluster.url.replace(/\/postgres$/, `/${name}`);
    };
    return {
      open: async () => {
        const db = await openDb({ kind: 'postgres', url: await fresh() });
        return { db, close: () => db.destroy() };
      },
      raw: async () => {
        const url = await fresh();
        const kysely = new Kysely<Tables>({
          dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
        });
        return {
          kysely,
          reopen: async () => {
            const db = await openDb({ kind: 'postgres', url });
            return { db, close: () => db.destroy() };
          },
        };
      },
    };
  },
  pgUnavailable(),
);

after(() => cluster?.stop());
