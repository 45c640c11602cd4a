import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FORMAT_NAMES } from '../src/export/index.js';
import { WebhookPolicy } from '../src/server/webhooks.js';
import { ROOT } from './helpers.js';
import { apiSuites, call } from './server-helpers.js';

const LOOPBACK = readFileSync(`${ROOT}examples/lab/loopback.yaml`, 'utf8');
// Version 2 adds a worker: five new flows, two of them from the backup server.
const LOOPBACK_V2 = `${LOOPBACK.trimEnd()}\n  wrk: { address: 127.0.0.4, roles: [veeam-proxmox:worker] }\n`;
const NEW_FLOW = 'veeam-proxmox vbr/backup-server wrk/worker tcp https';

apiSuites(
  'serve API',
  {
    prefix: 'ptserve-',
    // The webhook receiver listens on loopback, which webhooks may reach only when allowed.
    app: { bodyLimit: 256 * 1024, webhooks: new WebhookPolicy(['127.0.0.0/8']) },
  },
  (ctx) => {
    test('an inventory upload is stored as a version; the same text makes no new one; an edit makes the next', async () => {
      const r1 = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: LOOPBACK });
      assert.equal(r1.statusCode, 201, r1.body);
      assert.deepEqual(r1.json(), { site: 'lab-loopback', version: 1, flows: 4, created: true });
      const again = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: LOOPBACK });
      assert.equal(again.statusCode, 200);
      assert.equal(again.json().version, 1);
      const r2 = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: LOOPBACK_V2 });
      assert.equal(r2.statusCode, 201);
      assert.equal(r2.json().version, 2);
      const versions = (await call(ctx, 'GET', '/api/sites/lab-loopback', ctx.viewer)).json();
      assert.deepEqual(
        versions.versions.map((v: { version: number }) => v.version),
        [1, 2],
      );
      const v1 = (await call(ctx, 'GET', '/api/sites/lab-loopback/versions/1', ctx.viewer)).json();
      assert.equal(v1.yaml, LOOPBACK);
      assert.equal(v1.plan.flows.length, 4);
    });

    test('the diff names removed and changed flows too; the delta carries only the changed ones', async () => {
      // A scratch site of its own: v1 as the loopback lab, v2 without flr and with pve at a new address.
      const v1 = LOOPBACK.replace('site: lab-loopback', 'site: lab-diff');
      assert.notEqual(v1, LOOPBACK);
      const v2 = v1
        .split('\n')
        .filter((l) => !/^\s+flr:/.test(l))
        .join('\n')
        .replace('127.0.0.2', '127.0.0.9');
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: v1 })).statusCode, 201);
      const r2 = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: v2 });
      assert.equal(r2.statusCode, 201, r2.body);
      const d = (await call(ctx, 'GET', '/api/sites/lab-diff/diff?from=1&to=2', ctx.viewer)).json();
      assert.equal(d.added.length, 0);
      assert.deepEqual(
        d.removed.map((f: { to: { host: string } }) => f.to.host),
        ['flr'],
      );
      assert.ok(d.changed.length >= 1, JSON.stringify(d.changed));
      for (const c of d.changed as { from: { to: { address: string } }; to: { to: { address: string } } }[]) {
        assert.equal(c.from.to.address, '127.0.0.2');
        assert.equal(c.to.to.address, '127.0.0.9');
      }
      assert.equal(d.unchanged, 4 - d.removed.length - d.changed.length);
      const nft = await call(ctx, 'GET', '/api/sites/lab-diff/delta/nftables?from=1&to=2', ctx.viewer);
      assert.equal(nft.statusCode, 200, nft.body);
      assert.match(nft.body, /127\.0\.0\.9/);
      // The old address and the removed flow are no rule: they are a note to act on by hand.
      const ruleLines = nft.body.split('\n').filter((l) => !l.trimStart().startsWith('#'));
      assert.doesNotMatch(ruleLines.join('\n'), /127\.0\.0\.2\b/);
      assert.match(nft.body, /# REMOVE: \d+ rule\(s\) of the previous version lose flows/);
      assert.match(nft.body, /# DELTA: .*load.* the full export of the new version/);
      const removedId = d.removed[0].id as string;
      assert.match(nft.body, new RegExp(`#\\s+flow ${removedId}: \\S+ \\S+ -> flr 127\\.0\\.0\\.3 `));
      assert.match(nft.body, /#\s+(remove|narrow) rule forward-/);
      for (const c of d.changed as { from: { id: string } }[])
        assert.match(nft.body, new RegExp(`#\\s+flow ${c.from.id}: .*127\\.0\\.0\\.2 `));
      // The change-request formats list the removals as rows of their own, with the flow ids.
      const csv = await call(ctx, 'GET', '/api/sites/lab-diff/delta/csv?from=1&to=2', ctx.viewer);
      const removeRecords = csv.body
        .split('\r\n')
        .filter((l) => /^"?forward-[^,]*,"?(remove|narrow)/.test(l));
      assert.ok(removeRecords.length >= 1, csv.body);
      assert.match(csv.body, new RegExp(`flow ${removedId}`));
      const md = await call(ctx, 'GET', '/api/sites/lab-diff/delta/markdown?from=1&to=2', ctx.viewer);
      assert.match(md.body, /^## Remove: rules of the previous version no longer needed \(\d+\)$/m);
      assert.match(md.body.slice(md.body.indexOf('## Remove')), new RegExp(`flow ${removedId}`));
      const html = await call(ctx, 'GET', '/api/sites/lab-diff/delta/html?from=1&to=2', ctx.viewer);
      assert.match(html.body, /<h2>Remove: rules of the previous version no longer needed \(\d+\)<\/h2>/);
      assert.match(html.body, /<table class="remove">/);
      assert.match(html.body.slice(html.body.indexOf('<table class="remove">')), /127\.0\.0\.3/);
      // flat-csv, the import format, gets `remove` rows per object pair.
      const flat = await call(ctx, 'GET', '/api/sites/lab-diff/delta/flat-csv?from=1&to=2', ctx.viewer);
      assert.match(
        flat.body,
        /\r\nforward-tcp-22-\d+,remove,127\.0\.0\.1,127\.0\.0\.3,tcp,22,22,,ssh,veeam-proxmox\r\n/,
      );
      assert.match(flat.body, /\r\nforward-tcp-8006-\d+,remove,127\.0\.0\.1,127\.0\.0\.2,tcp,8006,8006,/);
      // One host's view: vbr's outbound rule to flr goes.
      const host = await call(
        ctx,
        'GET',
        '/api/sites/lab-diff/delta/markdown?from=1&to=2&host=vbr',
        ctx.viewer,
      );
      assert.equal(host.statusCode, 200, host.body);
      assert.match(host.body, /## Remove: .*\n[\s\S]*\| out-tcp-[^|]*\| remove /);
    });

    test('a delta change request tracks its removals as rows of their own: an agent checks the removed flows', async () => {
      // lab-diff (the test above): v2 drops flr and moves pve from 127.0.0.2 to 127.0.0.9.
      const d = (await call(ctx, 'GET', '/api/sites/lab-diff/diff?from=1&to=2', ctx.viewer)).json();
      const removedId = d.removed[0].id as string;
      const changedIds = (d.changed as { from: { id: string } }[]).map((c) => c.from.id);
      const cr = await call(ctx, 'POST', '/api/sites/lab-diff/change-requests', ctx.admin, {
        from: 1,
        to: 2,
      });
      assert.equal(cr.statusCode, 201, cr.body);
      type Row = { rule: string; action: string; summary: string; flowIds: string[]; state: string };
      const rows = cr.json().rows as Row[];
      const removals = rows.filter((r) => r.action === 'remove');
      const allows = rows.filter((r) => r.action === 'allow');
      assert.ok(allows.length >= 1, cr.body);
      // Every leaving flow (the removed one, the changed ones' old form) is on a removal row.
      const leaving = new Set(removals.flatMap((r) => r.flowIds));
      for (const id of [removedId, ...changedIds]) assert.ok(leaving.has(id), `${id} in ${cr.body}`);
      for (const r of removals) {
        assert.equal(r.state, 'requested');
        assert.match(r.rule, /^forward-/);
        assert.match(r.summary, /^(remove|narrow): /);
      }
      // The same rule ids as the delta's csv lists for removal.
      const csv = (await call(ctx, 'GET', '/api/sites/lab-diff/delta/csv?from=1&to=2', ctx.viewer)).body;
      for (const r of removals) assert.match(csv, new RegExp(`${r.rule},"?(remove|narrow)`));
      // An agent checks v2's flows from vbr, the changed ones included: the rows to add work; the
      // removal rows stay requested (a check of the new version says nothing about removed flows).
      const enrol = await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-diff', host: 'vbr' });
      assert.equal(enrol.statusCode, 201, enrol.body);
      const agentToken = enrol.json().token as string;
      const plan = (await call(ctx, 'GET', '/api/agent/plan', agentToken)).json();
      assert.equal(plan.version, 2);
      const post = await call(ctx, 'POST', '/api/agent/results', agentToken, {
        key: 'run-diffdiffdiffdiff',
        version: 2,
        startedAt: new Date(Date.now() + 1000).toISOString(),
        isolated: false,
        results: plan.flowIds.map((flowId: string) => ({ flowId, verdict: 'ok', detail: {} })),
      });
      assert.equal(post.statusCode, 200, post.body);
      const after = (await call(ctx, 'GET', '/api/sites/lab-diff/change-requests', ctx.viewer)).json()
        .changeRequests[0].rows as Row[];
      const fromVbr = after.filter(
        (r) => r.action === 'allow' && r.flowIds.every((id) => plan.flowIds.includes(id)),
      );
      assert.ok(fromVbr.length >= 1, JSON.stringify(after));
      for (const r of fromVbr) assert.equal(r.state, 'working', JSON.stringify(r));
      for (const r of after.filter((x) => x.action === 'remove')) assert.equal(r.state, 'requested');
      assert.equal(after.filter((x) => x.action === 'remove').length, removals.length);

      // The plan names the removed flows from vbr, with version 1's inventory to check them by.
      const v1 = (await call(ctx, 'GET', '/api/sites/lab-diff/versions/1', ctx.viewer)).json();
      const v1FromVbr = new Set(
        (v1.plan.flows as { id: string; from: { host: string } }[])
          .filter((f) => f.from.host === 'vbr')
          .map((f) => f.id),
      );
      const expected = [...leaving].filter((id) => v1FromVbr.has(id)).sort();
      assert.ok(expected.length >= 1, [...leaving].join(', '));
      assert.deepEqual(
        plan.removals.map((g: { version: number; yaml: string; flowIds: string[] }) => [
          g.version,
          g.yaml === v1.yaml,
          g.flowIds,
        ]),
        [[1, true, expected]],
      );
      const rowsNow = async () =>
        (await call(ctx, 'GET', '/api/sites/lab-diff/change-requests', ctx.viewer)).json().changeRequests[0]
          .rows as (Row & { evidence: string })[];
      // The rows the vbr agent can settle on its own: all their flows start at vbr.
      const mine = removals.filter((r) => r.flowIds.every((id) => v1FromVbr.has(id))).map((r) => r.rule);
      assert.ok(mine.length >= 1, cr.body);
      const removalRun = async (key: string, verdict: string, seconds: number) => {
        const r = await call(ctx, 'POST', '/api/agent/results', agentToken, {
          key,
          version: 1,
          startedAt: new Date(Date.now() + seconds * 1000).toISOString(),
          isolated: false,
          results: expected.map((flowId) => ({ flowId, verdict, detail: { reason: `seen ${verdict}` } })),
        });
        assert.equal(r.statusCode, 200, r.body);
        return (await rowsNow()).filter((x) => x.action === 'remove' && mine.includes(x.rule));
      };
      // Still reachable before anyone removed the rule: requested, with the evidence saying so.
      let rm = await removalRun('rm-open-aaaaaaaaaaaaa', 'ok (responder)', 2);
      for (const r of rm) {
        assert.equal(r.state, 'requested', JSON.stringify(r));
        assert.match(r.evidence, /: ok \(responder\) at .* \(still open\)/);
      }
      // Blocked: implemented.
      rm = await removalRun('rm-blocked-aaaaaaaaaa', 'filtered', 3);
      for (const r of rm) {
        assert.equal(r.state, 'implemented', JSON.stringify(r));
        assert.match(r.evidence, /: filtered at .* \(blocked\)/);
      }
      // A verdict that proves neither changes nothing.
      rm = await removalRun('rm-unsure-aaaaaaaaaaa', 'responder-overloaded', 4);
      for (const r of rm) assert.equal(r.state, 'implemented', JSON.stringify(r));
      // Reachable again: broken; blocked once more: implemented again.
      rm = await removalRun('rm-again-aaaaaaaaaaaa', 'reachable', 5);
      for (const r of rm) assert.equal(r.state, 'broken', JSON.stringify(r));
      rm = await removalRun('rm-closed-aaaaaaaaaaa', 'closed', 6);
      for (const r of rm) assert.equal(r.state, 'implemented', JSON.stringify(r));
      const events = (await call(ctx, 'GET', '/api/events?site=lab-diff', ctx.viewer)).json().events as {
        kind: string;
        subject: string;
      }[];
      const kinds = events.map((e) => e.kind);
      assert.ok(kinds.includes('change-implemented') && kinds.includes('change-broken'), kinds.join(','));
      // The removed flows' checks are evidence for the removal, not verdicts of the current plan:
      // no flow turned failing, and the status of version 2 is unchanged by them.
      assert.ok(!events.some((e) => e.kind === 'flow-failing'), kinds.join(','));
      const status = (await call(ctx, 'GET', '/api/sites/lab-diff/status', ctx.viewer)).json();
      for (const f of status.flows as {
        flow: { id: string };
        verdict: string | null;
        history: { verdict: string }[];
      }[])
        if (expected.includes(f.flow.id))
          assert.deepEqual([f.verdict, f.history.map((h) => h.verdict)], ['ok', ['ok']], JSON.stringify(f));
      // A removal run may name only flows of that version from its own host.
      const wrong = await call(ctx, 'POST', '/api/agent/results', agentToken, {
        key: 'rm-wrong-aaaaaaaaaaaa',
        version: 1,
        startedAt: new Date().toISOString(),
        isolated: false,
        results: [{ flowId: 'no such flow', verdict: 'filtered', detail: {} }],
      });
      assert.equal(wrong.statusCode, 400, wrong.body);
      // The OpenAPI description names the new reply fields.
      const spec = (await call(ctx, 'GET', '/api/openapi.json', null)).json();
      const planReply = spec.paths['/api/agent/plan'].get.responses['200'].content['application/json'].schema;
      assert.ok(planReply.properties.removals, JSON.stringify(planReply));
      const crReply =
        spec.paths['/api/sites/{site}/change-requests/{id}'].get.responses['200'].content['application/json']
          .schema;
      assert.ok(crReply.properties.rows.items.properties.state.enum.includes('implemented'));
    });

    test('a removed flow that shared its rule with a staying one narrows the rule, never removes it', async () => {
      // vbr -> pve and vbr -> flr share the tcp 22 rule; without flr the rule stays for pve.
      const v1 = LOOPBACK.replace('site: lab-loopback', 'site: lab-narrow');
      const v2 = v1
        .split('\n')
        .filter((l) => !/^\s+flr:/.test(l))
        .join('\n');
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: v1 })).statusCode, 201);
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: v2 })).statusCode, 201);
      const nft = await call(ctx, 'GET', '/api/sites/lab-narrow/delta/nftables?from=1&to=2', ctx.viewer);
      assert.match(nft.body, /# REMOVE: 1 rule\(s\)/);
      assert.match(
        nft.body,
        /# narrow rule forward-tcp-22-\d+ \(tcp 22\): take out the flows below, it stays for 1 other flow\(s\)/,
      );
      assert.doesNotMatch(nft.body, /# remove rule/);
      const csv = await call(ctx, 'GET', '/api/sites/lab-narrow/delta/csv?from=1&to=2', ctx.viewer);
      const rows = csv.body.split('\r\n').filter((l) => l.startsWith('forward-tcp-22-'));
      assert.equal(rows.length, 1, csv.body);
      assert.match(
        rows[0] ?? '',
        /^forward-tcp-22-\d+,"narrow: take these flows out, the rule stays for its other flows",forward,/,
      );
      assert.doesNotMatch(rows[0] ?? '', /pve/);
      const flat = await call(ctx, 'GET', '/api/sites/lab-narrow/delta/flat-csv?from=1&to=2', ctx.viewer);
      const removes = flat.body.split('\r\n').filter((l) => /^[^,]*,remove,/.test(l));
      assert.deepEqual(
        removes.map((l) => l.split(',').slice(2, 6).join(' ')),
        ['127.0.0.1 127.0.0.3 tcp 22'],
      );
    });

    test('a bad inventory is refused with the line, column and key', async () => {
      const bad = LOOPBACK.replace('veeam-proxmox:flr-appliance', 'veeam-proxmox:flr-applianse');
      const r = await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml: bad });
      assert.equal(r.statusCode, 400);
      assert.equal(r.json().error.code, 'EINPUT');
      assert.match(
        r.json().error.message,
        /^inventory\.yaml:\d+:\d+ hosts\.flr\.roles\[0\]: unknown role "flr-applianse"/,
      );
    });

    test('the diff names the added flow, and the delta change request holds only it, in every format', async () => {
      const d = (await call(ctx, 'GET', '/api/sites/lab-loopback/diff?from=1&to=2', ctx.viewer)).json();
      assert.equal(d.added.length, 5);
      assert.ok(
        d.added.every(
          (f: { from: { host: string }; to: { host: string } }) =>
            f.from.host === 'wrk' || f.to.host === 'wrk',
        ),
      );
      assert.equal(d.removed.length, 0);
      assert.equal(d.unchanged, 4);
      const nft = await call(ctx, 'GET', '/api/sites/lab-loopback/delta/nftables?from=1&to=2', ctx.viewer);
      assert.equal(nft.statusCode, 200);
      assert.match(nft.body, /127\.0\.0\.4/);
      assert.doesNotMatch(nft.body, /127\.0\.0\.3/);
      // Nothing removed: no Remove section, no removal note.
      assert.doesNotMatch(nft.body, /# REMOVE:/);
      for (const f of ['csv', 'flat-csv', 'markdown', 'html'] as const) {
        const cr = await call(ctx, 'GET', `/api/sites/lab-loopback/delta/${f}?from=1&to=2`, ctx.viewer);
        assert.equal(cr.statusCode, 200, cr.body);
        assert.doesNotMatch(cr.body, /Remove:|,"?(remove|narrow)/, f);
      }
      const full = await call(ctx, 'GET', '/api/sites/lab-loopback/versions/2/export/nftables', ctx.viewer);
      assert.match(full.body, /127\.0\.0\.3/);
      assert.equal(
        full.headers['content-disposition'],
        'attachment; filename="lab-loopback-v2-portolan.nft"',
      );
      // Every format renders the delta, in network mode or for one host (firewalld, ufw, windows).
      for (const f of FORMAT_NAMES) {
        const net = await call(ctx, 'GET', `/api/sites/lab-loopback/delta/${f}?from=1&to=2`, ctx.viewer);
        const host = await call(
          ctx,
          'GET',
          `/api/sites/lab-loopback/delta/${f}?from=1&to=2&host=vbr`,
          ctx.viewer,
        );
        assert.ok(net.statusCode === 200 || host.statusCode === 200, `${f}: ${net.body} ${host.body}`);
        if (net.statusCode !== 200) assert.match(net.json().error.message, /does not support network mode/);
      }
    });

    test('results are stored once per idempotency key; a flow turning failing is an event', async () => {
      const enrol = await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-loopback', host: 'vbr' });
      assert.equal(enrol.statusCode, 201, enrol.body);
      const agentToken = enrol.json().token as string;
      const plan = (await call(ctx, 'GET', '/api/agent/plan', agentToken)).json();
      assert.equal(plan.version, 2);
      assert.equal(plan.flowIds.length, 6);
      const flow = NEW_FLOW;
      assert.ok(plan.flowIds.includes(flow));
      // A change request opened before the checks: its row waits for an agent to verify it.
      const cr = await call(ctx, 'POST', '/api/sites/lab-loopback/change-requests', ctx.admin, {
        from: 1,
        to: 2,
      });
      assert.equal(cr.statusCode, 201, cr.body);
      const rowOf = (c: { rows: { flowIds: string[]; state: string; evidence: string }[] }) =>
        c.rows.find((r) => r.flowIds.includes(flow));
      const row = rowOf(cr.json());
      assert.equal(row?.state, 'requested');
      // The row's rule may carry several flows from vbr: it works once every one of them was seen ok.
      const rowFlows = row?.flowIds ?? [];
      assert.ok(
        rowFlows.every((id) => plan.flowIds.includes(id)),
        rowFlows.join(', '),
      );
      const post = (key: string, verdict: string, startedAt: string) =>
        call(ctx, 'POST', '/api/agent/results', agentToken, {
          key,
          version: 2,
          startedAt,
          isolated: false,
          results: rowFlows.map((flowId) => ({ flowId, verdict, detail: { reason: `seen ${verdict}` } })),
        });
      assert.ok(cr.json().rows.every((r: { state: string }) => r.state === 'requested'));
      const later = (s: number) => new Date(Date.now() + s * 1000).toISOString();
      const a = await post('run-aaaaaaaaaaaaaaaa', 'closed', later(1));
      assert.equal(a.statusCode, 200, a.body);
      assert.deepEqual(a.json(), { key: 'run-aaaaaaaaaaaaaaaa', stored: true, duplicate: false });
      const again = await post('run-aaaaaaaaaaaaaaaa', 'closed', later(1));
      assert.deepEqual(again.json(), { key: 'run-aaaaaaaaaaaaaaaa', stored: false, duplicate: true });
      const rows = await ctx.db
        .selectFrom('results')
        .selectAll()
        .where('run_key', '=', 'run-aaaaaaaaaaaaaaaa')
        .execute();
      assert.equal(rows.length, rowFlows.length);
      await post('run-bbbbbbbbbbbbbbbb', 'ok', later(2));
      let state = (await call(ctx, 'GET', '/api/sites/lab-loopback/change-requests', ctx.viewer)).json();
      assert.equal(rowOf(state.changeRequests[0])?.state, 'working');
      assert.match(rowOf(state.changeRequests[0])?.evidence ?? '', /: ok at /);
      await post('run-cccccccccccccccc', 'filtered', later(3));
      state = (await call(ctx, 'GET', '/api/sites/lab-loopback/change-requests', ctx.viewer)).json();
      assert.equal(rowOf(state.changeRequests[0])?.state, 'broken');
      const kinds = (await call(ctx, 'GET', '/api/events?site=lab-loopback', ctx.viewer))
        .json()
        .events.map((e: { kind: string }) => e.kind);
      assert.ok(kinds.includes('flow-ok') && kinds.includes('flow-failing'), kinds.join(','));
      assert.ok(kinds.includes('change-working') && kinds.includes('change-broken'), kinds.join(','));
      const status = (await call(ctx, 'GET', '/api/sites/lab-loopback/status', ctx.viewer)).json();
      const s = status.flows.find((f: { flow: { id: string } }) => f.flow.id === flow);
      assert.equal(s.verdict, 'filtered');
      assert.deepEqual(
        s.history.map((h: { verdict: string }) => h.verdict),
        ['filtered', 'ok', 'closed'],
      );
      const metrics = await call(ctx, 'GET', '/metrics', ctx.viewer);
      assert.match(
        metrics.body,
        new RegExp(`portolan_flows\\{site="lab-loopback",verdict="filtered"\\} ${rowFlows.length}\n`),
      );
      assert.match(
        metrics.body,
        new RegExp(`portolan_flows\\{site="lab-loopback",verdict="unchecked"\\} ${9 - rowFlows.length}\n`),
      );
      assert.match(
        metrics.body,
        /portolan_agent_last_seen_seconds\{site="lab-loopback",host="vbr",agent="vbr"\} \d/,
      );
    });

    test('a webhook receives each event as JSON', async () => {
      const got: { event: { kind: string; message: string } }[] = [];
      const hook = createServer((req, res) => {
        let body = '';
        req.on('data', (b) => {
          body += String(b);
        });
        req.on('end', () => {
          got.push(JSON.parse(body));
          res.end();
        });
      });
      await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
      try {
        const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
        const made = await call(ctx, 'POST', '/api/webhooks', ctx.admin, { url });
        assert.equal(made.statusCode, 201, made.body);
        const enrol = (
          await call(ctx, 'POST', '/api/agents', ctx.admin, {
            site: 'lab-loopback',
            host: 'vbr',
            name: 'hooked',
          })
        ).json();
        const post = (key: string, verdict: string, at: number) =>
          call(ctx, 'POST', '/api/agent/results', enrol.token, {
            key,
            version: 2,
            startedAt: new Date(Date.now() + at * 1000).toISOString(),
            isolated: false,
            results: [
              { flowId: 'veeam-proxmox vbr/backup-server flr/flr-appliance tcp ssh', verdict, detail: {} },
            ],
          });
        await post('hook-run-ok-00000001', 'ok', 10);
        await post('hook-run-bad-0000002', 'blocked', 11);
        const end = Date.now() + 60_000;
        while (!got.some((g) => g.event.kind === 'flow-failing') && Date.now() < end) await sleep(50);
        const failing = got.find((g) => g.event.kind === 'flow-failing');
        assert.ok(failing, JSON.stringify(got));
        assert.match(failing.event.message, /flr-appliance tcp ssh: ok -> blocked/);
        const id = made.json().id as string;
        assert.equal((await call(ctx, 'DELETE', `/api/webhooks/${id}`, ctx.admin)).statusCode, 204);
      } finally {
        hook.close();
      }
    });

    test("an agent may post only its own host's flows, and an isolated run changes no verdict", async () => {
      const enrol = (
        await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-loopback', host: 'pve' })
      ).json();
      const r = await call(ctx, 'POST', '/api/agent/results', enrol.token, {
        key: 'run-dddddddddddddddd',
        version: 2,
        startedAt: new Date().toISOString(),
        isolated: false,
        results: [
          { flowId: 'veeam-proxmox vbr/backup-server pve/proxmox-server tcp ssh', verdict: 'ok', detail: {} },
        ],
      });
      assert.equal(r.statusCode, 400);
      assert.equal(r.json().error.code, 'EFLOW');
      const bad = await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-loopback', host: 'nope' });
      assert.equal(bad.statusCode, 400);
      assert.match(bad.json().error.message, /expected one of: vbr, pve, flr, wrk/);
    });

    test('every route refuses a missing or wrong token; a viewer changes nothing; an agent reads no site', async () => {
      const spec = (await call(ctx, 'GET', '/api/openapi.json', null)).json();
      let checked = 0;
      for (const [path, ops] of Object.entries(
        spec.paths as Record<string, Record<string, { 'x-roles'?: string[] }>>,
      )) {
        const url = path
          .replace('{site}', 'lab-loopback')
          .replace('{version}', '1')
          .replace('{format}', 'nftables')
          .replace('{flow}', 'x')
          .replace('{id}', 'x');
        for (const [method, op] of Object.entries(ops)) {
          if (!op['x-roles']) continue;
          checked++;
          const body = method === 'get' || method === 'delete' ? undefined : {};
          const none = await call(ctx, method, url, null, body);
          assert.equal(none.statusCode, 401, `${method} ${url} without a token`);
          assert.equal(none.json().error.code, 'EAUTH');
          const wrong = await call(ctx, method, url, `${ctx.admin}x`, body);
          assert.equal(wrong.statusCode, 401, `${method} ${url} with a wrong token`);
          if (!op['x-roles'].includes('viewer')) {
            const v = await call(ctx, method, url, ctx.viewer, body);
            assert.equal(v.statusCode, 403, `${method} ${url} as a viewer`);
            assert.equal(v.json().error.code, 'EFORBIDDEN');
          }
        }
      }
      assert.ok(checked >= 20, `only ${checked} routes checked`);
    });

    test('malformed JSON, a body failing its schema and an oversized body get a clear 4xx', async () => {
      const raw = (payload: string, type = 'application/json') =>
        ctx.app.inject({
          method: 'POST',
          url: '/api/sites',
          headers: { authorization: `Bearer ${ctx.admin}`, 'content-type': type },
          payload,
        });
      const malformed = await raw('{"yaml": ');
      assert.equal(malformed.statusCode, 400);
      assert.equal(malformed.json().error.code, 'EJSON');
      // Where the body breaks, and what was expected there (Fastify said only "not valid JSON").
      const comma = await raw('{"yaml": "x",\n }');
      assert.equal(comma.statusCode, 400, comma.body);
      assert.equal(
        comma.json().error.message,
        'body: not JSON at line 2, column 2: found "}", expected a double-quoted property name',
      );
      const schema = await raw('{"yml": "x"}');
      assert.equal(schema.statusCode, 400);
      assert.equal(schema.json().error.code, 'EVALIDATION');
      assert.equal(schema.json().error.message, "body: must have required property 'yaml'");
      const big = await raw(JSON.stringify({ yaml: 'x'.repeat(300 * 1024) }));
      assert.equal(big.statusCode, 413);
      assert.equal(big.json().error.code, 'ETOOLARGE');
      assert.match(big.json().error.message, /larger than 262144 bytes/);
      const format = await call(ctx, 'GET', '/api/sites/lab-loopback/versions/1/export/pdf', ctx.viewer);
      assert.equal(format.statusCode, 400, format.body);
      assert.match(format.json().error.message, /expected one of: .*nftables/);
      const noFlow = await call(ctx, 'GET', '/api/sites/lab-loopback/flows/no-such-flow/history', ctx.viewer);
      assert.equal(noFlow.statusCode, 404, noFlow.body);
      assert.equal(noFlow.json().error.code, 'ENOFLOW');
      const noSite = await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'nowhere', host: 'vbr' });
      assert.equal(noSite.statusCode, 404, noSite.body);
      assert.match(
        noSite.json().error.message,
        /^no site "nowhere" \(expected one uploaded first: POST \/api\/sites/,
      );
      // Plain text is not JSON: a 415 naming the type, not the schema's "must be object".
      const text = await raw('site: x', 'text/plain');
      assert.equal(text.statusCode, 415);
      assert.equal(text.json().error.code, 'EMEDIATYPE');
      // Nesting thousands deep is refused before parsing, with where and what was expected: it once
      // reached the store and came back as a 500.
      const deep = await raw(`{"yaml": "x", "n": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
      assert.equal(deep.statusCode, 400, deep.body);
      assert.equal(deep.json().error.code, 'EJSON');
      assert.match(deep.json().error.message, /nested deeper than 64 levels at character 83 /);
      const brackets = await raw(JSON.stringify({ yaml: '['.repeat(5000) }));
      assert.notEqual(brackets.json().error?.code, 'EJSON', 'brackets inside a string do not nest');
      // A broken %-escape in the path is refused in the API's own shape, not Fastify's.
      const badUrl = await call(ctx, 'GET', '/api/sites/%E0%A4%A/versions/1', ctx.viewer);
      assert.equal(badUrl.statusCode, 400, badUrl.body);
      assert.equal(badUrl.json().error.code, 'EREQUEST');
      assert.match(
        badUrl.json().error.message,
        /^the path "\/api\/sites\/%E0%A4%A\/versions\/1" is not a valid URL/,
      );
      const poisoned = await raw('{"yaml": "x", "__proto__": {"admin": true}}');
      assert.equal(poisoned.statusCode, 400, 'the default parser still refuses proto poisoning');
      assert.match(poisoned.json().error.message, /"__proto__" or "constructor" key is refused/);
      const media = await raw('<x/>', 'application/xml');
      assert.equal(media.statusCode, 415);
      assert.equal(media.json().error.code, 'EMEDIATYPE');
    });

    test('a site named in any script downloads its exports (the header carried the name raw: a 500)', async () => {
      const site = '東京 "dc"';
      const yaml = LOOPBACK.replace('site: lab-loopback', `site: '${site}'`);
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml })).statusCode, 201);
      const url = `/api/sites/${encodeURIComponent(site)}`;
      for (const path of [`${url}/versions/1/export/nftables`, `${url}/delta/csv?from=1&to=1`]) {
        const r = await call(ctx, 'GET', path, ctx.viewer);
        assert.equal(r.statusCode, 200, r.body);
        const cd = r.headers['content-disposition'] as string;
        assert.match(cd, /^attachment; filename="__ _dc_-v1-[\w.-]+"; filename\*=UTF-8''(\S+)$/);
        const full = decodeURIComponent(/filename\*=UTF-8''(\S+)$/.exec(cd)?.[1] ?? '');
        assert.match(full, /^東京 "dc"-v1-/);
      }
    });

    test('an agent result whose detail nests thousands of levels deep is a 400 and is not stored', async () => {
      const yaml = LOOPBACK.replace('site: lab-loopback', 'site: lab-deep');
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml })).statusCode, 201);
      const enrol = await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-deep', host: 'vbr' });
      assert.equal(enrol.statusCode, 201, enrol.body);
      const token = enrol.json().token as string;
      const plan = (await call(ctx, 'GET', '/api/agent/plan', token)).json();
      let detail = '{}';
      for (let i = 0; i < 5000; i++) detail = `{"a":${detail}}`;
      const key = 'deep-aaaaaaaaaaaaaaaa';
      const r = await ctx.app.inject({
        method: 'POST',
        url: '/api/agent/results',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: `{"key":"${key}","version":${plan.version},"startedAt":"${new Date().toISOString()}","isolated":false,"results":[{"flowId":${JSON.stringify(plan.flowIds[0])},"verdict":"ok","detail":${detail}}]}`,
      });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().error.code, 'EJSON');
      assert.match(r.json().error.message, /nested deeper than 64 levels/);
      const stored = await ctx.db.selectFrom('results').selectAll().where('run_key', '=', key).execute();
      assert.equal(stored.length, 0);
    });

    test('an agent result whose detail is larger than 64 KiB is a 400 naming it, and nothing of the run is stored', async () => {
      const yaml = LOOPBACK.replace('site: lab-loopback', 'site: lab-big');
      assert.equal((await call(ctx, 'POST', '/api/sites', ctx.admin, { yaml })).statusCode, 201);
      const enrol = await call(ctx, 'POST', '/api/agents', ctx.admin, { site: 'lab-big', host: 'vbr' });
      assert.equal(enrol.statusCode, 201, enrol.body);
      const token = enrol.json().token as string;
      const plan = (await call(ctx, 'GET', '/api/agent/plan', token)).json();
      const key = 'big-aaaaaaaaaaaaaaaaa';
      const results = [
        { flowId: plan.flowIds[0], verdict: 'ok', detail: { note: 'small' } },
        { flowId: plan.flowIds[0], verdict: 'ok', detail: { banner: 'x'.repeat(70000) } },
      ];
      const r = await call(ctx, 'POST', '/api/agent/results', token, {
        key,
        version: plan.version,
        startedAt: new Date().toISOString(),
        isolated: false,
        results,
      });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().error.code, 'EVALIDATION');
      assert.match(r.json().error.message, /^body\/results\/1\/detail: 70013 bytes of JSON, more than 65536/);
      const stored = await ctx.db.selectFrom('results').selectAll().where('run_key', '=', key).execute();
      assert.equal(stored.length, 0);
    });
  },
);
