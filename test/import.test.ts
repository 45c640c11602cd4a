import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { parse as parseCsv } from 'csv-parse/sync';
import { parse as parseYaml } from 'yaml';
import { zipInflatedSize } from '../src/import/sources.js';
import { BIN, cliEnv, ROOT, runCli } from './helpers.js';

const FIX = join(ROOT, 'tests', 'fixtures', 'import');
const MAP = join(FIX, 'map-veeam.yaml');
const RVTOOLS = join(FIX, 'rvtools-vInfo.csv');
const PVESH = join(FIX, 'pvesh-resources.json');

type Hosts = Record<
  string,
  { address: string; roles: string[]; facts?: Record<string, unknown>; description?: string }
>;

function importTo(kind: string, file: string, map = MAP, extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-import-'));
  const out = join(dir, 'site.yaml');
  const r = runCli(['import', kind, file, '--map', map, '-o', out, ...extra]);
  const hosts = r.code === 0 ? (parseYaml(readFileSync(out, 'utf8')) as { hosts: Hosts }).hosts : {};
  return { ...r, out, hosts, warnings: r.stderr.split('\n').filter((l) => l.startsWith('warning: ')) };
}

describe('import rvtools', () => {
  const r = importTo('rvtools', RVTOOLS);

  it('writes an inventory that validates and plans, with the map hosts first', () => {
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /imported 11 of 13 rows into site east-import .*: 2 left out, 11 warnings; it validates/,
    );
    const v = runCli(['validate', r.out]);
    assert.equal(v.code, 0, v.stderr);
    const p = runCli(['plan', r.out, '--format', 'json']);
    assert.equal(p.code, 0, p.stderr);
    assert.deepEqual(Object.keys(r.hosts).slice(0, 2), ['vbr-01', 'worker-01']);
  });

  it('keeps each host source row, address, roles and facts', () => {
    assert.deepEqual(r.hosts['sql-01'], {
      address: '10.20.0.5',
      roles: ['veeam-proxmox:guest'],
      facts: { databases: ['mssql'], os: 'windows' },
      description: 'imported from rvtools-vInfo.csv:2',
    });
    assert.equal(r.hosts['app-lnx-01']?.facts?.os, 'linux');
    assert.equal(r.hosts.appliance?.facts?.os, 'linux', 'the VMware Tools OS (Photon) is read first');
    assert.equal(r.hosts['freebsd-fw']?.facts, undefined);
  });

  it('makes odd rows warnings with their row numbers (a quoted cell spanning lines counts its first line)', () => {
    const w = r.warnings.join('\n');
    assert.match(
      w,
      /rvtools-vInfo\.csv:4: VM "Web Server 01": the name is not a host key .*host "Web-Server-01"/,
    );
    assert.match(
      w,
      /rvtools-vInfo\.csv:5: VM "dual-homed": several addresses \(10\.20\.0\.8, 192\.168\.50\.8\); took 10\.20\.0\.8/,
    );
    assert.match(w, /rvtools-vInfo\.csv:6: VM "v6-only": IPv6 address only \(2001:db8:20::9\)/);
    assert.match(
      w,
      /rvtools-vInfo\.csv:7: VM "off-no-tools": no IP address; using NAME\.DOMAIN from import\.domain, off-no-tools\.corp\.example/,
    );
    assert.match(
      w,
      /rvtools-vInfo\.csv:8: VM "dns-only": no IP address; using its DNS name, dns-only\.corp\.example/,
    );
    assert.match(w, /rvtools-vInfo\.csv:9: VM "Überwachung-Ä1": .*host "Uberwachung-A1"/);
    assert.match(
      w,
      /rvtools-vInfo\.csv:10: VM "clone of\\nsql-01": address 10\.20\.0\.5 is already host "sql-01"'s .*left out/,
    );
    assert.match(w, /rvtools-vInfo\.csv:12: VM "apipa": 169\.254\.10\.3 is link-local; ignored/);
    assert.match(w, /rvtools-vInfo\.csv:15: VM "freebsd-fw": OS "FreeBSD 13 \(64-bit\)" matches no pattern/);
    assert.equal(
      r.hosts['Web-Server-01']?.description,
      'imported from rvtools-vInfo.csv:4 (VM "Web Server 01")',
    );
    assert.equal(r.hosts['tpl-win2022'], undefined, 'templates are skipped as the map says');
    assert.equal(r.warnings.length, 11);
  });

  it('reads a semicolon-separated export from a Windows locale the same way', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-'));
    const rows = parseCsv(readFileSync(RVTOOLS, 'utf8')) as string[][];
    const semi = join(dir, 'rvtools-vInfo.csv');
    writeFileSync(
      semi,
      rows
        .map((row) => row.map((c) => (/[;"\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(';'))
        .join('\r\n'),
    );
    const s = importTo('rvtools', semi);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(s.hosts, r.hosts);
    assert.deepEqual(s.warnings, r.warnings);
  });

  it('writes controls and bidirectional overrides in a VM name escaped, and YAML reads them back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-'));
    const rows = parseCsv(readFileSync(RVTOOLS, 'utf8')) as string[][];
    const header = rows[0] as string[];
    const vm = header.indexOf('VM');
    const odd = [...(rows[1] as string[])];
    odd[vm] = 'bidi\u202egnp.exe\u0085\u001b[2J';
    const file = join(dir, 'rvtools-vInfo.csv');
    writeFileSync(
      file,
      [header, odd].map((row) => row.map((c) => `"${c.replace(/"/g, '""')}"`).join(',')).join('\r\n'),
    );
    const s = importTo('rvtools', file);
    assert.equal(s.code, 0, s.stderr);
    const text = readFileSync(s.out, 'utf8');
    assert.doesNotMatch(text, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    // The description names the VM as the warnings do: escaped text, no control left in the value.
    const described = Object.values(s.hosts).find((h) => h.description?.includes('VM "bidi'));
    assert.equal(
      described?.description,
      'imported from rvtools-vInfo.csv:2 (VM "bidi\\u202egnp.exe\\u0085\\u001b[2J")',
    );
  });

  it('reads the vInfo sheet of an .xlsx workbook like the CSV', async () => {
    const { default: writeXlsxFile } = await import('write-excel-file/node');
    const rows = parseCsv(readFileSync(RVTOOLS, 'utf8')) as string[][];
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-'));
    const xlsx = join(dir, 'rvtools-vInfo.csv.xlsx');
    await writeXlsxFile([
      { sheet: 'vSummary', data: [['vCenter'], ['vc-01.corp.example']] },
      { sheet: 'vInfo', data: rows.map((row) => row.map((value) => ({ value }))) },
    ]).toFile(xlsx);
    const x = importTo('rvtools', xlsx);
    assert.equal(x.code, 0, x.stderr);
    // The same hosts; descriptions name spreadsheet rows, where the CSV counts lines (row 10 spans two).
    const strip = (h: Hosts) =>
      Object.fromEntries(Object.entries(h).map(([k, { description: _, ...v }]) => [k, v]));
    assert.deepEqual(strip(x.hosts), strip(r.hosts));
    assert.equal(x.hosts.apipa?.description, 'imported from rvtools-vInfo.csv.xlsx:11');
    const missing = importTo('rvtools', xlsx, MAP, ['--sheet', 'vHost']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /has no sheet "vHost"/);
  });
});

describe('import pvesh', () => {
  it('counts the resources that are not guests or nodes by type in the summary', () => {
    const r = importTo('pvesh', PVESH);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /; it validates; resources that are not guests or nodes, left out: 1 storage, 1 pool, 1 sdn\n$/,
    );
  });

  it('names fields of the wrong type and elements that are not resources, never a silent vm-abc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-'));
    const odd = join(dir, 'odd.json');
    writeFileSync(
      odd,
      JSON.stringify([
        { type: 'qemu', vmid: 101, name: ['list'], node: 'pve1', status: 'running' },
        { type: 'qemu', vmid: 'abc', name: null, node: 'pve1', status: 'running' },
        5,
        [1, 2],
      ]),
    );
    const r = importTo('pvesh', odd);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.warnings, [
      'warning: odd.json[0]: VM "vm-101": "name" is an array, expected a string or number; ignored',
      'warning: odd.json[1]: VM "": "vmid" "abc" is not a number; ignored',
      'warning: odd.json[1]: VM "": no name; left out',
    ]);
    assert.deepEqual(
      Object.keys(r.hosts).filter((h) => h.startsWith('vm-')),
      ['vm-101'],
    );
    assert.match(
      r.stderr,
      /left out: 1 \(not a resource object: number\), 1 \(not a resource object: an array\)\n$/,
    );
  });

  it('imports guests and nodes by name, with facts from tags, and leaves out templates and storage', () => {
    const r = importTo('pvesh', PVESH);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(Object.keys(r.hosts), [
      'vbr-01',
      'worker-01',
      'pve-01',
      'pve-02',
      'sql-02',
      'pg-01',
      'dns-ct',
      'Test-VM-old',
    ]);
    assert.deepEqual(r.hosts['pve-01']?.roles, ['veeam-proxmox:proxmox-server']);
    assert.equal(r.hosts['pve-01']?.address, 'pve-01.corp.example');
    assert.deepEqual(r.hosts['sql-02']?.facts, { databases: ['mssql'], os: 'windows' });
    assert.deepEqual(r.hosts['pg-01']?.facts, { databases: ['postgresql'], os: 'linux' });
    assert.equal(r.hosts['sql-02']?.description, 'imported from pvesh-resources.json[2]');
    assert.deepEqual(r.warnings, [
      'warning: pvesh-resources.json[6]: VM "Test VM (old)": the name is not a host key (letters, digits, . _ - only, at most 63); host "Test-VM-old"',
    ]);
    assert.equal(runCli(['validate', r.out]).code, 0);
  });
});

/**
 * A zip archive of one stored entry, xl/worksheets/sheet1.xml, whose headers declare `size` bytes
 * uncompressed (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16): what a zip bomb's directory says, without
 * the data behind it.
 */
function zipDeclaring(size: number): Buffer {
  const name = Buffer.from('xl/worksheets/sheet1.xml');
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt32LE(size, 22);
  local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt32LE(size, 24);
  central.writeUInt16LE(name.length, 28);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + name.length, 12);
  end.writeUInt32LE(local.length + name.length, 16);
  return Buffer.concat([local, name, central, name, end]);
}

/**
 * A zip archive of one deflated entry, xl/worksheets/sheet1.xml, holding `data`, whose local and
 * central headers both declare `declared` bytes uncompressed (APPNOTE 4.3.7, 4.3.12, 4.3.16): a
 * bomb that lies about its size.
 */
function zipLying(data: Buffer, declared: number): Buffer {
  const name = Buffer.from('xl/worksheets/sheet1.xml');
  const body = deflateRawSync(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(8, 8);
  local.writeUInt32LE(body.length, 18);
  local.writeUInt32LE(declared, 22);
  local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(8, 10);
  central.writeUInt32LE(body.length, 20);
  central.writeUInt32LE(declared, 24);
  central.writeUInt16LE(name.length, 28);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + name.length, 12);
  end.writeUInt32LE(local.length + name.length + body.length, 16);
  return Buffer.concat([local, name, body, central, name, end]);
}

describe('import: zip sizes measured, not believed', () => {
  it('counts what the data inflates to, whatever the headers declare', async () => {
    const lying = zipLying(Buffer.alloc(100_000, 0x20), 10);
    assert.equal(await zipInflatedSize(lying, 1_000_000), 100_000);
    // Inflation stops just past the limit: a bomb is never held whole.
    const counted = (await zipInflatedSize(lying, 1000)) ?? 0;
    assert.ok(counted > 1000 && counted <= 100_000, String(counted));
    assert.equal(await zipInflatedSize(Buffer.from('not a zip'), 1000), undefined);
  });
});

describe('import: bad input', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-import-bad-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const fileBytes = (name: string, bytes: Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  const cases: [string, string[], RegExp][] = [
    ['no --map', ['import', 'rvtools', RVTOOLS], /--map MAP\.yaml is required/],
    [
      'an unknown source',
      ['import', 'vmware', RVTOOLS, '--map', MAP],
      /import source "vmware" is not one of: rvtools, pvesh/,
    ],
    [
      'a CSV without the VM column',
      ['import', 'rvtools', file('hosts.csv', 'Name,IP\na,10.0.0.1\n'), '--map', MAP],
      /hosts\.csv:1: no column "VM" \(the VM name\) in the header row .*columns found: "Name", "IP"/,
    ],
    [
      'pvesh output that is not JSON',
      ['import', 'pvesh', file('r.json', '{"id": '), '--map', MAP],
      /r\.json:1:8: not JSON text: found the end of the text, expected a value .*expected the output of pvesh get \/cluster\/resources/,
    ],
    [
      'pvesh output that is not a list',
      ['import', 'pvesh', file('o.json', '{"data": []}'), '--map', MAP],
      /o\.json: expected a JSON array of resources/,
    ],
    [
      'a map with a bad pattern',
      [
        'import',
        'pvesh',
        PVESH,
        '--map',
        file(
          'm1.yaml',
          'site: s\nimport:\n  roles: [veeam-proxmox:guest]\n  rules:\n    - { name: "(", facts: { os: linux } }\n',
        ),
      ],
      /m1\.yaml:5:\d+ import\.rules\[0\]\.name: not a regular expression: .*\(expected a regular expression in RE2 syntax.*\)/,
    ],
    [
      'a map with an unknown key',
      [
        'import',
        'pvesh',
        PVESH,
        '--map',
        file('m2.yaml', 'site: s\nimport:\n  roles: [a:b]\n  colums: {}\n'),
      ],
      /m2\.yaml:4:\d+ import.*colums/,
    ],
    [
      'a map whose roles the catalog does not know',
      [
        'import',
        'pvesh',
        PVESH,
        '--map',
        file(
          'm3.yaml',
          'site: s\nproducts: { veeam-proxmox: {} }\nimport:\n  roles: [veeam-proxmox:gust]\n  domain: x.example\n',
        ),
        '-o',
        join(dir, 'out.yaml'),
      ],
      /m3\.yaml:4:\d+ import\.roles\[0\]: unknown role "veeam-proxmox:gust" \(did you mean "veeam-proxmox:guest"\?\)/,
    ],
    [
      'an RVTools import given pvesh JSON',
      ['import', 'rvtools', PVESH, '--map', MAP],
      /pvesh-resources\.json: looks like JSON, not an RVTools CSV export .*use portolan import pvesh\)/,
    ],
    [
      'a pvesh import given an RVTools CSV',
      ['import', 'pvesh', RVTOOLS, '--map', MAP],
      /rvtools-vInfo\.csv: looks like CSV, not pvesh JSON output .*use portolan import rvtools\)/,
    ],
    [
      // It read 512 MiB (some 580 MB held) before refusing: now the first chunk's NUL stops it.
      'an endless source of NUL bytes, for pvesh',
      ['import', 'pvesh', '/dev/zero', '--map', MAP],
      /^portolan: \/dev\/zero:1:1: the pvesh output contains a NUL byte \(expected the output of pvesh get \/cluster\/resources --output-format json, which is JSON text\)\n$/,
    ],
    [
      'an endless source of NUL bytes, for RVTools',
      ['import', 'rvtools', '/dev/zero', '--map', MAP],
      /^portolan: \/dev\/zero:1:1: the RVTools export contains a NUL byte \(expected an RVTools vInfo export: CSV text or an \.xlsx workbook\)\n$/,
    ],
    [
      'a text file named .xlsx',
      ['import', 'rvtools', file('fake.xlsx', 'not a zip\n'), '--map', MAP],
      /fake\.xlsx: named like a workbook but not one: an \.xlsx file is a zip archive/,
    ],
    [
      'an Excel 97-2003 .xls',
      [
        'import',
        'rvtools',
        fileBytes('old.xls', Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])),
        '--map',
        MAP,
      ],
      /old\.xls: an Excel 97-2003 workbook \(\.xls\), which this import does not read/,
    ],
    [
      'a workbook whose directory declares 900 MiB unzipped',
      ['import', 'rvtools', fileBytes('bomb.xlsx', zipDeclaring(900 * 1024 * 1024)), '--map', MAP],
      /bomb\.xlsx: the workbook unzips to 900 MiB, over the 256 MiB this import reads/,
    ],
    [
      'a workbook whose headers declare 5 KiB and whose data inflates to 300 MiB',
      [
        'import',
        'rvtools',
        fileBytes('liar.xlsx', zipLying(Buffer.alloc(300 * 1024 * 1024, 0x20), 5000)),
        '--map',
        MAP,
      ],
      /liar\.xlsx: the workbook's data unzips to more than the 256 MiB this import reads, though its directory declares 5 KiB/,
    ],
  ];
  for (const [name, args, expected] of cases)
    it(`${name}: one line, exit 2`, { timeout: 120_000 }, () => {
      const r = runCli(args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
});

describe('import: rows left out', () => {
  it('names every row the map leaves out: row, name and why', () => {
    const r = importTo('rvtools', RVTOOLS);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /^rvtools-vInfo\.csv:13: VM "tpl-win2022" left out: a template \(map skip: templates\)$/m,
    );
    const p = importTo('pvesh', PVESH);
    assert.equal(p.code, 0, p.stderr);
    assert.match(
      p.stderr,
      /^pvesh-resources\.json\[5\]: VM "tpl-debian12" left out: a template \(map skip: templates\)$/m,
    );
    assert.match(p.stderr, /: 1 left out, 1 warning; it validates/);
  });

  it('prints 20 rows per reason, then counts the rest exactly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-'));
    const header = readFileSync(RVTOOLS, 'utf8').split('\n')[0];
    const lines = [header];
    for (let i = 0; i < 30; i++)
      lines.push(
        `vm-${i},poweredOn,${i < 25 ? 'True' : 'False'},False,green,,connected,running,green,2,4096,1,1,10.30.0.${i + 1},VM Network,,Ubuntu Linux (64-bit),Ubuntu Linux (64-bit),vm-${i},DC,C,esx`,
      );
    const csv = join(dir, 'vInfo.csv');
    writeFileSync(csv, `${lines.join('\n')}\n`);
    const r = importTo('rvtools', csv);
    assert.equal(r.code, 0, r.stderr);
    const named = r.stderr.split('\n').filter((l) => / left out: a template/.test(l));
    assert.equal(named.length, 20);
    assert.match(named[0] ?? '', /^vInfo\.csv:2: VM "vm-0" left out/);
    assert.match(
      r.stderr,
      /^and 5 more rows left out for the same reason \(a template \(map skip: templates\)\)$/m,
    );
    assert.match(r.stderr, /imported 5 of 30 rows .*: 25 left out, 0 warnings/);
  });
});

describe('import: nothing is written unless it validates', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-import-nowrite-'));
  const out = join(dir, 'site.yaml');
  const run = (mapText: string) => {
    const map = join(dir, 'map.yaml');
    writeFileSync(map, mapText);
    writeFileSync(out, 'earlier\n');
    return runCli(['import', 'rvtools', RVTOOLS, '--map', map, '-o', out]);
  };

  it('reports a role typo at the map line and column, and leaves -o alone', () => {
    const r = run(
      readFileSync(MAP, 'utf8').replace('roles: [veeam-proxmox:guest]', 'roles: [veeam-proxmox:gest]'),
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /map\.yaml:9:11 import\.roles\[0\]: unknown role "veeam-proxmox:gest" \(did you mean "veeam-proxmox:guest"\?\)/,
    );
    assert.equal(readFileSync(out, 'utf8'), 'earlier\n');
  });

  it('writes nothing when the imported inventory does not validate', () => {
    const r = run(readFileSync(MAP, 'utf8').replace('address: 10.10.0.6', 'address: 10.10.0.666'));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /the imported inventory does not validate, nothing written: .*10\.10\.0\.666/);
    assert.equal(readFileSync(out, 'utf8'), 'earlier\n');
  });
});

describe('import at estate size', () => {
  it('imports 100,000 RVTools rows in one pass (a quadratic import would not finish in this test)', {
    timeout: 300_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-big-'));
    const header = readFileSync(RVTOOLS, 'utf8').split('\n')[0];
    const lines = [header];
    for (let i = 0; i < 100_000; i++) {
      const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      const os = i % 3 === 0 ? 'Microsoft Windows Server 2019 (64-bit)' : 'Ubuntu Linux (64-bit)';
      // every 1000th row has no address and no DNS name: a warning, resolved through import.domain
      const addr = i % 1000 === 999 ? '' : ip;
      lines.push(
        `vm-${i},poweredOn,False,False,green,,connected,running,green,2,4096,1,1,${addr},VM Network,,${os},${os},vm-${i},DC,C,esx`,
      );
    }
    const csv = join(dir, 'vInfo.csv');
    writeFileSync(csv, `${lines.join('\n')}\n`);
    const out = join(dir, 'site.yaml');
    const r = runCli(['import', 'rvtools', csv, '--map', MAP, '-o', out]);
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    assert.match(
      r.stderr,
      /imported 100000 of 100000 rows into site east-import .*: 0 left out, 100 warnings/,
    );
    const text = readFileSync(out, 'utf8');
    assert.equal(text.match(/description: "imported from vInfo\.csv:/g)?.length, 100_000);
    assert.equal(
      text.slice(text.lastIndexOf('\n', text.length - 2) + 1),
      '  vm-99999: { address: "vm-99999.corp.example", roles: ["veeam-proxmox:guest"], facts: { os: "windows" }, description: "imported from vInfo.csv:100001" }\n',
    );
    assert.ok(BIN);
  });
});

/** CRC-32 (ISO 3309, as zip uses it: APPNOTE 4.4.7) of `data`. */
function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A zip archive of deflated entries with true headers (APPNOTE 4.3.7, 4.3.12, 4.3.16). */
function zipOf(files: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [path, text] of Object.entries(files)) {
    const name = Buffer.from(path);
    const raw = Buffer.from(text);
    const body = deflateRawSync(raw);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(crc32(raw), 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(raw.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(crc32(raw), 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(raw.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/**
 * An .xlsx workbook (ECMA-376) of one sheet, vInfo, whose <sheetData> is `rows` after a header row
 * (VM, Primary IP Address) and one VM, vm1 at 10.0.0.1.
 */
function workbook(rows: string): Buffer {
  const main = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
  const rel = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
  const pkg = 'http://schemas.openxmlformats.org/package/2006/relationships';
  const cell = (r: string, text: string) => `<c r="${r}" t="inlineStr"><is><t>${text}</t></is></c>`;
  return zipOf({
    '[Content_Types].xml': `<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>`,
    '_rels/.rels': `<?xml version="1.0"?><Relationships xmlns="${pkg}"><Relationship Id="rId1" Type="${rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>`,
    'xl/workbook.xml': `<?xml version="1.0"?><workbook xmlns="${main}" xmlns:r="${rel}"><sheets><sheet name="vInfo" sheetId="1" r:id="rId1"/></sheets></workbook>`,
    'xl/_rels/workbook.xml.rels': `<?xml version="1.0"?><Relationships xmlns="${pkg}"><Relationship Id="rId1" Type="${rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>`,
    'xl/worksheets/sheet1.xml': `<?xml version="1.0"?><worksheet xmlns="${main}"><sheetData><row r="1">${cell('A1', 'VM')}${cell('B1', 'Primary IP Address')}</row><row r="2">${cell('A2', 'vm1')}${cell('B2', '10.0.0.1')}</row>${rows}</sheetData></worksheet>`,
  });
}

describe('import: hostile workbooks, names and cells', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-import-hostile-'));
  const UNSAFE =
    /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

  it('a well-formed workbook of this shape imports (the cases below differ from it only as they say)', () => {
    const file = join(dir, 'plain.xlsx');
    writeFileSync(file, workbook(''));
    const r = importTo('rvtools', file);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.hosts.vm1?.address, '10.0.0.1');
  });

  // Each once crashed or ran for minutes: a far cell made the reader build 1048576 x 16384 cells
  // and abort out of memory (exit 134), a column past XFD overflowed an array (exit 133), and a
  // million empty rows overflowed the stack after a minute.
  const cases: [string, string, RegExp][] = [
    [
      'one cell at XFD1048576',
      '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>',
      /far\.xlsx: sheet "vInfo" \(xl\/worksheets\/sheet1\.xml\): reaches row 1048576, past the 200000 rows this import reads from a workbook/,
    ],
    [
      'a column past XFD',
      '<row r="3"><c r="ZZZZZZZZ3" t="inlineStr"><is><t>x</t></is></c></row>',
      /far\.xlsx: sheet "vInfo" \(xl\/worksheets\/sheet1\.xml\): cell reference "ZZZZZZZZ3" is not a cell \(expected A1 to XFD1048576\)/,
    ],
    [
      'a million empty rows',
      Array.from({ length: 1_000_000 }, (_, i) => `<row r="${i + 3}"/>`).join(''),
      /far\.xlsx: sheet "vInfo" \(xl\/worksheets\/sheet1\.xml\): reaches row 200001, past the 200000 rows/,
    ],
    [
      'data 150000 rows down at column XFD',
      '<row r="150000"><c r="XFD150000" t="inlineStr"><is><t>x</t></is></c></row>',
      /data reaches row 150000 and column XFD \(cell XFD150000\): 150000 x 16384 cells, more than the 33554432/,
    ],
    [
      'a date cell that holds no date',
      '<row r="3"><c r="B3" t="d"><v>not a date</v></c></row>',
      /far\.xlsx: sheet "vInfo" cell B3: its value cannot be read \(VALUE_INVALID; expected a value of the type the cell declares/,
    ],
    [
      'a cell without its reference',
      '<row r="3"><c t="inlineStr"><is><t>x</t></is></c></row>',
      /row 3: a cell without its reference \(expected <c r="A3">/,
    ],
  ];
  for (const [name, rows, expected] of cases)
    it(`${name}: one located line, exit 2, in seconds`, { timeout: 120_000 }, () => {
      const file = join(dir, 'far.xlsx');
      writeFileSync(file, workbook(rows));
      const r = runCli(['import', 'rvtools', file, '--map', MAP]);
      assert.equal(r.code, 2, r.stderr.slice(0, 2000));
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr.slice(0, 2000));
      assert.match(r.stderr, expected);
    });

  it('a file name and cells with escapes and bidirectional overrides reach no terminal and no comment raw', () => {
    // The warnings quoted the name and cells with JSON escaping alone (C1 controls such as the
    // one-character CSI U+009B and U+202E passed), and the file name went out as it was.
    const file = join(dir, 'vInfo\u001b]0;owned\u0007\u009b31m\u202e.csv');
    writeFileSync(
      file,
      'VM,Primary IP Address,OS according to the VMware Tools\r\nvm1,10.0.0.9\u009b31m,\u202eLinux\u009b2J\r\n',
    );
    const r = importTo('rvtools', file);
    assert.equal(r.code, 0, r.stderr);
    const m = UNSAFE.exec(r.stderr);
    assert.equal(
      m,
      null,
      `stderr: ${JSON.stringify(r.stderr.slice(Math.max(0, (m?.index ?? 0) - 40)).slice(0, 80))}`,
    );
    assert.match(
      r.stderr,
      /^warning: vInfo\?\]0;owned\?\?31m\?\.csv:2: VM "vm1": "10\.0\.0\.9\\u009b31m" is not an IP address; ignored$/m,
    );
    // The host's description names the file: its controls are escaped, never written raw into
    // the inventory (which would then be refused as the import's own output).
    assert.doesNotMatch(String(r.hosts.vm1?.description), UNSAFE);
    assert.match(
      String(r.hosts.vm1?.description),
      /^imported from "vInfo\\u001b\]0;owned\\u0007\\u009b31m\\u202e\.csv:2"$/,
    );
    const head = readFileSync(r.out, 'utf8').split('\n')[0] ?? '';
    assert.doesNotMatch(head, UNSAFE);
    assert.match(head, /from .*vInfo\?\]0;owned\?\?31m\?\.csv with /);
    assert.equal(r.hosts.vm1?.address, 'vm1.corp.example');
  });

  it('pvesh numbers a double cannot hold exactly are named, never a host called Infinity', () => {
    const file = join(dir, 'numbers.json');
    writeFileSync(
      file,
      '[{"type": "qemu", "vmid": 1e400, "name": 1e400}, {"type": "qemu", "vmid": 9007199254740993, "name": "b"}]',
    );
    const r = importTo('pvesh', file);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.warnings, [
      'warning: numbers.json[0]: VM "": "vmid" is a number that does not read back exactly (Infinity); ignored',
      'warning: numbers.json[0]: VM "": "name" is a number that does not read back exactly (Infinity); ignored',
      'warning: numbers.json[0]: VM "": no name; left out',
      'warning: numbers.json[1]: VM "b": "vmid" is a number that does not read back exactly (9007199254740992); ignored',
    ]);
    assert.deepEqual(Object.keys(r.hosts).sort(), ['b', 'vbr-01', 'worker-01']);
  });

  it('a map setting YAML reads as a number is written to the inventory as the map wrote it', () => {
    // The map's products were written back as data: version 11.10 became 11.1.
    const map = join(dir, 'map-version.yaml');
    writeFileSync(
      map,
      readFileSync(MAP, 'utf8').replace(
        'veeam-proxmox: { features: [app-aware] }',
        'veeam-proxmox: { features: [app-aware] }\n  platespin: { version: 11.10 }',
      ),
    );
    const r = importTo('pvesh', PVESH, map);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(r.out, 'utf8'), /\n {2}platespin:\n {4}version: "11\.10"\n/);
  });

  it('pvesh output that is not JSON is located by line and column, on one line', () => {
    // V8 gave "Unexpected token '}', ...<the text, line breaks and all>... is not valid JSON" with no place.
    const file = join(dir, 'resources.json');
    writeFileSync(file, '[{"type": "qemu",\n  "vmid": }]\n');
    const r = runCli(['import', 'pvesh', file, '--map', MAP]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `portolan: ${file}:2:11: not JSON text: found "}", expected a value (object, array, string, number, true, false or null) (expected the output of pvesh get /cluster/resources --output-format json)\n`,
    );
    writeFileSync(
      file,
      Buffer.concat([Buffer.from('[{"type": "qemu",\n "name": "a'), Buffer.from([0xff]), Buffer.from('"}]')]),
    );
    const u = runCli(['import', 'pvesh', file, '--map', MAP]);
    assert.equal(u.code, 2, u.stderr);
    assert.match(u.stderr, /resources\.json:2:12: not UTF-8 text/);
  });

  it('a map pattern that backtracks exponentially in JavaScript matches a crafted name in linear time', () => {
    // The map is the user's own file, but the VM names come from someone else's export: with
    // JavaScript's RegExp, ^(a+)+$ against 40 a's and a '!' takes about 2^40 steps and the import
    // never ends. RE2 answers at once.
    const map = join(dir, 'redos-map.yaml');
    writeFileSync(map, readFileSync(MAP, 'utf8').replace('name: "^sql"', 'name: "^(a+)+$"'));
    const csv = join(dir, 'redos.csv');
    writeFileSync(csv, `VM,Primary IP Address\n${'a'.repeat(40)}!,10.0.0.9\naaaa,10.0.0.10\n`);
    const out = join(dir, 'redos-site.yaml');
    const r = spawnSync(process.execPath, [BIN, 'import', 'rvtools', csv, '--map', map, '-o', out], {
      cwd: ROOT,
      encoding: 'utf8',
      env: cliEnv(),
      timeout: 120_000,
    });
    assert.equal(r.signal, null, 'the import was killed after 120 s: the pattern backtracked');
    assert.equal(r.status, 0, r.stderr);
    const hosts = (parseYaml(readFileSync(out, 'utf8')) as { hosts: Hosts }).hosts;
    assert.equal(
      hosts.aaaa?.facts?.databases?.toString(),
      'mssql',
      'a name the pattern matches gets the rule',
    );
    const crafted = Object.entries(hosts).find(([, h]) => h.address === '10.0.0.9')?.[1];
    assert.ok(crafted, 'the crafted row is imported');
    assert.equal(crafted.facts?.databases, undefined, 'the crafted name does not match ^(a+)+$');
  });
});

describe('import sources that are not plain files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-import-special-'));
  /** The CLI with a deadline: opening a FIFO without a writer blocked the import for good. */
  const run = (args: string[]) =>
    spawnSync(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: cliEnv(),
      timeout: 60_000,
    });

  for (const kind of ['pvesh', 'rvtools'])
    it(`import ${kind} FIFO without a writer: read as empty and refused, never a hang`, () => {
      const fifo = join(dir, `${kind}.fifo`);
      assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
      const r = run(['import', kind, fifo, '--map', MAP]);
      assert.equal(r.signal, null, 'the import was killed after 60 s: it blocked opening the FIFO');
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        kind === 'pvesh'
          ? /\.fifo:1:1: not JSON text: found the end of the text/
          : /\.fifo:1: no column "VM" \(the VM name\) in the header row/,
      );
    });

  it('a directory or a missing file is said in words, as for an inventory', () => {
    const d = run(['import', 'rvtools', dir, '--map', MAP]);
    assert.equal(d.status, 2, d.stderr);
    assert.equal(d.stderr, `portolan: ${dir}: the RVTools export is a directory (expected a file)\n`);
    const m = run(['import', 'pvesh', join(dir, 'none.json'), '--map', MAP]);
    assert.equal(m.status, 2, m.stderr);
    assert.equal(m.stderr, `portolan: ${join(dir, 'none.json')}: the pvesh output does not exist\n`);
  });
});

describe('import: an inventory past 4 MiB is checked too', () => {
  it('an import of more than 4 MiB that does not validate writes nothing; a valid one validates', {
    timeout: 120_000,
  }, () => {
    // Five VMs with names of a megabyte each: the descriptions quote them, so the inventory is
    // over 5 MiB. Imports past 4 MiB (the catalog limit) were written without being checked.
    const dir = mkdtempSync(join(tmpdir(), 'portolan-import-big-'));
    const json = join(dir, 'pvesh.json');
    const vms = Array.from({ length: 5 }, (_, i) => ({
      type: 'qemu',
      vmid: 100 + i,
      name: `${'v'.repeat(1024 * 1024)}${i}`,
      node: 'pve-01',
      status: 'running',
      tags: 'linux',
    }));
    writeFileSync(json, JSON.stringify([{ type: 'node', node: 'pve-01', status: 'online' }, ...vms]));
    // A rule for every name gives the cluster node a fact its role does not take.
    const bad = join(dir, 'bad-map.yaml');
    writeFileSync(bad, readFileSync(MAP, 'utf8').replace('name: "^sql"', 'name: "."'));
    const out = join(dir, 'site.yaml');
    const r = runCli(['import', 'pvesh', json, '--map', bad, '-o', out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      // Located where it was written: the row the host came from, and the rule that gave the fact
      // (it named the output file, which is never written when the check fails).
      /^portolan: the imported inventory does not validate, nothing written: pvesh\.json\[0\] hosts\.pve-01\.facts\.databases: unknown fact "databases".* \(given by the map's rule at \S+bad-map\.yaml:13:\d+ import\.rules\[0\]\.facts\.databases\)$/m,
    );
    assert.throws(() => readFileSync(out), /ENOENT/, 'nothing written');
    const ok = runCli(['import', 'pvesh', json, '--map', MAP, '-o', out], {
      env: { PORTOLAN_MAX_INVENTORY_SIZE: '5MiB' },
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(readFileSync(out).length > 5 * 1024 * 1024);
    assert.match(
      ok.stderr,
      /imported 6 of 6 rows .*; it validates, and at 5\.\d MiB is over the 5 MiB inventory limit: read it with --max-inventory-size or PORTOLAN_MAX_INVENTORY_SIZE\n$/,
    );
  });
});
