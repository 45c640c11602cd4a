import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Flow, Plan } from '../src/model/flow.js';
import { planTable } from '../src/plan/format.js';
import { displayWidth, truncateToWidth } from '../src/util/width.js';
import { type CliResult, runCli } from './helpers.js';

/**
 * The conditions and directions of issue "Catalog truth": every condition is asserted on both
 * sides, the flows it requires and the flows it rules out, per product.
 */
const dir = mkdtempSync(join(tmpdir(), 'portolan-truth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function site(yaml: string): string {
  const file = join(dir, `site-${n++}.yaml`);
  writeFileSync(file, yaml);
  return file;
}
function run(yaml: string, ...args: string[]): CliResult {
  return runCli(['plan', site(yaml), '--format', 'json', ...args]);
}
function plan(yaml: string, ...args: string[]): Plan {
  const r = run(yaml, ...args);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Plan;
}
function flows(p: Plan, from: string | null, to: string | null, protocol: string, port?: number): Flow[] {
  return p.flows.filter(
    (f) =>
      f.from.host === from &&
      f.to.host === to &&
      f.protocol === protocol &&
      (port === undefined || f.ports.some(([lo, hi]) => port >= lo && port <= hi)),
  );
}
const count = (p: Plan, from: string | null, to: string | null, protocol: string, port?: number) =>
  flows(p, from, to, protocol, port).length;
const warned = (p: Plan, re: RegExp) => p.warnings.some((w) => re.test(w.message));

describe('platespin: 3725 replication direction', () => {
  const ps = (settings: string, srcFacts = '') => `site: p
products: { platespin: { version: "2019.5"${settings} } }
hosts:
  server: { address: 10.0.0.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.1.1, roles: [platespin:source], facts: { os: windows${srcFacts} } }
  src2: { address: 10.0.1.2, roles: [platespin:source], facts: { os: linux } }
  tgt: { address: 10.0.2.1, roles: [platespin:target] }
`;
  it('lets the target contact the source by default (SourceListensForConnection = True)', () => {
    const p = plan(ps(''));
    assert.equal(count(p, 'tgt', 'src', 'tcp', 3725), 1);
    assert.equal(count(p, 'tgt', 'src2', 'tcp', 3725), 1);
    assert.equal(count(p, 'src', 'tgt', 'tcp', 3725), 0, 'not the reverse');
  });
  it('lets the source contact the target with the setting source-to-target', () => {
    const p = plan(ps(', replication-direction: source-to-target'));
    assert.equal(count(p, 'src', 'tgt', 'tcp', 3725), 1);
    assert.equal(count(p, 'tgt', 'src', 'tcp', 3725), 0);
  });
  it('takes a source fact over the setting, for that source only', () => {
    const p = plan(ps('', ', replication-direction: source-to-target'));
    assert.equal(count(p, 'src', 'tgt', 'tcp', 3725), 1, 'src overrides');
    assert.equal(count(p, 'tgt', 'src', 'tcp', 3725), 0);
    assert.equal(count(p, 'tgt', 'src2', 'tcp', 3725), 1, 'src2 keeps the setting');
    const back = plan(
      ps(', replication-direction: source-to-target', ', replication-direction: target-to-source'),
    );
    assert.equal(count(back, 'tgt', 'src', 'tcp', 3725), 1);
    assert.equal(count(back, 'src2', 'tgt', 'tcp', 3725), 1);
  });
  it("opens 3725 inbound on the source in the source's own host firewall", () => {
    const r = runCli(['export', site(ps('')), '--to', 'nftables', '--host', 'src']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tcp dport 3725/);
    const t = runCli(['export', site(ps('')), '--to', 'nftables', '--host', 'tgt']);
    assert.doesNotMatch(
      t.stdout.split('chain output')[0] ?? '',
      /tcp dport 3725/,
      'the target does not listen',
    );
  });
  it('refuses a direction that is not one of the two', () => {
    const r = run(ps(', replication-direction: both'));
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /"both" is not allowed for replication-direction \(expected one of: target-to-source, source-to-target\)/,
    );
  });
});

describe('platespin: legacy block-based rows are Windows-only', () => {
  const legacy = (os: string, drives = '[C, D]') => `site: p
products: { platespin: { version: "8.1.3" } }
hosts:
  server: { address: 10.0.0.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.1.1, roles: [platespin:source], facts: { ${os ? `os: ${os}, ` : ''}drives: ${drives} } }
  tgt: { address: 10.0.2.1, roles: [platespin:target] }
`;
  it('plans 9999, named pipes, per-drive ports and ping for a Windows source', () => {
    const p = plan(legacy('windows'));
    for (const port of [9999, 139, 445, 10002, 10003])
      assert.equal(count(p, 'src', 'tgt', 'tcp', port), 1, `${port}`);
    // 003's "137-139/445 TCP": the NetBIOS name and datagram services are UDP (as its own
    // conversion row writes them); TCP 137-138 would be checked closed on every Windows target.
    for (const port of [137, 138]) {
      assert.equal(count(p, 'src', 'tgt', 'udp', port), 1, `udp ${port}`);
      assert.equal(count(p, 'src', 'tgt', 'tcp', port), 0, `no tcp ${port}`);
    }
    assert.equal(count(p, 'src', 'tgt', 'icmp'), 1);
    assert.equal(count(p, 'tgt', 'src', 'icmp'), 1);
  });
  for (const os of ['linux', 'xenserver', 'esx']) {
    it(`plans none of them for a ${os} source and does not ask it for drives`, () => {
      const p = plan(legacy(os, '[]'));
      assert.equal(count(p, 'src', 'tgt', 'tcp'), 0);
      assert.equal(count(p, 'src', 'tgt', 'icmp'), 0);
      assert.equal(count(p, 'tgt', 'src', 'icmp'), 0);
      assert.ok(!p.warnings.some((w) => w.code === 'fact-missing'), 'no "does not list its drives"');
    });
  }
  it('plans none of them for a source without os, with a warning naming the fact', () => {
    const p = plan(legacy(''));
    assert.equal(count(p, 'src', 'tgt', 'tcp', 9999), 0);
    assert.equal(count(p, 'src', 'tgt', 'icmp'), 0);
    assert.ok(warned(p, /legacy-source-to-target-block-handshake \(src -> tgt\) skipped: .*from\.facts\.os/));
  });
});

describe('platespin: versions with builds, editions and drive letters', () => {
  const ps = (product: string, drives = '[C]') => `site: p
products: { platespin: ${product} }
hosts:
  server: { address: 10.0.0.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.1.1, roles: [platespin:source], facts: { os: windows, drives: ${drives} } }
  tgt: { address: 10.0.2.1, roles: [platespin:target] }
`;
  it('takes a build number as its release: 8.1.3.270 is legacy, 11.0.0.270 is 11', () => {
    const legacy = plan(ps('{ version: "8.1.3.270" }'));
    assert.equal(count(legacy, 'src', 'tgt', 'tcp', 9999), 1);
    assert.equal(count(legacy, 'src', 'server', 'tcp', 443), 0);
    const modern = plan(ps('{ version: "11.0.0.270" }'));
    assert.equal(count(modern, 'src', 'tgt', 'tcp', 9999), 0);
    assert.equal(count(modern, 'src', 'server', 'tcp', 443), 1);
    assert.equal(
      count(plan(ps('{ version: "8.1.4" }')), 'src', 'tgt', 'tcp', 9999),
      0,
      '8.1.4 is past 8.1.3',
    );
  });
  it('takes Forge 2.5.x as 2.5 (legacy) and Forge 3.0 as modern', () => {
    assert.equal(count(plan(ps('{ version: "2.5.x", edition: forge }')), 'src', 'tgt', 'tcp', 9999), 1);
    assert.equal(count(plan(ps('{ version: "2.5.1", edition: forge }')), 'src', 'tgt', 'tcp', 9999), 1);
    assert.equal(count(plan(ps('{ version: "3.0", edition: forge }')), 'src', 'tgt', 'tcp', 9999), 0);
  });
  it('refuses an edition the version never belonged to, instead of a silent modern plan', () => {
    const forge = run(ps('{ version: "8.1.3", edition: forge }'));
    assert.equal(forge.code, 2);
    assert.match(
      forge.stderr,
      /products\.platespin\.version: platespin edition "forge" never had version "8\.1\.3" \(expected a forge version: 4\.x or earlier, 11 or later\)/,
    );
    // The catalog listing says the ranges in the same words ("...-4" read as text left out).
    const listing = runCli(['catalog', 'platespin']);
    assert.match(listing.stdout, /^ {4}forge versions: 4\.x or earlier, 11 or later$/m);
    assert.match(listing.stdout, /^ {4}migrate versions: 6 or later$/m);
    assert.doesNotMatch(forge.stderr, /\n\s+at /, 'no stack trace');
    const migrate = run(ps('{ version: "2.5" }'));
    assert.equal(migrate.code, 2);
    assert.match(migrate.stderr, /edition defaults to migrate, give edition if this is another one/);
    assert.equal(run(ps('{ version: "11.3", edition: forge }')).code, 0, 'Forge 11.x exists');
  });
  it('accepts drive letters A to Z (10000-10025) and refuses others', () => {
    const p = plan(ps('{ version: "8.1.3" }', '[A, Y, Z]'));
    const mirror = p.flows.find((f) => f.service === 'platespin-drive-mirror');
    assert.deepEqual(mirror?.ports, [
      [10000, 10000],
      [10024, 10025],
    ]);
    assert.equal(count(p, 'src', 'tgt', 'tcp', 10026), 0);
    const bad = run(ps('{ version: "8.1.3" }', '[C, "1"]'));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"1" is not allowed for platespin:source \(expected one of: A, B, .*, Y, Z\)/);
    const notes =
      runCli(['catalog', 'platespin']).stdout.split('legacy-source-to-target-drive-mirror:')[1] ?? '';
    assert.match(notes, /"10000-100025"/, 'the document defect stays visible');
    assert.match(notes, /10000-10025, the range covers A to Z/, 'the reading taken');
    assert.match(notes, /"A to X" stops at 10023/, 'the other reading');
  });
  it('shows each setting with its description and examples', () => {
    const r = runCli(['catalog', 'platespin']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /replication-direction\s+string \(target-to-source\|source-to-target\), default target-to-source/,
    );
    assert.match(r.stdout, /SourceListensForConnection/);
    assert.match(r.stdout, /examples: 2019\.5, 11\.0, 11\.0\.0\.270, 8\.1\.3, 8\.1\.3\.270/);
    assert.match(r.stdout, /forge versions: 4\.x or earlier, 11 or later/);
  });
  it('cites the version ranges of each edition, and marks the uncited ones as the catalog assumption', () => {
    const json = JSON.parse(runCli(['catalog', 'platespin', '--format', 'json']).stdout) as {
      settings: Record<string, { sources?: { url?: string; doc?: string }[]; notes?: string[] }>;
    };
    const edition = json.settings.edition;
    const urls = (edition?.sources ?? []).map((s) => s.url ?? s.doc);
    assert.ok(
      urls.includes(
        'http://www.novell.com/documentation/platespin_forge_25/forge_getstart/data/bltx8cn.html',
      ),
    );
    assert.ok(
      urls.includes('https://www.netiq.com/documentation/platespin-forge-11/forge_user/data/bu5wtku.html'),
    );
    assert.ok(
      urls.includes('https://www.netiq.com/documentation/platespin_migrate_9/user/data/bu7yfcs.html'),
    );
    assert.ok(urls.includes('003_a7e0e83404719d03.txt'), 'the legacy cut-off is the document');
    const notes = (edition?.notes ?? []).join('\n');
    assert.match(
      notes,
      /portolan's assumption, no vendor page found: .*Migrate and Protect numbering starts at 6/,
    );
    assert.match(notes, /whole\s+range of Protect, for which no page was found/);
    assert.match(json.settings.version?.notes?.join('\n') ?? '', /build number .* is portolan's reading/);
    const text = runCli(['catalog', 'platespin']).stdout;
    const settings = text.split(/^Settings$/m)[1]?.split(/^Host facts$/m)[0] ?? '';
    assert.match(
      settings,
      /^ {4}source: 003_a7e0e83404719d03\.txt block-based row 1 \(heading: [^)]+\); PlateSpin Forge 2\.5 Getting Started Guide/m,
    );
    assert.match(settings, /^ {4}note: portolan's assumption/m);
  });
  it('refuses a setting source that names a document the catalog does not list', () => {
    const d = mkdtempSync(join(dir, 'cat-'));
    writeFileSync(
      join(d, 'acme.yaml'),
      `product: acme
title: Acme
documents: [{ file: acme.pdf, title: Acme ports }]
roles: { server: { title: Server } }
settings:
  version: { type: version, sources: [{ doc: other.pdf, table: t, row: 1 }] }
entries:
  - { id: s, from: server, to: server, protocol: tcp, ports: [7], service: echo, purpose: Echo., sources: [{ doc: acme.pdf, table: t, row: 1 }] }
`,
    );
    const r = run(
      'site: a\nproducts: { acme: {} }\nhosts:\n  s: { address: 10.0.0.1, roles: [acme:server] }\n',
      '--catalog',
      d,
    );
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /acme\.yaml:6:\d+ settings\.version\.sources\[0\]: source document "other\.pdf" is not listed under documents/,
    );
  });
});

describe('platespin: discovery of targets and VMware hosts', () => {
  const ps = (tgtOs: string, hostOs: string) => `site: p
products: { platespin: { version: "2019.5" } }
hosts:
  server: { address: 10.0.0.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.1.1, roles: [platespin:source], facts: { os: windows } }
  tgt: { address: 10.0.2.1, roles: [platespin:target], facts: { os: ${tgtOs} } }
  vh: { address: 10.0.3.1, roles: [platespin:vmware-host], facts: { os: ${hostOs} } }
`;
  it('reaches a XenServer or ESX 2.5/3.0 target and an ESX 2.5/3.0 host over SSH', () => {
    for (const os of ['xenserver', 'esx', 'linux']) {
      const p = plan(ps(os, 'esx'));
      assert.equal(count(p, 'server', 'tgt', 'tcp', 22), 1, os);
      assert.equal(count(p, 'server', 'tgt', 'tcp', 135), 0, os);
    }
    const p = plan(ps('esx', 'esx'));
    assert.equal(count(p, 'server', 'vh', 'tcp', 22), 1);
    assert.equal(count(p, 'server', 'vh', 'tcp', 443), 1);
  });
  it('needs no SSH for ESX 3.5, 4 or ESXi (os esxi), only 443 to the host', () => {
    const p = plan(ps('esxi', 'esxi'));
    assert.equal(count(p, 'server', 'tgt', 'tcp', 22), 0);
    assert.equal(count(p, 'server', 'vh', 'tcp', 22), 0);
    assert.equal(count(p, 'server', 'vh', 'tcp', 443), 1);
    assert.equal(count(p, 'server', 'tgt', 'tcp', 443), 1, 'an ESXi target: the VI3 web services');
  });
  it('reaches ESX/ESXi sources and targets on the VI3 web services (443), and no other OS', () => {
    for (const os of ['esx', 'esxi']) {
      const p = plan(ps(os, 'esxi').replace('facts: { os: windows }', `facts: { os: ${os} }`));
      assert.equal(count(p, 'server', 'tgt', 'tcp', 443), 1, os);
      assert.equal(count(p, 'server', 'src', 'tcp', 443), 1, os);
    }
    for (const os of ['windows', 'linux', 'xenserver']) {
      const p = plan(ps(os, 'esxi').replace('facts: { os: windows }', `facts: { os: ${os} }`));
      assert.equal(count(p, 'server', 'tgt', 'tcp', 443), 0, os);
      assert.equal(count(p, 'server', 'src', 'tcp', 443), 0, os);
    }
  });
  it('discovers a Windows target through WMI (135, 445) and not SSH', () => {
    const p = plan(ps('windows', 'esxi'));
    assert.equal(count(p, 'server', 'tgt', 'tcp', 135), 1);
    assert.equal(count(p, 'server', 'tgt', 'tcp', 445), 1);
    assert.equal(count(p, 'server', 'tgt', 'tcp', 22), 0);
  });
});

describe('platespin and druva: a fact shared by two products', () => {
  it('names the product and role whose fact refused the value, with its own list', () => {
    const r = run(`site: x
products: { platespin: {}, druva-vmware: {} }
hosts:
  xs: { address: 10.0.0.5, roles: [platespin:source, druva-vmware:guest], facts: { os: xenserver } }
`);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /hosts\.xs\.facts\.os: "xenserver" is not allowed for druva-vmware:guest \(expected one of: windows, linux\)$/m,
    );
  });
  it('accepts a value both products allow', () => {
    const p = plan(`site: x
products: { platespin: {}, druva-vmware: {} }
hosts:
  w: { address: 10.0.0.5, roles: [platespin:source, druva-vmware:guest], facts: { os: windows } }
`);
    assert.ok(Array.isArray(p.flows));
  });
});

describe('druva-vmware: 3542 and 3545 only for SQL Server guests', () => {
  const dv = (features: string) => `site: d
products: { druva-vmware: { features: ${features} } }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  sql: { address: 10.0.2.1, roles: [druva-vmware:guest], facts: { os: windows, databases: [mssql] } }
  web: { address: 10.0.2.2, roles: [druva-vmware:guest], facts: { os: windows } }
  none: { address: 10.0.2.3, roles: [druva-vmware:guest], facts: { os: windows, databases: [] } }
  lnx: { address: 10.0.2.4, roles: [druva-vmware:guest], facts: { os: linux } }
`;
  it('plans 3542 and the local 3545 for a Windows guest with mssql', () => {
    const p = plan(dv('[app-aware-sql]'));
    assert.equal(count(p, 'proxy', 'sql', 'tcp', 3542), 1);
    assert.equal(count(p, 'sql', 'sql', 'tcp', 3545), 1);
  });
  it('plans neither for Windows guests without mssql, and asks which guests run SQL Server', () => {
    const p = plan(dv('[app-aware-sql]'));
    for (const g of ['web', 'none', 'lnx']) {
      assert.equal(count(p, 'proxy', g, 'tcp', 3542), 0, g);
      assert.equal(count(p, g, g, 'tcp', 3545), 0, g);
    }
    const asks = p.warnings.filter((w) => w.code === 'sql-guests-unknown').map((w) => w.host);
    assert.deepEqual(asks, ['web'], 'only the Windows guest that does not give its databases');
    assert.ok(
      warned(p, /guest web runs Windows but does not give its databases.*Which guests run SQL Server\?/),
    );
  });
  it('does not ask without app-aware-sql', () => {
    const p = plan(dv('[]'));
    assert.equal(count(p, 'proxy', 'sql', 'tcp', 3542), 0);
    assert.ok(!p.warnings.some((w) => w.code === 'sql-guests-unknown'));
  });
  it('refuses a database Druva does not back up application-aware', () => {
    const r = run(dv('[app-aware-sql]').replace('databases: []', 'databases: [oracle]'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /"oracle" is not allowed for druva-vmware:guest \(expected one of: mssql\)/);
  });
});

describe('veeam-proxmox: log shipping rows by databases and OS', () => {
  const vm = (features = '[app-aware, log-shipping]') => `site: v
products: { veeam-proxmox: { features: ${features} } }
hosts:
  vbr: { address: 10.0.0.1, roles: [veeam-proxmox:backup-server] }
  gip: { address: 10.0.0.2, roles: [veeam-proxmox:guest-interaction-proxy] }
  repo: { address: 10.0.0.3, roles: [veeam-proxmox:repository] }
  sqlw: { address: 10.0.1.1, roles: [veeam-proxmox:guest], facts: { os: windows, databases: [mssql] } }
  appw: { address: 10.0.1.2, roles: [veeam-proxmox:guest], facts: { os: windows } }
  appl: { address: 10.0.1.3, roles: [veeam-proxmox:guest], facts: { os: linux } }
  pgl: { address: 10.0.1.4, roles: [veeam-proxmox:guest], facts: { os: linux, databases: [postgresql] } }
  oraw: { address: 10.0.1.5, roles: [veeam-proxmox:guest], facts: { os: windows, databases: [oracle] } }
  oral: { address: 10.0.1.6, roles: [veeam-proxmox:guest], facts: { os: linux, databases: [oracle] } }
`;
  it('gives guests without databases no 2500-3300 in either direction (rows 2, 7, 9)', () => {
    const p = plan(vm());
    for (const g of ['appw', 'appl']) {
      assert.equal(count(p, 'vbr', g, 'tcp', 2500), 0, `row 2 to ${g}`);
      assert.equal(count(p, 'gip', g, 'tcp', 2500), 0, `row 7 to ${g}`);
      assert.equal(count(p, g, 'gip', 'tcp', 2500), 0, `row 9 from ${g}`);
      assert.equal(count(p, g, 'vbr', 'tcp', 2500), 0, `from ${g}`);
    }
    assert.equal(count(p, 'gip', 'appw', 'tcp', 445), 1, 'row 6 (runtime deployment) stays');
  });
  it('pairs row 9 with Windows guests and row 2 with Linux guests that have a database', () => {
    const p = plan(vm());
    assert.equal(count(p, 'gip', 'sqlw', 'tcp', 2500), 1, 'row 7');
    assert.equal(count(p, 'sqlw', 'gip', 'tcp', 2500), 1, 'row 9');
    assert.equal(count(p, 'vbr', 'pgl', 'tcp', 2500), 1, 'row 2');
    assert.equal(count(p, 'pgl', 'gip', 'tcp', 2500), 0, 'no row 9 for a Linux guest');
    assert.equal(count(p, 'pgl', 'vbr', 'tcp', 2500), 1, 'PostgreSQL row 3 instead');
    assert.equal(count(p, 'vbr', 'sqlw', 'tcp', 2500), 0, 'no row 2 for a Windows guest');
  });
  it('sends Oracle row 7 to the guest interaction proxy from Windows and to the backup server from Linux', () => {
    const p = plan(vm());
    assert.equal(count(p, 'oraw', 'gip', 'tcp', 2500), 1);
    assert.equal(count(p, 'oraw', 'vbr', 'tcp', 2500), 0);
    assert.equal(count(p, 'oral', 'vbr', 'tcp', 2500), 1);
    assert.equal(count(p, 'oral', 'gip', 'tcp', 2500), 0);
  });
  it('warns that log shipping needs application-aware processing', () => {
    const off = plan(vm('[log-shipping]'));
    assert.ok(off.warnings.some((w) => w.code === 'log-shipping-without-app-aware'));
    assert.ok(warned(off, /log-shipping is on but app-aware is off/));
    assert.equal(
      count(off, 'sqlw', 'gip', 'tcp', 2500),
      1,
      'the MS SQL table itself needs only log-shipping',
    );
    assert.equal(count(off, 'vbr', 'pgl', 'tcp', 2500), 1);
    const on = plan(vm());
    assert.ok(!on.warnings.some((w) => w.code === 'log-shipping-without-app-aware'));
    assert.ok(!plan(vm('[app-aware]')).warnings.some((w) => w.code === 'log-shipping-without-app-aware'));
  });
});

describe('advisories', () => {
  const mixed = (extra = '') => `site: a
${extra}products:
  druva-vmware: {}
  veeam-proxmox: {}
  platespin: { version: "2019.5" }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  esx: { address: 10.0.0.2, roles: [druva-vmware:esxi], facts: { registration: standalone } }
  vbr: { address: 10.1.0.1, roles: [veeam-proxmox:backup-server] }
  worker: { address: 10.1.0.2, roles: [veeam-proxmox:worker] }
  repo: { address: 10.1.0.3, roles: [veeam-proxmox:repository], facts: { os: linux } }
  ntp: { address: 10.1.0.4, roles: [veeam-proxmox:ntp-server] }
  ps: { address: 10.2.0.1, roles: [platespin:platespin-server] }
  src: { address: 10.2.0.2, roles: [platespin:source], facts: { os: windows } }
`;
  const advisoryFlows = (p: Plan) => p.flows.filter((f) => f.basis === 'advisory');
  it('are warnings, not flows, by default: what to add, why and the page it comes from', () => {
    const p = plan(mixed());
    assert.equal(advisoryFlows(p).length, 0);
    assert.equal(count(p, 'proxy', 'esx', 'tcp', 902), 0);
    assert.equal(count(p, 'worker', 'repo', 'tcp', 6162), 0);
    assert.ok(
      warned(
        p,
        /^advisory druva-vmware proxy-to-standalone-esxi-nfc not planned: add proxy -> esx tcp 902\. .*<https:\/\/.+>, read \d{4}-\d{2}-\d{2}; plan it with --advisories/,
      ),
    );
    assert.ok(
      warned(
        p,
        /advisory veeam-proxmox worker-to-repository-data-mover not planned: add worker -> repo tcp 6162/,
      ),
    );
    assert.ok(
      warned(
        p,
        /advisory veeam-proxmox backup-server-to-linux-repository-ssh not planned: add vbr -> repo tcp 22/,
      ),
    );
    assert.ok(
      !warned(p, /backup-server-to-windows-repository/),
      'the Windows ports are not advised for a Linux repository',
    );
    assert.ok(
      warned(
        p,
        /advisory platespin server-to-source-wmi-dynamic-rpc not planned: add ps -> src tcp 49152-65535/,
      ),
    );
    const noNtp = mixed().replace(/^ {2}ntp: .*\n/m, '');
    const roleWarning = /no host has role veeam-proxmox:ntp-server/;
    assert.ok(!warned(plan(noNtp), roleWarning), 'a role used only by advisories is not asked for');
    assert.ok(warned(plan(noNtp, '--advisories'), roleWarning), 'it is once advisories are planned');
  });
  it('are planned with --advisories, marked basis advisory, with their page as the source', () => {
    const p = plan(mixed(), '--advisories');
    const nfc = flows(p, 'proxy', 'esx', 'tcp', 902)[0];
    assert.equal(nfc?.basis, 'advisory');
    assert.match(nfc?.sources[0]?.doc ?? '', /^https:\/\//);
    assert.match(nfc?.sources[0]?.ref ?? '', /\(read \d{4}-\d{2}-\d{2}\)/);
    assert.equal(flows(p, 'worker', 'repo', 'tcp', 6162)[0]?.basis, 'advisory');
    assert.equal(flows(p, 'worker', 'vbr', 'tcp', 2500)[0]?.basis, 'advisory');
    assert.equal(flows(p, 'worker', 'ntp', 'udp', 123)[0]?.basis, 'advisory');
    assert.equal(flows(p, 'vbr', 'repo', 'tcp', 22)[0]?.basis, 'advisory');
    assert.equal(count(p, 'vbr', 'repo', 'tcp', 445), 0, 'Windows repository ports not for Linux');
    assert.equal(flows(p, 'ps', 'src', 'tcp', 49152)[0]?.basis, 'advisory');
    assert.equal(flows(p, 'ps', 'src', 'icmp')[0]?.basis, 'advisory');
    assert.ok(!p.warnings.some((w) => w.code === 'advisory'));
    const doc = flows(p, 'proxy', 'esx', 'tcp', 443)[0];
    assert.equal(doc?.basis, undefined, 'document flows carry no basis');
  });
  it('are planned with the inventory key advisories: include, and not with exclude', () => {
    assert.ok(advisoryFlows(plan(mixed('advisories: include\n'))).length > 5);
    assert.equal(advisoryFlows(plan(mixed('advisories: exclude\n'))).length, 0);
    const bad = run(mixed('advisories: yes\n'));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /advisories/);
  });
  it('are listed in change requests and on stderr by every export', () => {
    const file = site(mixed());
    const md = runCli(['export', file, '--to', 'markdown']);
    assert.equal(md.code, 0, md.stderr);
    const before = md.stdout.split('## Warnings and what is not covered')[1] ?? '';
    assert.match(before, /advisory druva-vmware proxy-to-standalone-esxi-nfc not planned/);
    const nft = runCli(['export', file, '--to', 'nftables']);
    assert.equal(nft.code, 0, nft.stderr);
    assert.match(nft.stderr, /^warning: advisory veeam-proxmox worker-to-repository-data-mover not planned/m);
    assert.doesNotMatch(nft.stdout, /dport [^\n]*6162/);
    const withAdv = runCli(['export', file, '--to', 'nftables', '--advisories']);
    assert.match(withAdv.stdout, /dport [^\n]*6162/);
    assert.doesNotMatch(withAdv.stderr, /warning: advisory/);
  });
  it('plan the backup server -> repository ports by the repository OS, cited to the VBR Ports page', () => {
    const p = plan(
      `site: r
products: { veeam-proxmox: {} }
hosts:
  vbr: { address: 10.0.0.1, roles: [veeam-proxmox:backup-server] }
  winrepo: { address: 10.0.1.1, roles: [veeam-proxmox:repository], facts: { os: windows } }
  linrepo: { address: 10.0.1.2, roles: [veeam-proxmox:repository], facts: { os: linux } }
`,
      '--advisories',
    );
    const ports = (to: string) =>
      flows(p, 'vbr', to, 'tcp')
        .filter((f) => f.basis === 'advisory')
        .flatMap((f) => f.ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)))
        .sort();
    assert.deepEqual(ports('winrepo'), ['2500-3300', '445', '6160', '6162']);
    assert.deepEqual(ports('linrepo'), ['22', '2500-3300', '6162']);
    const vbrPorts = 'https://helpcenter.veeam.com/docs/backup/hyperv/used_ports.html?ver=110';
    for (const port of [445, 6160, 6162, 2500])
      assert.ok(
        flows(p, 'vbr', 'winrepo', 'tcp', port).some((f) => f.sources[0]?.doc === vbrPorts),
        `windows ${port} cites the VBR Ports page first`,
      );
    // The range is assigned at run time on both, like 004's own 2500-3300 rows.
    assert.ok(flows(p, 'vbr', 'linrepo', 'tcp', 2500).every((f) => f.dynamicPorts?.length));
    const text = runCli(['catalog', 'veeam-proxmox']).stdout;
    assert.doesNotMatch(
      text,
      /backup-server-to-[a-z-]*repository[^\n]*\n[^\n]*\n[^\n]*source: Veeam Backup & Replication User Guide, Nutanix AHV/,
    );
    assert.match(text, /That guide's table for Linux servers was not found/);
    // 6160 is a fixed port: no note says it is assigned at run time.
    const installer = text.split('backup-server-to-windows-repository-installer:')[1] ?? '';
    assert.doesNotMatch(installer.split(/\n {2}\S/)[0] ?? '', /Assigned at run time/);
  });
  it('are listed by `portolan catalog PRODUCT` with their source page', () => {
    for (const [product, id] of [
      ['druva-vmware', 'proxy-to-standalone-esxi-nfc'],
      ['veeam-proxmox', 'worker-to-repository-data-mover'],
      ['platespin', 'server-to-source-wmi-dynamic-rpc'],
    ] as const) {
      const r = runCli(['catalog', product]);
      assert.equal(r.code, 0, r.stderr);
      const adv = r.stdout.split(/^Advisories$/m)[1] ?? '';
      assert.match(adv, new RegExp(`${id}:`));
      assert.match(adv, /source: .+ <https:\/\/[^>]+> \(read \d{4}-\d{2}-\d{2}\)/);
      assert.doesNotMatch(r.stdout.split(/^Advisories$/m)[0] ?? '', new RegExp(`${id}:`));
    }
  });
});

describe('Japanese text and display width', () => {
  it('keeps the sentence the 3545 local-flow decision rests on, and gives notes in Japanese', () => {
    const p = plan(
      `site: j
products: { druva-vmware: { features: [app-aware-sql] } }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  sql: { address: 10.0.2.1, roles: [druva-vmware:guest], facts: { os: windows, databases: [mssql] } }
`,
      '--lang',
      'ja',
    );
    const local = flows(p, 'sql', 'sql', 'tcp', 3545)[0];
    assert.match(
      local?.purpose ?? '',
      /PhoenixSQLGuestPluginのサービスは直接バックアッププロキシと通信することはできません/,
    );
    assert.match(local?.notes.join('\n') ?? '', /ローカルフロー/);
    const en = plan(
      `site: j
products: { druva-vmware: { features: [app-aware-sql] } }
hosts:
  sql: { address: 10.0.2.1, roles: [druva-vmware:guest], facts: { os: windows, databases: [mssql] } }
`,
    );
    assert.doesNotMatch(flows(en, 'sql', 'sql', 'tcp', 3545)[0]?.purpose ?? '', /[\u3040-\u30ff]/);
  });
  const jaSite = `site: j
products:
  druva-vmware: { features: [app-aware-sql] }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  win: { address: 10.0.2.1, roles: [druva-vmware:guest], facts: { os: windows } }
  esx: { address: 10.0.3.1, roles: [druva-vmware:esxi] }
`;
  const mixedSite = `site: m
products:
  druva-vmware: { features: [app-aware-sql] }
  platespin: { version: "2019.5" }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  win: { address: 10.0.2.1, roles: [druva-vmware:guest], facts: { os: windows } }
  server: { address: 10.0.4.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.4.2, roles: [platespin:source] }
  tgt: { address: 10.0.4.3, roles: [platespin:target] }
`;
  const byCode = (p: Plan, code: string, product?: string) =>
    p.warnings.filter((w) => w.code === code && (product === undefined || w.product === product));
  it('gives warnings in Japanese for a product with a Japanese document, from the plan and the catalog', () => {
    const ja = plan(jaSite, '--lang', 'ja');
    const en = plan(jaSite);
    // The catalog's own warning (message-ja) and the plan's warning codes, in 002's terms.
    assert.match(
      byCode(ja, 'sql-guests-unknown')[0]?.message ?? '',
      /^druva-vmware: 仮想マシン win はWindowsですがdatabases/,
    );
    assert.match(
      byCode(ja, 'fact-default')[0]?.message ?? '',
      /^ホスト esx \(druva-vmware:esxi\) はファクト registration を指定していません。既定値 vcenter/,
    );
    assert.match(byCode(ja, 'role-without-hosts')[0]?.message ?? '', /のロールを持つホストがありません/);
    assert.match(
      byCode(ja, 'advisory')[0]?.message ?? '',
      /^勧告 druva-vmware .+ は計画されていません: .+ を追加してください。.*出典: /,
    );
    assert.match(
      byCode(ja, 'host-without-flows')[0]?.message ?? '',
      /^ホスト win にはこの計画のフローがありません$/,
    );
    const cidr = plan(
      `${jaSite}  net: { address: 10.0.2.0/24, roles: [druva-vmware:guest], facts: { os: linux } }\n`,
      '--lang',
      'ja',
    );
    assert.match(
      byCode(cidr, 'address-in-cidr')[0]?.message ?? '',
      /^ホスト win \(10\.0\.2\.1\) はホスト net のCIDR 10\.0\.2\.0\/24 の中にあります/,
    );
    // Same warnings, same codes, in English without --lang ja: only the text changes.
    assert.deepEqual(
      ja.warnings.map((w) => w.code),
      en.warnings.map((w) => w.code),
    );
    for (const w of en.warnings) assert.doesNotMatch(w.message, /[\u3040-\u30ff]|^\[/, w.message);
  });
  it('falls back to English with the code in brackets for a product without a Japanese document', () => {
    const p = plan(mixedSite, '--lang', 'ja');
    const ps = p.warnings.filter((w) => w.product === 'platespin');
    assert.ok(ps.length > 0);
    for (const w of ps) {
      assert.ok(w.message.startsWith(`[${w.code}] `), w.message);
      assert.doesNotMatch(w.message, /[\u3040-\u30ff]/, w.message);
    }
    assert.match(
      byCode(p, 'condition-unknown', 'platespin')[0]?.message ?? '',
      /^\[condition-unknown\] platespin entry .+ skipped: the inventory does not give to\.facts\.os/,
    );
    // Druva's warnings in the same plan stay Japanese; a warning naming no product is Japanese only
    // when every product of the site has a Japanese document, which PlateSpin has not.
    assert.match(byCode(p, 'sql-guests-unknown')[0]?.message ?? '', /仮想マシン win/);
    assert.match(
      byCode(p, 'host-without-flows')[0]?.message ?? '',
      /^\[host-without-flows\] host win has no flows/,
    );
    const veeam = run(
      'site: v\nproducts: { veeam-proxmox: { features: [log-shipping] } }\nhosts:\n  b: { address: 10.0.0.1, roles: [veeam-proxmox:backup-server] }\n',
      '--lang',
      'ja',
    );
    const vp = JSON.parse(veeam.stdout) as Plan;
    assert.match(
      byCode(vp, 'log-shipping-without-app-aware')[0]?.message ?? '',
      /^\[log-shipping-without-app-aware\] veeam-proxmox: log-shipping is on but app-aware is off/,
    );
  });
  it('gives entry notes in Japanese for Druva and in English for PlateSpin with --lang ja', () => {
    const p = plan(
      `site: n
products: { druva-vmware: {}, platespin: { version: "2019.5" } }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  esx: { address: 10.0.3.1, roles: [druva-vmware:esxi], facts: { registration: vcenter } }
  server: { address: 10.0.4.1, roles: [platespin:platespin-server] }
  src: { address: 10.0.4.2, roles: [platespin:source], facts: { os: windows } }
  tgt: { address: 10.0.4.3, roles: [platespin:target] }
`,
      '--lang',
      'ja',
    );
    const nfc = flows(p, 'proxy', 'esx', 'tcp', 902)[0];
    assert.match(
      nfc?.notes.join('\n') ?? '',
      /文書は902を「TCP \/ UDP」と書いています。カタログはTCPのみを開きます/,
    );
    assert.doesNotMatch(nfc?.notes.join('\n') ?? '', /The documents write/);
    const wmi = flows(p, 'server', 'src', 'tcp', 135)[0];
    assert.match(wmi?.notes.join('\n') ?? '', /WMI \(RPC\/DCOM\) may also use random/);
    const en = plan(
      `site: n
products: { druva-vmware: {} }
hosts:
  proxy: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }
  esx: { address: 10.0.3.1, roles: [druva-vmware:esxi], facts: { registration: vcenter } }
`,
    );
    assert.match(
      flows(en, 'proxy', 'esx', 'tcp', 902)[0]?.notes.join('\n') ?? '',
      /The documents write "TCP\/UDP" for 902/,
    );
  });
  it('has Japanese for every note and warning of the catalog with a Japanese document', () => {
    const r = runCli(['catalog', 'druva-vmware', '--format', 'json']);
    const cat = JSON.parse(r.stdout) as {
      entries: {
        id: string;
        notes?: string[];
        'notes-ja'?: string[];
        purpose: string;
        'purpose-ja'?: string;
      }[];
      warnings: { id: string; 'message-ja'?: string }[];
    };
    for (const e of cat.entries) {
      assert.ok(e['purpose-ja'], `${e.id} has purpose-ja`);
      assert.equal(e['notes-ja']?.length ?? 0, e.notes?.length ?? 0, `${e.id}: one notes-ja per note`);
    }
    for (const w of cat.warnings) assert.match(w['message-ja'] ?? '', /[\u3040-\u30ff]/, w.id);
    const text = runCli(['catalog', 'druva-vmware', '--lang', 'ja']).stdout;
    assert.match(text, /sql-guests-unknown \(each guest\): 仮想マシン \{host\} はWindows/);
    assert.match(
      runCli(['catalog', 'druva-vmware']).stdout,
      /sql-guests-unknown \(each guest\): guest \{host\} runs Windows/,
    );
  });
  it('names the features in Japanese with --lang ja', () => {
    const r = runCli(['catalog', 'druva-vmware', '--lang', 'ja']);
    assert.match(r.stdout, /app-aware-sql\s+アプリケーション対応バックアップ/);
    assert.match(r.stdout, /dr-restore\s+Phoenix DRaaSまたはDRの復元/);
    assert.match(
      runCli(['catalog', 'druva-vmware']).stdout,
      /app-aware-sql\s+Application-aware SQL Server backups/,
    );
  });
  it('measures CJK as two columns and cuts by width, never inside a character', () => {
    assert.equal(displayWidth('ポート443'), 9);
    assert.equal(displayWidth('\u001b[1mab\u001b[22m'), 2);
    assert.equal(displayWidth('e\u0301'), 1, 'a combining mark takes no column');
    assert.equal(displayWidth('𠀋'), 2, 'CJK Extension B (outside the BMP) is wide');
    assert.equal(truncateToWidth('バックアッププロキシ', 7), 'バック…');
    assert.equal(
      displayWidth(truncateToWidth('バックアッププロキシ', 8)),
      7,
      'a wide character never straddles the edge',
    );
    assert.equal(truncateToWidth('abc', 3), 'abc');
  });
  it('keeps every line of a Japanese plan table within the terminal width', () => {
    const r = runCli(['plan', 'examples/druva-vmware.yaml', '--format', 'json', '--lang', 'ja']);
    const p = JSON.parse(r.stdout) as Plan;
    for (const columns of [100, 120]) {
      const table = planTable({ ...p, warnings: [] }, 10, { color: false, columns });
      const lines = table.split('\n').filter((l) => l && !l.startsWith('druva-dc1:'));
      for (const line of lines)
        assert.ok(displayWidth(line) <= columns, `${displayWidth(line)} > ${columns}: ${line}`);
      assert.ok(
        lines.some((l) => displayWidth(l) >= columns - 1),
        'the purpose column uses the room there is',
      );
      assert.ok(lines.length > p.flows.length + 1, 'long purposes wrap onto more lines under their column');
    }
  });
});

describe('advisory entries in a catalog', () => {
  const catalog = (entry: string) => {
    const d = mkdtempSync(join(dir, 'cat-'));
    writeFileSync(
      join(d, 'acme.yaml'),
      `product: acme
title: Acme
documents: [{ file: acme.pdf, title: Acme ports }]
roles: { server: { title: Server }, agent: { title: Agent } }
entries:
  - id: agent-to-server
    from: agent
    to: server
    protocol: tcp
    ports: [7000]
    service: acme
    purpose: Agents send data.
${entry}`,
    );
    return d;
  };
  const site = `site: a\nproducts: { acme: {} }\nhosts:\n  s: { address: 10.0.0.1, roles: [acme:server] }\n  a: { address: 10.0.0.2, roles: [acme:agent] }\n`;
  it('refuses an advisory without a page, and a page on a document entry', () => {
    const noPage = catalog(`    basis: advisory
    sources: [{ doc: acme.pdf, table: ports, row: 1 }]
`);
    const r1 = run(site, '--catalog', noPage);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /an advisory entry needs a source page \(url, title, read\)/);
    const pageOnDoc =
      catalog(`    sources: [{ url: "https://example.com/ports", title: Ports, read: "2026-11-30" }]
`);
    const r2 = run(site, '--catalog', pageOnDoc);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /makes this entry an advisory \(expected basis: advisory\)/);
  });
  it('plans a well-formed advisory only when asked', () => {
    const ok = catalog(`    basis: advisory
    sources: [{ url: "https://example.com/ports", title: Ports, read: "2026-11-30" }]
`);
    assert.equal(plan(site, '--catalog', ok).flows.length, 0);
    const p = plan(site, '--catalog', ok, '--advisories');
    assert.equal(p.flows[0]?.basis, 'advisory');
    assert.deepEqual(p.flows[0]?.sources, [
      { doc: 'https://example.com/ports', ref: 'Ports (read 2026-11-30)' },
    ]);
  });
});

describe('catalog command: what the listing counts and what each citation says', () => {
  it('counts document entries apart from advisories, which rest on vendor pages, not on the files listed', () => {
    const r = runCli(['catalog']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^ {2}entries: 13 from 000_43f330ad8c0713db\.txt, 001_2091beaa97dc5a7a\.txt, 002_6cdecb47e9aff3d7\.txt; advisories: 3 from vendor pages$/m,
    );
    assert.match(
      r.stdout,
      /^ {2}entries: 30 from 003_a7e0e83404719d03\.txt; advisories: 4 from vendor pages$/m,
    );
    assert.match(
      r.stdout,
      /^ {2}entries: 47 from 004_55e916f704efc5f3\.txt; advisories: 9 from vendor pages$/m,
    );
  });
  it('shows the documents with what is known of them: lost text, defects, how 002 relates to 000/001', () => {
    const druva = runCli(['catalog', 'druva-vmware']).stdout;
    const docs = druva.split(/^Documents$/m)[1]?.split(/^Roles$/m)[0] ?? '';
    assert.match(docs, /^ {2}000_43f330ad8c0713db\.txt {2}.+ \(en\)$/m);
    assert.match(docs, /bullet lists under all three of its 443 rows \(rows 1, 7 and 8\) were lost/);
    assert.match(docs, /"TLS 2\.0", a version that does not exist/);
    assert.match(docs, /^ {2}002_6cdecb47e9aff3d7\.txt {2}VMwareにおけるポートと通信プロトコル .+ \(ja\)$/m);
    // 002 row 8 (TLS) names no version, as 000 row 8; only 001 row 7 says "TLS 2.0".
    assert.match(
      docs,
      /row 8 \(TLS\) names no TLS version, as 000 row 8 does where 001 row 7 says "TLS 2\.0"/,
    );
    // The purpose-ja texts 002 has no sentence for are the catalog's own, and it says which.
    assert.doesNotMatch(docs, /the source of every purpose-ja/);
    assert.match(docs, /incoming 22 and 2049, which 002 lacks\), the advisories, and the 3545 row/);
    const veeam = runCli(['catalog', 'veeam-proxmox']).stdout.split(/^Roles$/m)[0] ?? '';
    assert.match(veeam, /an empty From or To continues the row above/, "004's continuation rows");
    const ps = runCli(['catalog', 'platespin']).stdout.split(/^Roles$/m)[0] ?? '';
    assert.match(ps, /"between" two machines without naming which one opens the\s+connection/);
  });
  it("prints what a cited row says there: 004's continued From/To cells, 001 row 1's standalone-ESXi note", () => {
    const veeam = runCli(['catalog', 'veeam-proxmox']).stdout;
    // 004 Workers row 2 leaves From empty ("Proxmox VE server | SSH | 22"): the ref says it is the worker's.
    assert.match(
      veeam,
      /^ {4}source: 004_55e916f704efc5f3\.txt workers row 2 \(Worker -> Proxmox VE server, SSH 22\)$/m,
    );
    const druva = runCli(['catalog', 'druva-vmware']).stdout.split('proxy-to-esxi-nfc:')[1] ?? '';
    assert.match(
      druva,
      /001_2091beaa97dc5a7a\.txt ports row 1 \(note: through vCenter Server the proxy uses 902\)/,
    );
  });
});
