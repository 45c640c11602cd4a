import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { Agent, type SpooledRun } from '../src/agent/agent.js';
import { buildApp } from '../src/server/app.js';
import { type Db, openDb } from '../src/server/db.js';
import { Store } from '../src/server/store.js';
import { ROOT } from './helpers.js';
import { type PgCluster, pgUnavailable, startPg } from './pg-cluster.js';

// What the API says about agents must hold when nothing is known: an agent that never reported is
// not fresh, and a run the server cannot store for a fault of its own stays with the agent, which
// sends it again, while the agent list and the events say why its results are missing.

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
const SSH = 'veeam-proxmox vbr/backup-server flr/flr-appliance tcp ssh';
const T0 = Date.parse('2026-03-01T00:00:00.000Z');

const dirs: string[] = [];
let pg: PgCluster | undefined;
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  pg?.stop();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ptagst-'));
  dirs.push(d);
  return d;
}

function suite(name: string, open: () => Promise<{ db: Db; close: () => Promise<void> }>, skip?: string) {
  describe(`agent status on ${name}`, { skip: skip ?? false, timeout: 300_000 }, () => {
    let t = T0;
    let store: Store;
    let app: FastifyInstance;
    let db: Db;
    let close: () => Promise<void> = async () => {};
    let admin: string;
    let base: string;
    const call = async (method: string, path: string, token: string, body?: unknown) => {
      const r = await app.inject({
        method: method as 'GET',
        url: path,
        headers: { authorization: `Bearer ${token}` },
        ...(body !== undefined ? { payload: body as object } : {}),
      });
      return { status: r.statusCode, json: () => r.json(), body: r.body };
    };
    before(async () => {
      const o = await open();
      db = o.db;
      close = o.close;
      store = new Store(db, [], { clock: () => t });
      admin = await store.createToken('admin');
      app = await buildApp({ store, generatorVersion: '0.0.0-test' });
      await app.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      assert.equal((await call('POST', '/api/sites', admin, { yaml: LOOPBACK })).status, 201);
    });
    after(async () => {
      await app?.close();
      await close();
    });

    test('an agent that never reported is not fresh: the API, /metrics and housekeeping say so', async () => {
      const made = await call('POST', '/api/agents', admin, {
        site: 'lab-loopback',
        host: 'vbr',
        name: 'silent-one',
      });
      assert.equal(made.status, 201, made.body);
      const id = made.json().id as string;
      const listed = async () =>
        ((await call('GET', '/api/agents', admin)).json().agents as Record<string, unknown>[]).find(
          (a) => a.id === id,
        );
      const a = await listed();
      assert.equal(a?.stale, true, 'never reported: not fresh');
      assert.equal(a?.state, 'never-reported');
      assert.equal(a?.lastSeen, null);
      assert.equal(a?.lastRunAt, null);
      const metrics = (await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${admin}` } }))
        .body;
      assert.match(metrics, /portolan_agent_stale\{site="lab-loopback",host="vbr",agent="silent-one"\} 1\n/);
      assert.doesNotMatch(metrics, /portolan_agent_last_seen_seconds\{[^}]*agent="silent-one"/);
      // Enrolled longer ago than --stale-after and never heard from: one event, once.
      t += 14 * 60_000;
      assert.deepEqual(await store.markStale(15 * 60_000), []);
      t += 2 * 60_000;
      const stale = await store.markStale(15 * 60_000);
      assert.deepEqual(
        stale.map((e) => [e.kind, e.message]),
        [
          [
            'agent-stale',
            `agent silent-one was enrolled at ${new Date(T0).toISOString()} and has never reported`,
          ],
        ],
      );
      assert.deepEqual(await store.markStale(15 * 60_000), []);
      // Its first heartbeat: reporting, and said as a first report, not a return.
      const token = (made.json() as { token: string }).token;
      const hb = await call('POST', '/api/agent/heartbeat', token, {});
      assert.equal(hb.status, 200, hb.body);
      const back = (await store.events('lab-loopback', 50)).filter((e) => e.kind === 'agent-back');
      assert.deepEqual(
        back.map((e) => e.message),
        ['agent silent-one reports for the first time'],
      );
      const now = await listed();
      assert.equal(now?.state, 'reporting');
      assert.equal(now?.stale, false);
      assert.equal(now?.lastRunAt, null, 'a heartbeat is not a stored result');
      assert.equal((await call('DELETE', `/api/agents/${id}`, admin)).status, 204);
    });

    test('a site no agent checked counts every flow unchecked, never an empty tally', async () => {
      const sites = (await call('GET', '/api/sites', admin)).json().sites as Record<string, unknown>[];
      const s = sites.find((x) => x.name === 'lab-loopback');
      assert.deepEqual(s?.verdicts, {});
      assert.equal(s?.unchecked, 4);
      assert.equal(s?.checkedAt, null, 'never checked: no time that could pass for a recent one');
    });

    test("two agents on one host that disagree: the flow shows the failing verdict, with each agent's, and does not flip with each post", async () => {
      const a = (
        await call('POST', '/api/agents', admin, { site: 'lab-loopback', host: 'vbr', name: 'vbr-a' })
      ).json();
      const b = (
        await call('POST', '/api/agents', admin, { site: 'lab-loopback', host: 'vbr', name: 'vbr-b' })
      ).json();
      const post = async (token: string, key: string, verdict: string) => {
        t += 1000;
        const r = await call('POST', '/api/agent/results', token, {
          key: key.padEnd(16, '0'),
          version: 1,
          startedAt: new Date(t).toISOString(),
          isolated: false,
          results: [{ flowId: SSH, verdict, detail: { reason: `${verdict} from ${key}` } }],
        });
        assert.equal(r.status, 200, r.body);
      };
      const flow = async () =>
        (
          (await call('GET', '/api/sites/lab-loopback/status', admin)).json().flows as Record<
            string,
            unknown
          >[]
        ).find((f) => (f.flow as { id: string }).id === SSH) as {
          verdict: string;
          failed: boolean;
          agents: { name: string; verdict: string }[];
          latest: { detail: { reason: string } };
        };
      const kinds = async () =>
        (await store.events('lab-loopback', 200)).filter((e) => e.subject === SSH).map((e) => e.kind);
      await post(a.token, 'disagree-a-1', 'ok');
      await post(b.token, 'disagree-b-1', 'filtered');
      await post(a.token, 'disagree-a-2', 'ok');
      const f = await flow();
      assert.equal(f.verdict, 'filtered', 'vbr-b still sees it filtered');
      assert.equal(f.failed, true);
      assert.equal(
        f.latest.detail.reason,
        'filtered from disagree-b-1',
        'the evidence behind the verdict shown',
      );
      assert.deepEqual(
        f.agents.map((x) => [x.name, x.verdict]),
        [
          ['vbr-a', 'ok'],
          ['vbr-b', 'filtered'],
        ],
      );
      const site = ((await call('GET', '/api/sites', admin)).json().sites as Record<string, unknown>[]).find(
        (x) => x.name === 'lab-loopback',
      );
      assert.deepEqual(site?.verdicts, { filtered: 1 });
      assert.deepEqual(await kinds(), ['flow-failing'], 'one event, not one per post');
      // vbr-b sees it pass too: ok, one event back.
      await post(b.token, 'disagree-b-2', 'ok');
      assert.equal((await flow()).verdict, 'ok');
      assert.deepEqual(await kinds(), ['flow-ok', 'flow-failing']);
      // A removed agent's verdict no longer counts.
      await post(b.token, 'disagree-b-3', 'filtered');
      assert.equal((await flow()).verdict, 'filtered');
      t += 1000;
      assert.equal((await call('DELETE', `/api/agents/${b.id}`, admin)).status, 204);
      // At once, not at the next post: vbr-a's latest (ok) is all that counts now.
      const removed = await flow();
      assert.equal(removed.verdict, 'ok');
      assert.equal(removed.failed, false);
      assert.deepEqual((await kinds()).slice(0, 3), ['flow-ok', 'flow-failing', 'flow-ok']);
      await post(a.token, 'disagree-a-3', 'ok');
      const after = await flow();
      assert.equal(after.verdict, 'ok');
      assert.deepEqual(
        after.agents.map((x) => x.name),
        ['vbr-a'],
      );
      assert.equal((await call('DELETE', `/api/agents/${a.id}`, admin)).status, 204);
    });

    test('a change row is not "working" on verdicts that prove no path (skipped, open|filtered)', async () => {
      const v1 = LOOPBACK.replace('site: lab-loopback', 'site: lab-cr');
      const v2 = `${v1.trimEnd()}\n  wrk: { address: 127.0.0.4, roles: [veeam-proxmox:worker] }\n`;
      assert.equal((await call('POST', '/api/sites', admin, { yaml: v1 })).status, 201);
      assert.equal((await call('POST', '/api/sites', admin, { yaml: v2 })).status, 201);
      const cr = await call('POST', '/api/sites/lab-cr/change-requests', admin, { from: 1, to: 2 });
      assert.equal(cr.status, 201, cr.body);
      const rows = cr.json().rows as { rule: string; action: string; flowIds: string[] }[];
      const row = rows.find(
        (r) => r.action === 'allow' && r.flowIds.every((id) => id.startsWith('veeam-proxmox vbr/')),
      );
      assert.ok(row, JSON.stringify(rows));
      const made = (await call('POST', '/api/agents', admin, { site: 'lab-cr', host: 'vbr' })).json();
      const post = async (key: string, verdict: string) => {
        t += 1000;
        const r = await call('POST', '/api/agent/results', made.token, {
          key: key.padEnd(16, '0'),
          version: 2,
          startedAt: new Date(t).toISOString(),
          isolated: false,
          results: row.flowIds.map((flowId) => ({ flowId, verdict, detail: {} })),
        });
        assert.equal(r.status, 200, r.body);
        const now = (await call('GET', `/api/sites/lab-cr/change-requests/${cr.json().id}`, admin)).json();
        return (now.rows as { rule: string; state: string; evidence: string }[]).find(
          (r) => r.rule === row.rule,
        );
      };
      for (const verdict of ['skipped', 'open|filtered']) {
        const r = await post(`cr-unproven-${verdict.replace('|', '-')}`, verdict);
        assert.equal(r?.state, 'requested', `${verdict} proves no path`);
        assert.match(r?.evidence ?? '', /\(proves no path yet\)/);
      }
      assert.equal((await post('cr-proven-ok', 'ok'))?.state, 'working');
      assert.equal((await call('DELETE', `/api/agents/${made.id}`, admin)).status, 204);
    });

    test('an agent whose latest run was not isolated is not shown isolated', async () => {
      const made = (
        await call('POST', '/api/agents', admin, { site: 'lab-loopback', host: 'vbr', name: 'iso' })
      ).json();
      const post = async (key: string, isolated: boolean) => {
        t += 1000;
        const r = await call('POST', '/api/agent/results', made.token, {
          key: key.padEnd(16, '0'),
          version: 1,
          startedAt: new Date(t).toISOString(),
          isolated,
          results: [{ flowId: SSH, verdict: isolated ? 'no-route' : 'closed', detail: {} }],
        });
        assert.equal(r.status, 200, r.body);
        return ((await call('GET', '/api/agents', admin)).json().agents as Record<string, unknown>[]).find(
          (a) => a.id === made.id,
        );
      };
      assert.equal((await post('iso-run-1', true))?.isolatedAt, new Date(t).toISOString());
      assert.equal((await post('iso-run-2', false))?.isolatedAt, null, 'its network came back');
      assert.equal((await call('DELETE', `/api/agents/${made.id}`, admin)).status, 204);
    });

    test("a flow's evidence is shown however many newer results the site's other flows have", async () => {
      const yaml = LOOPBACK.replace('site: lab-loopback', 'site: lab-deep');
      assert.equal((await call('POST', '/api/sites', admin, { yaml })).status, 201);
      const made = (await call('POST', '/api/agents', admin, { site: 'lab-deep', host: 'vbr' })).json();
      t += 1000;
      const r = await call('POST', '/api/agent/results', made.token, {
        key: 'deep-ssh-0000000001',
        version: 1,
        startedAt: new Date(t).toISOString(),
        isolated: false,
        results: [{ flowId: SSH, verdict: 'filtered', detail: { reason: 'the old evidence' } }],
      });
      assert.equal(r.status, 200, r.body);
      // Ten thousand newer results of another flow, as months of checks leave them.
      const other = 'veeam-proxmox vbr/backup-server pve/proxmox-server tcp ssh';
      const form = (
        await db
          .selectFrom('version_flows')
          .select('form')
          .where('site', '=', 'lab-deep')
          .where('flow_id', '=', other)
          .executeTakeFirstOrThrow()
      ).form;
      for (let i = 0; i < 10_200; i += 500) {
        const keys = Array.from({ length: 500 }, (_, j) => `deep-${String(i + j).padStart(12, '0')}`);
        const at = (j: number) => new Date(t + 1000 + i + j).toISOString();
        await db
          .insertInto('runs')
          .values(
            keys.map((key, j) => ({
              key,
              agent_id: made.id,
              site: 'lab-deep',
              version: 1,
              started_at: at(j),
              received_at: at(j),
              isolated: 0,
              results: 1,
            })),
          )
          .execute();
        await db
          .insertInto('results')
          .values(
            keys.map((key, j) => ({
              run_key: key,
              site: 'lab-deep',
              flow_id: other,
              verdict: 'ok',
              failed: 0,
              detail: '{}',
              checked_at: at(j),
              form,
            })),
          )
          .execute();
      }
      const flows = (await call('GET', '/api/sites/lab-deep/status', admin)).json().flows as {
        flow: { id: string };
        verdict: string;
        latest: { verdict: string; detail: { reason: string } } | null;
      }[];
      const ssh = flows.find((f) => f.flow.id === SSH);
      assert.equal(ssh?.verdict, 'filtered');
      assert.equal(ssh?.latest?.detail.reason, 'the old evidence', 'the evidence behind the verdict');
      assert.equal((await call('DELETE', `/api/agents/${made.id}`, admin)).status, 204);
    });

    test('a run refused with 409 ESTORED stays in the spool, is sent again, and is stored once the server loads its version', async () => {
      const made = await call('POST', '/api/agents', admin, { site: 'lab-loopback', host: 'vbr' });
      const { id, token } = made.json() as { id: string; token: string };
      // Version 2 as a server with other catalogs stored it: today's catalogs do not load it.
      const good = LOOPBACK;
      const bad = LOOPBACK.replace('flr-appliance]', 'flr-gone]');
      await db
        .insertInto('site_versions')
        .values({
          site: 'lab-loopback',
          version: 2,
          yaml: bad,
          plan: '{}',
          flows: 4,
          created_at: new Date(t).toISOString(),
        })
        .execute();
      const spool = tempDir();
      const lines: string[] = [];
      const agent = new Agent({ server: base, token, spool, log: (l) => lines.push(l) });
      const runOf = (key: string, version: number, at: number): SpooledRun => ({
        key,
        version,
        startedAt: new Date(at).toISOString(),
        isolated: false,
        results: [{ flowId: SSH, verdict: 'closed', detail: { reason: 'reset' } }],
      });
      const pending = join(spool, 'pending');
      writeFileSync(
        join(pending, '000000000000001-a.json'),
        JSON.stringify(runOf('run-v2-estored-0001', 2, t)),
      );
      writeFileSync(
        join(pending, '000000000000002-b.json'),
        JSON.stringify(runOf('run-v1-after-00001', 1, t + 1000)),
      );
      t += 60_000;
      assert.equal(await agent.flush(), 1, lines.join('\n'));
      // Kept, not rejected; the run after it was still sent.
      assert.deepEqual(readdirSync(pending), ['000000000000001-a.json']);
      assert.deepEqual(readdirSync(join(spool, 'rejected')), []);
      const said = lines.find((l) => l.includes('run-v2-estored-0001')) ?? '';
      assert.match(
        said,
        /^server could not store run-v2-estored-0001 \(version 2\): HTTP 409 ESTORED version 2 of site "lab-loopback" no longer loads with this server's catalogs: .*; the run is sound, so it stays in the spool \(.*pending\) and is sent again on every run until the server can store it$/,
      );
      assert.ok(lines.includes('sent run-v1-after-00001'), lines.join('\n'));
      // The plan of the version that no longer loads: said as the server's fault, not a refusal.
      assert.equal(await agent.plan(), null);
      assert.match(
        lines.at(-1) ?? '',
        /^server could not give the plan: HTTP 409 version 2 of site "lab-loopback" no longer loads .*; checking with the last plan fetched, if any$/,
      );
      const listed = async () =>
        ((await call('GET', '/api/agents', admin)).json().agents as Record<string, string | null>[]).find(
          (a) => a.id === id,
        );
      const a = await listed();
      assert.match(String(a?.refused), /^ESTORED: version 2 of site "lab-loopback" no longer loads/);
      assert.equal(a?.refusedAt, new Date(t).toISOString());
      assert.equal(a?.lastRunAt, new Date(t).toISOString());
      // Sent again on the next flush: no second event for the same reason.
      t += 60_000;
      assert.equal(await agent.flush(), 1);
      const events = (await store.events('lab-loopback', 50)).filter((e) => e.kind === 'run-not-stored');
      assert.equal(events.length, 1, JSON.stringify(events));
      assert.match(
        events[0]?.message ?? '',
        /run run-v2-estored-0001 \(version 2\) not stored: ESTORED: .*the agent keeps it and sends it again$/,
      );
      const refused = await listed();
      assert.equal(refused?.refusedAt, new Date(t).toISOString(), 'each resend moves the time');
      assert.ok(String(refused?.refusedAt) > String(refused?.lastRunAt), 'refused after the last stored run');
      // The server loads version 2 again (its catalogs are back): the kept run is stored, once.
      await db
        .updateTable('site_versions')
        .set({ yaml: good.replace('lab-loopback', 'lab-loopback') })
        .where('version', '=', 2)
        .execute();
      t += 60_000;
      assert.equal(await agent.flush(), 0, lines.join('\n'));
      assert.deepEqual(readdirSync(pending), []);
      const stored = await db
        .selectFrom('runs')
        .select('key')
        .where('key', '=', 'run-v2-estored-0001')
        .execute();
      assert.equal(stored.length, 1);
      const after = await listed();
      assert.equal(after?.lastRunAt, new Date(t).toISOString());
      assert.ok(String(after?.lastRunAt) > String(after?.refusedAt));
      await sql`delete from site_versions where version = 2`.execute(db);
    });
  });
}

suite('SQLite', async () => {
  const db = await openDb({ kind: 'sqlite', file: join(tempDir(), 'store.db') });
  return { db, close: () => db.destroy() };
});
suite(
  'PostgreSQL',
  async () => {
    pg ??= await startPg();
    const admin = await openDb({ kind: 'postgres', url: pg.url });
    const name = `agst${process.pid}`;
    try {
      await sql.raw(`create database ${name}`).execute(admin);
    } finally {
      await admin.destroy();
    }
    const db = await openDb({ kind: 'postgres', url: pg.url.replace(/\/postgres$/, `/${name}`) });
    return { db, close: () => db.destroy() };
  },
  pgUnavailable(),
);
