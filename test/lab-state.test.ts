import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ExportModel, ExportRule } from '../src/export/model.js';
import type { Inventory } from '../src/inventory/types.js';
import { parseFlowSpec } from '../src/lab/break.js';
import { checkLabName, hostNamespace, hubNamespace, hubPort, IFNAME_MAX, labKey } from '../src/lab/names.js';
import { carve, firstUsable, labAddresses } from '../src/lab/site.js';
import { pick } from '../src/lab/verify.js';
import type { Address } from '../src/model/address.js';
import { BIN, ROOT } from './helpers.js';
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

const SITE = 'examples/platespin-legacy.yaml';

/**
 * The same site on IPv6 only: IP hosts, a /64 host (its first usable address) and a DNS-name host,
 * which the lab gives an address from 2001:2::/48 (the site has no IPv4 host) and puts in its
 * resolver map. The restart and moved-inventory tests below run on it, so every planned flow and
 * every sampled unplanned probe also crosses IPv6, with both firewalls.
 */
const SITE_V6 = `site: p2v-legacy
products:
  platespin: { version: "8.1.3" }
hosts:
  ps-server: { address: "2001:db8:50::10", roles: [platespin:platespin-server] }
  fileserver-old: { address: "2001:db8:60::21", roles: [platespin:source], facts: { os: windows, drives: [C, D, E] } }
  fileserver-new: { address: "2001:db8:70::/64", roles: [platespin:target], facts: { os: windows } }
  esx-legacy: { address: esx-legacy.corp.example, roles: [platespin:vmware-host], facts: { os: esx } }
`;

/** The verify report shows every flow passing over IPv6, names resolved through the lab's map. */
function assertV6(stdout: string): void {
  const doc = JSON.parse(stdout) as VerifyJson;
  assert.deepEqual(doc.errors, []);
  assert.ok(doc.flows.length >= 6);
  for (const f of doc.flows) {
    assert.match(f.verdict, /^ok/, `${f.id}: ${f.verdict}`);
    for (const r of f.results) assert.ok(r.address.includes(':'), `${f.id} probed ${r.address}`);
  }
  const toName = doc.flows.filter((f) => f.to === 'esx-legacy');
  assert.ok(toName.length > 0);
  for (const f of toName)
    assert.deepEqual(
      f.results.map((r) => r.address),
      ['2001:2::1'],
    );
  assert.ok(doc.flows.some((f) => f.to === 'fileserver-new' && f.results[0]?.address === '2001:db8:70::1'));
  assert.ok(doc.unplanned.length > 0);
  for (const u of doc.unplanned) assert.equal(u.result, 'blocked', JSON.stringify(u));
}

describe('lab: names, flow specs, sampling and carving', () => {
  it('every kernel name fits 15 bytes, and differs between state directories', () => {
    const a = labKey('/run/portolan/labs', 'a-very-long-lab-name-that-goes-on-and-on');
    const b = labKey('/tmp/other', 'a-very-long-lab-name-that-goes-on-and-on');
    assert.notEqual(a, b);
    for (const n of [
      hostNamespace(a, 'a-host-name-longer-than-fifteen-bytes'),
      hubNamespace(a),
      hubPort('x'.repeat(60)),
    ])
      assert.ok(Buffer.byteLength(n) <= IFNAME_MAX, n);
  });

  it('refuses a lab name that cannot be a file name', () => {
    assert.throws(() => checkLabName('../etc'), /is not a lab name/);
    assert.throws(() => checkLabName(''), /is not a lab name/);
    assert.equal(checkLabName('east-dc.1'), 'east-dc.1');
  });

  it('parses FROM->TO:PORT/PROTO and refuses the rest with what was expected', () => {
    assert.deepEqual(parseFlowSpec('proxy-01->esx-edge:443/tcp'), {
      from: 'proxy-01',
      to: 'esx-edge',
      port: 443,
      protocol: 'tcp',
    });
    assert.deepEqual(parseFlowSpec('a->b:123/UDP').protocol, 'udp');
    for (const bad of ['a->b:0/tcp', 'a->b:70000/tcp', 'a->b/tcp', 'a-b:1/tcp', 'a->b:1/icmp'])
      assert.throws(() => parseFlowSpec(bad), /is not FROM->TO:PORT\/PROTO/);
  });

  it('a DNS-name host gets an IPv4 benchmarking address, or an IPv6 one in an IPv6-only site', () => {
    const inv = (hosts: [string, Address][]) =>
      ({ hosts: hosts.map(([name, address]) => ({ name, address })) }) as unknown as Inventory;
    const v4 = labAddresses(
      inv([
        ['a', { kind: 'ip', text: '10.0.0.1', version: 4 }],
        ['b', { kind: 'ip', text: '2001:db8::1', version: 6 }],
        ['n', { kind: 'dns', text: 'n.example' }],
        ['m', { kind: 'dns', text: 'm.example' }],
      ]),
    );
    assert.deepEqual([v4.get('n')?.address, v4.get('m')?.address], ['198.18.0.1', '198.18.0.2']);
    const v6 = labAddresses(
      inv([
        ['a', { kind: 'cidr', text: '2001:db8::/64', version: 6, prefix: 64 }],
        ['n', { kind: 'dns', text: 'n.example' }],
        ['m', { kind: 'dns', text: 'm.example' }],
      ]),
    );
    assert.deepEqual(
      [v6.get('a')?.address, v6.get('n')?.address, v6.get('m')?.address],
      ['2001:db8::1', '2001:2::1', '2001:2::2'],
    );
  });

  it('the first usable address of a network', () => {
    assert.equal(firstUsable('10.10.1.0/28', 4, 28), '10.10.1.1');
    assert.equal(firstUsable('10.0.0.4/31', 4, 31), '10.0.0.4');
    assert.equal(firstUsable('2001:db8::/64', 6, 64), '2001:db8::1');
  });

  it('samples the same ports for the same seed, never outside the ranges', () => {
    const ranges: [number, number][] = [
      [100, 110],
      [5000, 5000],
      [60000, 60010],
    ];
    const a = pick(ranges, 3, 'seed');
    assert.deepEqual(a, pick(ranges, 3, 'seed'));
    assert.equal(new Set(a).size, 3);
    for (const p of a) assert.ok(ranges.some(([lo, hi]) => lo <= p && p <= hi));
    assert.deepEqual(pick([[1, 2]], 5, 's'), [1, 2]);
  });

  it('carving one flow out keeps its other ports and the port for every other source', () => {
    const rule: ExportRule = {
      id: 'in-tcp-1',
      direction: 'in',
      protocol: 'tcp',
      ports: [
        [3389, 3389],
        [3542, 3542],
      ],
      src: { v4: ['10.0.0.0/30'], v6: [], names: [], unspecified: [], hosts: ['a', 'b'] },
      dst: { v4: [], v6: [], names: [], unspecified: [], hosts: ['t'] },
      services: ['rdp'],
      flows: [],
    };
    const model = { rules: [rule] } as unknown as ExportModel;
    const out = carve(model, { from: 'a', protocol: 'tcp', port: 3542 }, ['10.0.0.1/32']);
    assert.equal(out.rules.length, 2);
    assert.deepEqual(out.rules[0]?.ports, [[3389, 3389]]);
    assert.deepEqual(out.rules[0]?.src.v4, ['10.0.0.0/30']);
    assert.deepEqual(out.rules[1]?.ports, [[3542, 3542]]);
    assert.ok(!(out.rules[1]?.src.v4 ?? []).some((c) => c === '10.0.0.1/32' || c === '10.0.0.0/30'));
    assert.deepEqual(out.rules[1]?.src.hosts, ['b']);
  });
});

describe('lab up: bad options are refused before anything is made', () => {
  it('a --ttl that is not a duration is exit 2 with one line, before the first namespace', () => {
    const labDir = mkdtempSync(join(tmpdir(), 'pl-ttl-'));
    after(() => rmSync(labDir, { recursive: true, force: true }));
    const r = spawnSync(
      process.execPath,
      [BIN, 'lab', 'up', SITE, '--name', 'never-made', '--ttl', 'bogus'],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, PORTOLAN_LAB_DIR: labDir },
      },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.deepEqual(readdirSync(labDir), [], 'no state written');
    assert.equal(r.stdout, '', 'no "lab up" line: nothing was started');
    assert.match(r.stderr, /^portolan: --ttl "bogus" is not a duration/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });
});

describe('lab: without root or CAP_NET_ADMIN', {
  skip: spawnSync('sh', ['-c', 'command -v setpriv']).status !== 0 ? 'needs setpriv' : skipLab,
}, () => {
  it('refuses with one line and exit 2', () => {
    const r = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--inh-caps=-all',
        process.execPath,
        BIN,
        'lab',
        'up',
        SITE,
      ],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, PORTOLAN_LAB_DIR: '/nonexistent' },
      },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /needs root or CAP_NET_ADMIN/);
  });
});

describe('lab: state, restarts and kills', { skip: skipLab }, () => {
  const dir = labDir();
  after(() => dir.cleanup());

  it('a lab started twice with the same name: the second is refused, the first is untouched', {
    timeout: 300_000,
  }, async () => {
    const name = dir.name('twice');
    const site = join(dir.root, 'p2v-v6.yaml');
    writeFileSync(site, SITE_V6);
    const first = await lab(['up', site, '--name', name, '-q'], dir.env);
    assert.equal(first.code, 0, first.stderr);
    const state = readLabState(dir.root, name);
    assert.deepEqual(
      state.hosts.map((h) => h.addresses),
      [['2001:db8:50::10'], ['2001:db8:60::21'], ['2001:db8:70::1'], ['2001:2::1']],
    );
    const second = await lab(['up', site, '--name', name, '-q'], dir.env);
    assert.equal(second.code, 2);
    assert.match(second.stderr, new RegExp(`lab ${name} already exists .*lab down --name ${name}`));
    assert.deepEqual(readLabState(dir.root, name), state, 'the state file is unchanged');
    const present = namespaces();
    for (const ns of state.objects.netns) assert.ok(present.has(ns));
    for (const pid of state.objects.pids) assert.ok(alive(pid), `responder ${pid} was killed`);
    const v = await lab(['verify', '--name', name, '--format', 'json'], dir.env);
    assert.equal(v.code, 0, v.stdout.slice(0, 2000));
    assertV6(v.stdout);
    assert.equal((await lab(['down', '--name', name], dir.env)).code, 0);
    const again = await lab(['down', '--name', name], dir.env);
    assert.equal(again.code, 0, 'down is idempotent');
    assert.match(again.stdout, /nothing to remove/);
  });

  it('an inventory given through a pipe is read once: the site and the lab copies come from it', {
    timeout: 300_000,
  }, () => {
    const name = dir.name('pipe');
    const r = spawnSync(
      'bash',
      ['-c', `"$0" "$1" lab up <(cat "$2") --name "$3" -q`, process.execPath, BIN, SITE, name],
      {
        cwd: ROOT,
        env: { ...process.env, NO_COLOR: '1', ...dir.env },
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const state = readLabState(dir.root, name);
    assert.deepEqual(
      state.hosts.map((h) => h.name),
      ['ps-server', 'fileserver-old', 'fileserver-new', 'esx-legacy'],
    );
    // The lab's own copy of the inventory is the piped text with lab addresses.
    const copy = readFileSync(join(state.dir, 'site.yaml'), 'utf8');
    assert.match(copy, /^site: p2v-legacy$/m);
    assert.match(copy, /fileserver-old:/);
    const down = spawnSync(process.execPath, [BIN, 'lab', 'down', '--name', name], {
      env: { ...process.env, ...dir.env },
      encoding: 'utf8',
    });
    assert.equal(down.status, 0, down.stderr);
  });

  // Each point: the state file already names the object, the object is not made yet.
  const POINTS = [
    'hub',
    'netns:fileserver-old',
    'etc:fileserver-old',
    'link:fileserver-new',
    'ruleset:esx-legacy',
    'responder:fileserver-old',
    'responder-pid:fileserver-new',
    'up',
  ];
  for (const point of POINTS)
    it(`down after kill -9 of up at ${point}`, { timeout: 300_000 }, async () => {
      const name = dir.name(`kill-${point.replace(/[^a-z]/g, '').slice(0, 12)}`);
      const before = snapshot();
      const r = await lab(['up', SITE, '--name', name, '-q'], { ...dir.env, PORTOLAN_LAB_KILL_AT: point });
      assert.equal(r.code, null, 'up was killed');
      const state = readLabState(dir.root, name);
      const down = await lab(['down', '--name', name], dir.env);
      assert.equal(down.code, 0, down.stderr);
      const present = namespaces();
      for (const ns of state.objects.netns) assert.ok(!present.has(ns), `${ns} left behind`);
      for (const d of state.objects.etcDirs) assert.ok(!existsSync(d), `${d} left behind`);
      for (const pid of state.objects.pids) assert.ok(!alive(pid), `responder ${pid} still runs`);
      for (const h of state.hosts) if (h.responder?.pid) assert.ok(!alive(h.responder.pid));
      assert.ok(!existsSync(join(dir.root, `${name}.json`)));
      assert.ok(!existsSync(join(dir.root, name)));
      assert.deepEqual(snapshot(), before);
    });

  it('down after kill -9 of up from outside, while it makes namespaces', { timeout: 300_000 }, async () => {
    const name = dir.name('killext');
    let pid = 0;
    const running = lab(['up', 'examples/mixed-site.yaml', '--name', name, '-q'], dir.env, {
      onSpawn: (p) => {
        pid = p;
      },
    });
    const file = join(dir.root, `${name}.json`);
    // Waits for the namespaces, however slowly a loaded machine makes them (the test's timeout is
    // the hang guard): killed too early, the state would not yet hold what this test is about.
    let ended = false;
    void running.then(() => {
      ended = true;
    });
    while (!ended && !(existsSync(file) && readLabState(dir.root, name).objects.netns.length >= 4))
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(!ended, 'lab up ended before it made four namespaces');
    process.kill(pid, 'SIGKILL');
    await running;
    const state = readLabState(dir.root, name);
    assert.ok(state.objects.netns.length >= 4);
    assert.equal((await lab(['down', '--name', name], dir.env)).code, 0);
    const present = namespaces();
    for (const ns of state.objects.netns) assert.ok(!present.has(ns), `${ns} left behind`);
    for (const d of state.objects.etcDirs) assert.ok(!existsSync(d));
  });

  it('down --all after the inventory file moved', { timeout: 300_000 }, async () => {
    const site = join(dir.root, 'site-src');
    mkdirSync(site, { recursive: true });
    const file = join(site, 'p2v.yaml');
    writeFileSync(file, SITE_V6);
    const names = [dir.name('moved-a'), dir.name('moved-b')];
    // moved-a runs the generated iptables rulesets (iptables-nft-restore and ip6tables-nft-restore).
    for (const [i, n] of names.entries()) {
      const up = await lab(
        ['up', file, '--name', n, '-q', ...(i === 0 ? ['--firewall', 'iptables'] : [])],
        dir.env,
      );
      assert.equal(up.code, 0, up.stderr);
    }
    const states = names.map((n) => readLabState(dir.root, n));
    renameSync(site, join(dir.root, 'site-elsewhere'));
    assert.ok(!existsSync(file));
    const v = await lab(['verify', '--name', names[0] as string, '--format', 'json'], dir.env);
    assert.equal(v.code, 0, 'verify works from the lab copy of the inventory');
    assertV6(v.stdout);
    const list = await lab(['list'], dir.env);
    for (const n of names) assert.match(list.stdout, new RegExp(`^${n}  site p2v-legacy  up`, 'm'));
    const down = await lab(['down', '--all'], dir.env);
    assert.equal(down.code, 0, down.stderr);
    const present = namespaces();
    for (const s of states) for (const ns of s.objects.netns) assert.ok(!present.has(ns));
    assert.match((await lab(['list'], dir.env)).stdout, /no labs/);
    rmSync(join(dir.root, 'site-elsewhere'), { recursive: true, force: true });
    assert.ok(readFileSync(join(ROOT, SITE), 'utf8').length > 0);
  });
});
