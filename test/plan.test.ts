import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Flow, Plan } from '../src/model/flow.js';
import { runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'portolan-plan-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function plan(yaml: string): Plan {
  const file = join(dir, `site-${n++}.yaml`);
  writeFileSync(file, yaml);
  const r = runCli(['plan', file, '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Plan;
}

function has(p: Plan, from: string | null, to: string | null, protocol: string, port?: number): Flow[] {
  return p.flows.filter(
    (f) =>
      f.from.host === from &&
      f.to.host === to &&
      f.protocol === protocol &&
      (port === undefined || f.ports.some(([lo, hi]) => port >= lo && port <= hi)),
  );
}

describe('plan contract', () => {
  it('prints the plan contract shape (docs/contracts.md) for every flow', () => {
    const p = plan(`site: s
products: { druva-vmware: {} }
hosts:
  proxy-01: { address: 10.10.0.21, roles: [druva-vmware:backup-proxy] }
  esx-a: { address: 10.10.1.0/28, roles: [druva-vmware:esxi], facts: { registration: standalone } }
`);
    assert.equal(p.site, 's');
    const [f] = has(p, 'proxy-01', 'esx-a', 'tcp', 443);
    assert.ok(f);
    assert.deepEqual(f.from, { host: 'proxy-01', role: 'backup-proxy', address: '10.10.0.21' });
    assert.deepEqual(f.to, { host: 'esx-a', role: 'esxi', address: '10.10.1.0/28' });
    assert.deepEqual(f.ports, [[443, 443]]);
    assert.equal(f.product, 'druva-vmware');
    assert.equal(f.service, 'https');
    assert.ok(f.purpose.length > 0);
    assert.ok(f.sources.some((s) => s.doc === '001_2091beaa97dc5a7a.txt'));
    assert.ok(Array.isArray(f.notes));
    assert.ok(Array.isArray(p.warnings));
  });
});

describe('druva-vmware', () => {
  const site = (registration: string, features = '[app-aware-sql, dr-restore]') => `site: d
products: { druva-vmware: { features: ${features} } }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  esx: { address: 10.0.1.1, roles: [druva-vmware:esxi], facts: { registration: ${registration} } }
  win: { address: 10.0.2.1, roles: [druva-vmware:guest], facts: { os: windows, databases: [mssql] } }
  lnx: { address: 10.0.2.2, roles: [druva-vmware:guest], facts: { os: linux } }
  ntp: { address: 10.0.3.1, roles: [druva-vmware:ntp-server] }
`;
  it('reaches a vCenter-registered ESXi host on 902 and not 443', () => {
    const p = plan(site('vcenter'));
    assert.equal(has(p, 'proxy', 'esx', 'tcp', 902).length, 1);
    assert.equal(has(p, 'proxy', 'esx', 'tcp', 443).length, 0);
    assert.equal(has(p, 'proxy', 'esx', 'udp').length, 0, '902 is TCP only');
  });
  it('reaches a standalone ESXi host on 443 and not 902', () => {
    const p = plan(site('standalone'));
    assert.equal(has(p, 'proxy', 'esx', 'tcp', 443).length, 1);
    assert.equal(has(p, 'proxy', 'esx', 'tcp', 902).length, 0);
  });
  it('takes vCenter registration as the default, with a warning', () => {
    const p = plan(site('vcenter').replace(', facts: { registration: vcenter }', ''));
    assert.equal(has(p, 'proxy', 'esx', 'tcp', 902).length, 1);
    assert.ok(p.warnings.some((w) => w.code === 'fact-default' && w.host === 'esx'));
  });
  it('sends 3389 only to Windows guests and 22 only to Linux guests', () => {
    const p = plan(site('vcenter'));
    assert.equal(has(p, 'proxy', 'win', 'tcp', 3389).length, 1);
    assert.equal(has(p, 'proxy', 'lnx', 'tcp', 3389).length, 0);
    assert.equal(has(p, 'proxy', 'lnx', 'tcp', 22).length, 1);
    assert.equal(has(p, 'proxy', 'win', 'tcp', 22).length, 0);
  });
  it('opens 3542 and the local 3545 only for application-aware SQL on Windows', () => {
    const p = plan(site('vcenter'));
    assert.equal(has(p, 'proxy', 'win', 'tcp', 3542).length, 1);
    assert.equal(has(p, 'proxy', 'lnx', 'tcp', 3542).length, 0);
    const local = has(p, 'win', 'win', 'tcp', 3545);
    assert.equal(local.length, 1);
    assert.equal(local[0]?.local, true);
    const none = plan(site('vcenter', '[]'));
    assert.equal(has(none, 'proxy', 'win', 'tcp', 3542).length, 0);
    assert.equal(has(none, 'proxy', 'win', 'tcp', 3389).length, 0, 'RDP check is for DR restores');
  });
  it('uses UDP 123 to the NTP server and keeps the unspecified incoming peers', () => {
    const p = plan(site('vcenter'));
    assert.equal(has(p, 'proxy', 'ntp', 'udp', 123).length, 1);
    assert.equal(has(p, 'proxy', 'ntp', 'tcp').length, 0);
    const incoming = p.flows.filter((f) => f.from.host === null && f.to.host === 'proxy');
    assert.deepEqual(incoming.map((f) => f.ports).sort(), [[[2049, 2049]], [[22, 22]]]);
  });
  it('prints Japanese purposes with --lang ja', () => {
    const file = join(dir, 'ja.yaml');
    writeFileSync(file, site('vcenter'));
    const r = runCli(['plan', file, '--format', 'json', '--lang', 'ja']);
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout) as Plan;
    assert.match(has(p, 'proxy', 'esx', 'tcp', 902)[0]?.purpose ?? '', /[\u3040-\u30ff]/);
  });
});

describe('platespin', () => {
  const site = (version: string, extra = '') => `site: p
products: { platespin: { version: "${version}"${extra} } }
hosts:
  server: { address: 10.0.0.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.1.1, roles: [platespin:source], facts: { os: windows, drives: [C, D] } }
  tgt: { address: 10.0.2.1, roles: [platespin:target] }
`;
  it('uses 443 for conversion only from 11.x', () => {
    assert.equal(has(plan(site('11.0')), 'src', 'server', 'tcp', 443).length, 1);
    assert.equal(has(plan(site('2019.5')), 'tgt', 'server', 'tcp', 443).length, 1);
    assert.equal(has(plan(site('10.2')), 'src', 'server', 'tcp', 443).length, 0);
    assert.equal(has(plan(site('10.2')), 'src', 'server', 'tcp', 80).length, 1);
  });
  it('opens per-drive ports only for legacy versions and only for the drives the source has', () => {
    const legacy = plan(site('8.1.3'));
    const mirror = legacy.flows.filter(
      (f) => f.from.host === 'src' && f.to.host === 'tgt' && f.service === 'platespin-drive-mirror',
    );
    assert.equal(mirror.length, 1);
    assert.deepEqual(mirror[0]?.ports, [[10002, 10003]]);
    assert.equal(has(legacy, 'src', 'tgt', 'tcp', 10004).length, 0);
    assert.equal(has(legacy, 'src', 'tgt', 'tcp', 9999).length, 1);
    assert.equal(has(legacy, 'src', 'tgt', 'icmp').length, 1);
    assert.equal(has(legacy, 'tgt', 'src', 'icmp').length, 1);
    const modern = plan(site('2019.5'));
    assert.equal(modern.flows.filter((f) => f.service === 'platespin-drive-mirror').length, 0);
    assert.equal(has(modern, 'src', 'tgt', 'tcp', 9999).length, 0);
    assert.equal(has(modern, 'src', 'tgt', 'icmp').length, 0);
  });
  it('treats Forge 2.5 as legacy and Forge 3 as not', () => {
    assert.equal(has(plan(site('2.5', ', edition: forge')), 'src', 'tgt', 'tcp', 9999).length, 1);
    assert.equal(has(plan(site('3.0', ', edition: forge')), 'src', 'tgt', 'tcp', 9999).length, 0);
  });
  it('merges SMB ports into one flow per protocol with both sources kept', () => {
    const p = plan(site('2019.5'));
    const tcp = p.flows.filter(
      (f) => f.from.host === 'server' && f.to.host === 'src' && f.protocol === 'tcp',
    );
    const ports = tcp.flatMap((f) => f.ports.map(([lo, hi]) => `${lo}-${hi}`));
    for (const port of ['135-135', '139-139', '445-445']) assert.ok(ports.includes(port), port);
    const smb = tcp.find((f) => f.service === 'smb');
    assert.ok((smb?.sources.length ?? 0) >= 2, 'the 445 flow cites both rows that need it');
    assert.equal(has(p, 'server', 'src', 'udp', 137).length, 1);
  });
});

describe('veeam-proxmox', () => {
  const site = (lss: boolean) => `site: v
products: { veeam-proxmox: { features: [app-aware, log-shipping] } }
hosts:
  vbr: { address: 10.0.0.1, roles: [veeam-proxmox:backup-server, veeam-proxmox:guest-interaction-proxy] }
  repo: { address: 10.0.0.2, roles: [veeam-proxmox:repository] }
  sql: { address: 10.0.1.1, roles: [veeam-proxmox:guest], facts: { os: windows, databases: [mssql] } }
  plain: { address: 10.0.1.2, roles: [veeam-proxmox:guest], facts: { os: windows } }
${lss ? '  lss: { address: 10.0.0.3, roles: [veeam-proxmox:log-shipping-server] }\n' : ''}`;
  it('lets MS SQL guests reach the repository directly only without a log shipping server', () => {
    assert.equal(has(plan(site(false)), 'sql', 'repo', 'tcp', 2500).length, 1);
    const withLss = plan(site(true));
    assert.equal(has(withLss, 'sql', 'repo', 'tcp', 2500).length, 0);
    assert.equal(has(withLss, 'sql', 'lss', 'tcp', 2500).length, 1);
    assert.equal(has(withLss, 'lss', 'repo', 'tcp', 2500).length, 1);
  });
  it('gives log-shipping ports only to guests with that database', () => {
    const p = plan(site(false));
    assert.equal(has(p, 'vbr', 'sql', 'tcp', 6167).length, 1);
    assert.equal(has(p, 'vbr', 'plain', 'tcp', 6167).length, 0);
    assert.equal(has(p, 'plain', 'repo', 'tcp').length, 0);
  });
  it('keeps the backup server database flow local', () => {
    const p = plan(site(false));
    const local = has(p, 'vbr', 'vbr', 'tcp', 6172);
    assert.equal(local.length, 1);
    assert.equal(local[0]?.local, true);
  });
});

describe('plan output', () => {
  it('prints a summary line and warnings for roles without hosts and hosts without flows', () => {
    const file = join(dir, 'summary.yaml');
    writeFileSync(
      file,
      `site: sum
products: { druva-vmware: {} }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  lonely: { address: 10.0.0.9, roles: [druva-vmware:guest] }
`,
    );
    const r = runCli(['plan', file, '--format', 'table']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sum: 2 hosts, \d+ flows \(0 local\), \d+ rules, \d+ warnings$/m);
    assert.match(r.stdout, /warning: no host has role druva-vmware:esxi/);
    assert.match(r.stdout, /warning: host lonely has no flows/);
    assert.doesNotMatch(r.stdout, /\u001b\[/, 'NO_COLOR is respected');
  });
  it('colours the table only when asked and allowed', () => {
    const r = runCli(['plan', 'examples/druva-vmware.yaml', '--format', 'table'], {
      env: { NO_COLOR: '', FORCE_COLOR: '1' },
    });
    assert.match(r.stdout, /\u001b\[1m/);
  });
  it('quotes CSV fields and defuses formula cells', () => {
    const r = runCli(['plan', 'examples/mixed-site.yaml', '--format', 'csv']);
    assert.equal(r.code, 0, r.stderr);
    const [header] = r.stdout.split('\r\n');
    assert.equal(
      header,
      'product,from,from_address,to,to_address,protocol,ports,service,purpose,sources,notes',
    );
  });
});

describe('custom catalogs', () => {
  it('plans a product from a --catalog directory and from the inventory catalogs key', () => {
    const cat = join(dir, 'mycat');
    mkdirSync(cat);
    writeFileSync(
      join(cat, 'acme.yaml'),
      `product: acme-backup
title: Acme Backup
documents: [{ file: acme-ports.pdf, title: Acme ports }]
roles: { server: { title: Server }, agent: { title: Agent } }
entries:
  - id: agent-to-server
    from: agent
    to: server
    protocol: tcp
    ports: [7000, "7100-7110"]
    service: acme-data
    purpose: Agents send backup data to the server.
    sources: [{ doc: acme-ports.pdf, table: ports, row: 1 }]
`,
    );
    const site = `site: acme
products: { acme-backup: {} }
hosts:
  srv: { address: 10.1.0.1, roles: [acme-backup:server] }
  a1: { address: 10.1.0.2, roles: [acme-backup:agent] }
`;
    const file = join(dir, 'acme-site.yaml');
    writeFileSync(file, site);
    const r = runCli(['plan', file, '--format', 'json', '--catalog', cat]);
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout) as Plan;
    assert.deepEqual(p.flows[0]?.ports, [
      [7000, 7000],
      [7100, 7110],
    ]);
    writeFileSync(file, `catalogs: [mycat]\n${site}`);
    assert.equal(runCli(['plan', file, '--format', 'json']).code, 0);
    const without = runCli(['plan', join(dir, 'acme-site-2.yaml')]);
    assert.equal(without.code, 2);
  });
});

describe('one-host export warnings', () => {
  // A site with gaps elsewhere: a role without hosts (cloudcache), a product-wide catalog warning
  // (druva-cloud), a host left without a fact (esx-b, vm-landing), a host inside another's CIDR.
  const site = `site: s
products:
  druva-vmware: { features: [app-aware-sql] }
  platespin: { version: "2019.5" }
hosts:
  proxy-01: { address: 10.10.0.21, roles: [druva-vmware:backup-proxy] }
  druva-cloud: { address: phoenix.druva.com, roles: [druva-vmware:druva-cloud] }
  esx-b: { address: 10.10.2.0/28, roles: [druva-vmware:esxi] }
  esx-b1: { address: 10.10.2.1, roles: [druva-vmware:esxi], facts: { registration: vcenter } }
  ps-01: { address: 10.50.0.10, roles: [platespin:platespin-server] }
  phys-01: { address: 10.60.0.21, roles: [platespin:source], facts: { os: windows, drives: [C] } }
  vm-landing: { address: 10.10.3.0/24, roles: [platespin:target] }
`;
  it('prints only the warnings about the exported host, and the whole-site ones without --host', () => {
    const file = join(dir, 'one-host.yaml');
    writeFileSync(file, site);
    const all = runCli(['export', file, '--to', 'csv', '--network']);
    assert.equal(all.code, 0, all.stderr);
    for (const re of [
      /role druva-vmware:cloudcache/,
      /esx-b\b.*registration/,
      /lies inside the CIDR/,
      /vm-landing/,
    ])
      assert.match(all.stderr, re);
    const one = runCli(['export', file, '--to', 'windows', '--host', 'phys-01']);
    assert.equal(one.code, 0, one.stderr);
    const lines = one.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    assert.ok(lines.length > 0, one.stderr);
    for (const l of lines) assert.match(l, /phys-01/, l);
  });
});
