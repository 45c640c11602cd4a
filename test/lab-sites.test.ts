import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import {
  alive,
  lab,
  labDir,
  namespaces,
  readLabState,
  skipLab,
  snapshot,
  type VerifyJson,
} from './lab-helpers.js';

/**
 * Every example site, with both generated firewalls: `lab up`, `lab verify` (every planned flow
 * passes through both hosts' rulesets to the responder, or fails for the reason the lab names; every
 * sampled unplanned probe is blocked), `lab ablate` of every generated rule of every host (each
 * breaks named flows or is reported redundant; the verify runs after the last rule is restored), `lab break` of one flow (verify then shows exactly the flows
 * that carry it failing, as filtered: the ruleset drops), and `lab down` (the namespaces, their
 * /etc/netns directories and the responders are gone; the root namespace's links and nftables
 * ruleset are as before).
 */

/** One flow to break per site and firewall: single ports, through CIDR and DNS-name hosts and merged rules. */
const SITES: Record<string, Record<'nftables' | 'iptables', string>> = {
  'druva-vmware': { nftables: 'proxy-01->esx-cluster-a:902/tcp', iptables: 'proxy-01->vc-01:443/tcp' },
  platespin: { nftables: 'targets->ps-server:80/tcp', iptables: 'ps-server->win-src:445/tcp' },
  'platespin-legacy': {
    nftables: 'ps-server->esx-legacy:443/tcp',
    iptables: 'fileserver-old->ps-server:80/tcp',
  },
  'veeam-proxmox': {
    nftables: 'pve-worker-01->pve-02:8006/tcp',
    iptables: 'vbr-01->pve-worker-01:19000/tcp',
  },
  'mixed-site': { nftables: 'proxy-01->sql-01:3542/tcp', iptables: 'ps-01->phys-01:445/tcp' },
};

const PASS = new Set(['ok', 'ok (responder)']);

interface AblateJson {
  errors: string[];
  failingBefore: string[];
  rules: {
    host: string;
    rule: string;
    protocol: string;
    status: string;
    note?: string;
    breaks: {
      id: string;
      from: string;
      to: string;
      protocol: string;
      ports: number[][];
      sources: { doc: string; ref: string }[];
    }[];
  }[];
}

describe('lab: every example site with both firewalls', { skip: skipLab, concurrency: 2 }, () => {
  const dir = labDir();
  after(() => dir.cleanup());

  for (const [site, breaks] of Object.entries(SITES))
    for (const firewall of ['nftables', 'iptables'] as const) {
      it(`${site} (${firewall}): up, ablate every rule, verify, break ${breaks[firewall]}, down`, {
        timeout: 1_200_000,
      }, async () => {
        // Two sites run at once: the name tells platespin from platespin-legacy.
        const name = dir.name(`${site.slice(0, 6)}${site.length}-${firewall.slice(0, 3)}`);
        const before = snapshot();
        const up = await lab(
          ['up', `examples/${site}.yaml`, '--name', name, '--firewall', firewall, '-q'],
          dir.env,
        );
        assert.equal(up.code, 0, up.stderr);
        const state = readLabState(dir.root, name);
        try {
          const present = namespaces();
          for (const ns of state.objects.netns) assert.ok(present.has(ns), `namespace ${ns} missing`);
          for (const ns of state.objects.netns) assert.ok(ns.length <= 15, ns);

          const spec = breaks[firewall];
          const m = /^(.+)->(.+):(\d+)\/(tcp|udp)$/.exec(spec) as RegExpExecArray;
          const [from, to, port, proto] = [m[1], m[2], Number(m[3]), m[4]];
          const carrying = (f: { from: string; to: string; protocol: string; ports: number[][] }) =>
            f.from === from &&
            f.to === to &&
            f.protocol === proto &&
            f.ports.some(([lo, hi]) => (lo as number) <= port && port <= (hi as number));

          // Ablate every generated rule of every host, each removed and restored in turn: each
          // rule breaks named flows with their catalog rows, or is reported redundant (untestable
          // only for ICMP and unspecified peers). The verify below runs after the last restore.
          const a = await lab(['ablate', '--name', name, '--format', 'json'], dir.env);
          assert.equal(a.code, 0, a.stderr);
          const ab = JSON.parse(a.stdout) as AblateJson;
          assert.deepEqual(ab.errors, []);
          assert.deepEqual(ab.failingBefore, []);
          for (const r of ab.rules) {
            const what = `${r.host} ${r.rule} ${r.protocol}: ${r.status}`;
            if (r.status === 'needed') assert.ok(r.breaks.length > 0, what);
            else if (r.status === 'redundant') assert.match(r.note ?? '', /broke no planned flow/, what);
            else {
              assert.equal(r.status, 'untestable', what);
              assert.match(r.note ?? '', /ICMP|unspecified|no address family/, what);
            }
            for (const f of r.breaks) {
              assert.equal(f.to, r.host);
              assert.equal(f.protocol, r.protocol);
              assert.ok(f.sources.length > 0 && f.sources.every((x) => x.doc.length > 0 && x.ref.length > 0));
            }
          }
          // Generated rules are built from the plan's flows: none of them is redundant.
          assert.deepEqual(
            ab.rules.filter((r) => r.status === 'redundant').map((r) => `${r.host} ${r.rule}`),
            [],
          );
          assert.ok(
            ab.rules.some((r) => r.host === to && r.status === 'needed' && r.breaks.some(carrying)),
            `the rule carrying ${spec} breaks it`,
          );
          if (site === 'platespin-legacy') {
            const http = ab.rules.find((r) => r.host === 'ps-server' && r.protocol === 'tcp');
            assert.deepEqual(http?.breaks.map((f) => f.from).sort(), ['fileserver-new', 'fileserver-old']);
          }

          const v = await lab(['verify', '--name', name, '--format', 'json'], dir.env);
          const doc = JSON.parse(v.stdout) as VerifyJson;
          assert.deepEqual(doc.errors, []);
          assert.ok(doc.flows.length > 0);
          const labAddress = new Map(state.hosts.map((h) => [h.name, h.addresses]));
          for (const f of doc.flows) {
            if (f.expectedFailure) assert.ok(f.failed, `${f.id} should fail: ${f.expectedFailure}`);
            else assert.ok(PASS.has(f.verdict), `${f.id}: ${f.verdict}`);
            // A DNS-name target resolves through the lab's resolver map, a CIDR target is probed at
            // its first usable address: every probe went to the target's lab address (a flow within
            // one host goes to its loopback).
            for (const r of f.results)
              if (f.from !== f.to)
                assert.ok(labAddress.get(f.to)?.includes(r.address), `${f.id} probed ${r.address}`);
          }
          const named = state.hosts.filter((h) => /[a-z]$/i.test(h.inventoryAddress)).map((h) => h.name);
          if (doc.flows.some((f) => named.includes(f.to)))
            assert.ok(
              doc.flows.some((f) => named.includes(f.to) && !f.failed),
              'a flow to a DNS-name host passed',
            );
          assert.ok(doc.unplanned.length > 0);
          const leaks = doc.unplanned.filter((u) => u.result !== 'blocked');
          assert.deepEqual(leaks, [], 'every sampled unplanned probe is blocked');
          assert.equal(v.code, doc.flows.some((f) => f.failed) ? 1 : 0);
          // Verify after the ablations restored every rule is fully green, and ablate took every
          // host that a probed flow goes to.
          assert.deepEqual(
            doc.flows.filter((f) => f.failed && !f.expectedFailure).map((f) => `${f.id}: ${f.verdict}`),
            [],
          );
          const ruled = new Set(ab.rules.map((r) => r.host));
          for (const f of doc.flows)
            if (!f.local) assert.ok(ruled.has(f.to), `no rule of ${f.to} was ablated (${f.id})`);
          for (const f of doc.flows)
            if (!f.failed && !f.local)
              assert.ok(
                ab.rules.some((r) => r.status === 'needed' && r.breaks.some((b) => b.id === f.id)),
                `no rule's removal broke ${f.id}`,
              );

          const b = await lab(['break', '--name', name, '--flow', spec], dir.env);
          assert.equal(b.code, 0, b.stderr);
          const after = await lab(
            ['verify', '--name', name, '--to', to as string, '--format', 'json'],
            dir.env,
          );
          assert.equal(after.code, 1);
          const broken = JSON.parse(after.stdout) as VerifyJson;
          const failing = broken.flows.filter(
            (f) => f.failed && !doc.flows.find((d) => d.id === f.id)?.failed,
          );
          assert.ok(failing.length > 0, `${spec} did not fail`);
          assert.deepEqual(
            failing.map((f) => f.id).sort(),
            broken.flows
              .filter(carrying)
              .map((f) => f.id)
              .sort(),
            'exactly the flows carrying the broken port fail',
          );
          for (const f of failing) {
            assert.equal(f.verdict, 'filtered', `${f.id}: a dropped TCP port reads filtered`);
            assert.match(f.expectedFailure ?? '', /lab break/);
          }
          assert.deepEqual(
            broken.unplanned.filter((u) => u.result !== 'blocked'),
            [],
          );
        } finally {
          const down = await lab(['down', '--name', name], dir.env);
          assert.equal(down.code, 0, down.stderr);
        }
        const present = namespaces();
        for (const ns of state.objects.netns) assert.ok(!present.has(ns), `namespace ${ns} left behind`);
        for (const d of state.objects.etcDirs) assert.ok(!existsSync(d), `${d} left behind`);
        for (const pid of state.objects.pids) assert.ok(!alive(pid), `responder ${pid} still runs`);
        assert.ok(!existsSync(`${dir.root}/${name}.json`));
        assert.deepEqual(snapshot(), before, 'root namespace links and nftables ruleset unchanged');
      });
    }
});
