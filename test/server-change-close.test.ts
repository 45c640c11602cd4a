import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Migrator } from 'kysely';
import { openDb } from '../src/server/db.js';
import { migrationProvider } from '../src/server/migrations.js';
import { ROOT } from './helpers.js';
import { apiSuites, call } from './server-helpers.js';

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
// v2 adds a worker; v3 drops flr again (removal rows for vbr's flow to flr).
const V2 = `${LOOPBACK.trimEnd()}\n  wrk: { address: 127.0.0.4, roles: [veeam-proxmox:worker] }\n`;
const V3 = V2.split('\n')
  .filter((l) => !/^\s+flr:/.test(l))
  .join('\n');

interface Cr {
  id: string;
  closedAt: string | null;
  closedReason: string | null;
  supersededBy: string | null;
  rows: {
    rule: string;
    action: string;
    flowIds: string[];
    state: string;
    evidence: string;
    updatedAt: string;
  }[];
}

apiSuites('closing change requests', { prefix: 'ptclose-', sites: [LOOPBACK, V2, V3] }, (ctx) => {
  test('a closed change request keeps its rows, agents stop checking its removals, and it cannot be closed twice', async () => {
    const open = async (from: number, to: number) => {
      const r = await call(ctx, 'POST', '/api/sites/lab-loopback/change-requests', ctx.admin, { from, to });
      assert.equal(r.statusCode, 201, r.body);
      return r.json() as Cr;
    };
    const a = await open(1, 2);
    const b = await open(2, 3);
    assert.equal(a.closedAt, null);
    assert.equal(a.supersededBy, null);
    assert.ok(
      b.rows.some((r) => r.action === 'remove'),
      JSON.stringify(b.rows),
    );
    const token = (
      await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-loopback', host: 'vbr' })
    ).json().token as string;
    const plan1 = (await call(ctx, 'GET', '/api/agent/plan', token)).json();
    assert.equal(plan1.removals.length, 1, JSON.stringify(plan1.removals));

    // Who may close: the admin only; what: an id of the site; how: reason and supersededBy checked.
    const url = (id: string) => `/api/sites/lab-loopback/change-requests/${id}/close`;
    assert.equal((await call(ctx, 'POST', url(b.id), ctx.viewer, {})).statusCode, 403);
    assert.equal((await call(ctx, 'POST', url(b.id), null, {})).statusCode, 401);
    const unknown = await call(ctx, 'POST', url('nope'), ctx.admin, {});
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().error.code, 'ENOCHANGE');
    const self = await call(ctx, 'POST', url(b.id), ctx.admin, { supersededBy: b.id });
    assert.equal(self.statusCode, 400);
    assert.match(
      self.json().error.message,
      /^body\/supersededBy: ".*" is the change request being closed \(expected/,
    );
    const other = await call(ctx, 'POST', url(b.id), ctx.admin, { supersededBy: 'elsewhere' });
    assert.equal(other.statusCode, 400);
    assert.match(other.json().error.message, /is not a change request of site lab-loopback/);
    const badReason = await call(ctx, 'POST', url(b.id), ctx.admin, { reason: 5 });
    assert.equal(badReason.statusCode, 400);
    assert.equal(badReason.json().error.message, 'body/reason: must be string');

    // Closing B: its removals are no longer asked of the agent (the cached plan is not served).
    const closedB = await call(ctx, 'POST', url(b.id), ctx.admin, { reason: 'flr stays for now' });
    assert.equal(closedB.statusCode, 200, closedB.body);
    const bNow = closedB.json() as Cr;
    assert.match(bNow.closedAt ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.equal(bNow.closedReason, 'flr stays for now');
    assert.deepEqual(bNow.rows, b.rows);
    assert.deepEqual((await call(ctx, 'GET', '/api/agent/plan', token)).json().removals, []);
    const again = await call(ctx, 'POST', url(b.id), ctx.admin, {});
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().error.code, 'ECLOSED');
    assert.match(again.json().error.message, new RegExp(`was closed at ${bNow.closedAt}`));
    const events = (await call(ctx, 'GET', '/api/events?site=lab-loopback&limit=5', ctx.viewer)).json()
      .events;
    assert.equal(events[0].kind, 'change-closed');
    assert.equal(events[0].message, `change request ${b.id.slice(0, 8)} closed: flr stays for now`);

    // A: an agent's checks move its rows while open; closed (superseded by C), they stay.
    const post = async (key: string, verdict: string, seconds: number) => {
      const plan = (await call(ctx, 'GET', '/api/agent/plan', token)).json();
      const r = await call(ctx, 'POST', '/api/agent/results', token, {
        key,
        version: plan.version,
        startedAt: new Date(Date.now() + seconds * 1000).toISOString(),
        isolated: false,
        results: plan.flowIds.map((flowId: string) => ({ flowId, verdict, detail: {} })),
      });
      assert.equal(r.statusCode, 200, r.body);
    };
    await post('close-run-ok-000000001', 'ok', 1);
    const aWorking = (
      await call(ctx, 'GET', `/api/sites/lab-loopback/change-requests/${a.id}`, ctx.viewer)
    ).json() as Cr;
    const moved = aWorking.rows.filter((r) => r.state === 'working');
    assert.ok(moved.length >= 1, JSON.stringify(aWorking.rows));
    const c = await open(1, 3);
    const closedA = await call(ctx, 'POST', url(a.id), ctx.admin, { supersededBy: c.id });
    assert.equal(closedA.statusCode, 200, closedA.body);
    assert.equal(closedA.json().supersededBy, c.id);
    assert.equal(closedA.json().closedReason, null);
    await post('close-run-bad-00000002', 'blocked', 2);
    const aAfter = (
      await call(ctx, 'GET', `/api/sites/lab-loopback/change-requests/${a.id}`, ctx.viewer)
    ).json() as Cr;
    assert.deepEqual(aAfter.rows, aWorking.rows, 'a closed request moves no row');
    const cAfter = (
      await call(ctx, 'GET', `/api/sites/lab-loopback/change-requests/${c.id}`, ctx.viewer)
    ).json() as Cr;
    assert.ok(
      cAfter.rows.some((r) => r.state !== 'requested' || r.evidence !== ''),
      `the open one still moves: ${JSON.stringify(cAfter.rows)}`,
    );
    // The list says which are closed; a body is optional.
    const list = (await call(ctx, 'GET', '/api/sites/lab-loopback/change-requests', ctx.viewer)).json()
      .changeRequests as Cr[];
    assert.deepEqual(
      list.map((x) => [x.id, x.closedAt !== null, x.supersededBy]).sort(),
      [
        [a.id, true, c.id],
        [b.id, true, null],
        [c.id, false, null],
      ].sort(),
    );
    const bare = await ctx.app.inject({
      method: 'POST',
      url: url(c.id),
      headers: { authorization: `Bearer ${ctx.admin}` },
    });
    assert.equal(bare.statusCode, 200, bare.body);
    assert.match(bare.json().closedAt, /^\d{4}-/);
    const spec = (await call(ctx, 'GET', '/api/openapi.json', null)).json();
    const op = spec.paths['/api/sites/{site}/change-requests/{id}/close'].post;
    assert.equal(op.requestBody.required, false);
    assert.deepEqual(op['x-roles'], ['admin']);
    assert.deepEqual(Object.keys(op.requestBody.content['application/json'].schema.properties), [
      'reason',
      'supersededBy',
    ]);
  });
});

test('migration 004 on a store of migration 003 with change requests: open ones stay open; a half-done run finishes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptclose-mig-'));
  try {
    const file = join(dir, 'old.db');
    // A store made by the migrations up to 003, as an older serve left it, with one change request.
    const { Kysely, SqliteDialect } = await import('kysely');
    const Database = (await import('better-sqlite3')).default;
    const old = new Kysely<Record<string, Record<string, unknown>>>({
      dialect: new SqliteDialect({ database: new Database(file) }),
    });
    const r = await new Migrator({ db: old, provider: migrationProvider }).migrateTo('003_flow_forms');
    assert.equal(r.error, undefined);
    await old
      .insertInto('change_requests')
      .values({
        id: 'cr-old',
        site: 's',
        from_version: 1,
        to_version: 2,
        created_at: '2026-01-01T00:00:00.000Z',
      })
      .execute();
    // A run of 004 that stopped after its first column (SQLite runs migrations outside a transaction).
    await old.schema.alterTable('change_requests').addColumn('closed_at', 'text').execute();
    await old.destroy();
    const db = await openDb({ kind: 'sqlite', file });
    try {
      const rows = await db.selectFrom('change_requests').selectAll().execute();
      assert.deepEqual(rows, [
        {
          id: 'cr-old',
          site: 's',
          from_version: 1,
          to_version: 2,
          created_at: '2026-01-01T00:00:00.000Z',
          closed_at: null,
          closed_reason: null,
          superseded_by: null,
        },
      ]);
    } finally {
      await db.destroy();
    }
    // Opening it again runs nothing more.
    const again = await openDb({ kind: 'sqlite', file });
    await again.destroy();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
