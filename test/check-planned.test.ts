import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BIN } from './helpers.js';

/**
 * `check`'s "N probes planned" line counts what is probed: a DNS name's addresses that this
 * machine has no route to are left out before the count (engine.ts withoutUnroutable). Runs in a
 * scratch network and mount namespace (unshare -n -m, root): an IPv4-only veth, and an /etc/hosts
 * bound over the namespace's own view that gives the name one IPv4 and one IPv6 address.
 */
const skip =
  process.getuid?.() !== 0
    ? 'needs root (unshare -n -m)'
    : spawnSync('sh', ['-c', 'command -v unshare && command -v ip']).status !== 0
      ? 'needs unshare and ip'
      : false;

describe('check: the planned count is what is probed', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-planned-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("a name's unroutable address is not counted in the probes planned", () => {
    writeFileSync(
      join(dir, 'lab.yaml'),
      [
        'product: lab',
        'title: lab',
        'documents: [{ file: lab.txt, title: The lab ports }]',
        'roles: { client: { title: client }, server: { title: server } }',
        'entries:',
        '  - { id: ssh, from: client, to: server, protocol: tcp, ports: [22], service: ssh, purpose: lab, sources: [{ doc: lab.txt, table: lab, row: 1 }] }',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'site.yaml'),
      [
        'site: planned',
        'catalogs: [lab.yaml]',
        'products: { lab: {} }',
        'hosts:',
        '  cli:  { address: 10.213.99.1, roles: [lab:client] }',
        '  dual: { address: dual.test, roles: [lab:server] }',
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n10.213.99.2 dual.test\n2001:db8::2 dual.test\n');
    const script = [
      'mount --bind hosts /etc/hosts',
      'ip link set lo up',
      'ip link add p0 type veth peer name p1',
      'ip addr add 10.213.99.1/24 dev p0',
      'ip link set p0 up',
      'ip link set p1 up',
      `"${process.execPath}" "${BIN}" check site.yaml --from cli --timeout 300 --format json`,
    ].join(' && ');
    const r = spawnSync('unshare', ['-n', '-m', 'sh', '-c', script], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
      timeout: 60_000,
    });
    assert.equal(r.status, 1, r.stderr);
    const doc = JSON.parse(r.stdout) as { flows: { reason: string; results: { address: string }[] }[] };
    const flow = doc.flows[0];
    assert.match(flow?.reason ?? '', /2001:db8::2 left out: this machine has no route to it/);
    assert.deepEqual(
      flow?.results.map((x) => x.address),
      ['10.213.99.2'],
    );
    assert.match(r.stderr, /^portolan check: 1 flow, 1 address, 1 probe planned \(limit \d+\)$/m);
  });
});
