/**
 * What the command line makes of bad input, beyond any one file format: control and format
 * characters in an inventory, zone indexes, errors of an import's generated inventory, endless
 * sources, several files to validate and its JSON report, options a command has no use for, the
 * bare command, and the owner of a file that is rewritten.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAddress } from '../src/model/address.js';
import { BIN, cliEnv, ROOT, runCli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'portolan-policy-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, text: string): string => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};
const HOSTS = 'hosts:\n  a: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy] }\n';
const site = (name: string, top: string, hosts = HOSTS) =>
  write(name, `${top}products:\n  druva-vmware: {}\n${hosts}`);
/** Any character the policy refuses, as a terminal or a config comment would take it. */
const RAW =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;
const STACK = /^\s+at /m;

describe('control and format characters in an inventory', () => {
  // The site pattern refused C0 and DEL only: C1 (U+0085, U+009B), U+2028 and the bidirectional
  // controls went through to terminals and the comments of generated configs.
  const cases: [string, string, string, RegExp][] = [
    [
      'C1 NEL in the site',
      'site: "east\\u0085dc"\n',
      'site',
      /"east\\u0085dc" holds U\+0085 \(a C1 control character\) at character 5/,
    ],
    ['C1 CSI in the site', 'site: "a\\u009b31m"\n', 'site', /holds U\+009B \(a C1 control character\)/],
    [
      'a line separator in the site',
      'site: "a\\u2028b"\n',
      'site',
      /holds U\+2028 \(a line or paragraph separator\)/,
    ],
    [
      'a bidi override in the description',
      'site: s\ndescription: "x\\u202ey"\n',
      'description',
      /holds U\+202E \(a bidirectional control character\)/,
    ],
    ['an isolate in the site', 'site: "a\\u2066b"\n', 'site', /holds U\+2066/],
    [
      'ESC in the description',
      'site: s\ndescription: "\\e[31mred"\n',
      'description',
      /holds U\+001B \(a C0 control character\) at character 1/,
    ],
    ['DEL in the site', 'site: "a\\u007fb"\n', 'site', /holds U\+007F \(DEL\)/],
  ];
  for (const [what, top, path, message] of cases)
    test(`${what}: refused where it is written, exit 2, the character named and escaped`, () => {
      const file = site(`${path}-${what.replace(/\W+/g, '-')}.yaml`, top);
      for (const command of ['validate', 'plan']) {
        const r = runCli([command, file]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stdout, '');
        const line = top.startsWith('site: "') ? 1 : 2;
        assert.match(
          r.stderr,
          new RegExp(`^portolan: ${file.replace(/[.]/g, '\\.')}:${line}:\\d+ ${path}: `),
        );
        assert.match(r.stderr, message);
        assert.doesNotMatch(r.stderr, RAW);
        assert.doesNotMatch(r.stderr, STACK);
      }
    });

  test('a host description may hold tabs and line breaks, not a C1 control; every value is checked', () => {
    const ok = site(
      'multiline.yaml',
      'site: s\n',
      'hosts:\n  a: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy], description: "two\\tcolumns\\nand lines" }\n',
    );
    assert.equal(runCli(['validate', ok]).code, 0);
    const bad = site(
      'host-desc.yaml',
      'site: s\n',
      'hosts:\n  a: { address: 10.0.0.1, roles: [druva-vmware:backup-proxy], description: "x\\u0085" }\n  b: { address: "10.0.0.2\\u009b", roles: [druva-vmware:vcenter] }\n',
    );
    const r = runCli(['validate', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /:5:\d+ hosts\.a\.description: "x\\u0085" holds U\+0085/);
    assert.match(r.stderr, /:6:\d+ hosts\.b\.address: "10\.0\.0\.2\\u009b" holds U\+009B/);
    assert.match(r.stderr, /: 2 errors\n$/);
  });

  test("the schema's site pattern, for editors, refuses what the loader refuses", () => {
    for (const name of ['inventory', 'import-map']) {
      const schema = JSON.parse(readFileSync(join(ROOT, 'schema', `${name}.json`), 'utf8'));
      const pattern = new RegExp(schema.properties.site.pattern, 'u');
      assert.ok(pattern.test('east-dc 日本語'), name);
      for (const ch of ['\u0085', '\u009b', '\u2028', '\u2029', '\u202e', '\u2066', '\u200f', '\ufeff', '\t'])
        assert.ok(!pattern.test(`a${ch}b`), `${name}: U+${ch.codePointAt(0)?.toString(16)}`);
    }
  });

  test('an error quoting a command-line value escapes its controls (--format, PORTS)', () => {
    const r = runCli(['plan', 'examples/mixed-site.yaml', '--format', 'j\u009b2Json']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--format "j\\u009b2Json" is not one of/);
    const p = runCli(['probe', '127.0.0.1', '22\u202e']);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /PORTS "22\\u202e"/);
    assert.doesNotMatch(r.stderr + p.stderr, RAW);
  });
});

describe("a catalog's text, escaped where it is output", () => {
  test('U+2028 and U+2029 in a catalog reach no plan table, CSV or Markdown raw', () => {
    // A catalog's text is escaped at output (sanitize); it kept the line and paragraph separators,
    // which an editor or browser shows as line breaks inside one cell.
    const home = join(dir, 'sep');
    cpSync(join(ROOT, 'tests', 'fixtures', 'hostile'), home, { recursive: true });
    const cat = join(home, 'catalog', 'evil.yaml');
    writeFileSync(cat, readFileSync(cat, 'utf8').replace('\\u2066iso"', '\\u2066iso \\u2028ls \\u2029ps"'));
    assert.match(readFileSync(cat, 'utf8'), /\\u2028ls/);
    for (const format of ['table', 'csv', 'markdown']) {
      const r = runCli(['plan', join(home, 'site.yaml'), '--format', format]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /ls/, format);
      assert.doesNotMatch(r.stdout, /[\u2028\u2029]/, format);
    }
  });
});

describe('zone indexes', () => {
  test("a zone index holding '/' is named as a zone with a prefix, not a bad prefix", () => {
    // It said 'prefix /b is out of range'.
    const r = parseAddress('fe80::1%a/b');
    assert.ok('error' in r);
    assert.match(r.error, /^"fe80::1%a\/b" gives a zone index with a prefix \(%a\/b\)/);
    const cidr = parseAddress('fe80::1%eth0/64');
    assert.ok('error' in cidr);
    assert.match(cidr.error, /gives a zone index with a prefix/);
  });

  test('a zone index after something that is not IPv6, or one that is no interface, is said so', () => {
    const v4 = parseAddress('10.0.0.1%eth0');
    assert.ok('error' in v4);
    assert.match(v4.error, /has a '%' zone index after "10\.0\.0\.1", which is not an IPv6 address/);
    const space = parseAddress('fe80::1%eth 0');
    assert.ok('error' in space);
    assert.match(space.error, /has the zone index "eth 0", which is not an interface name or number/);
    const empty = parseAddress('fe80::1%');
    assert.ok('error' in empty);
    assert.match(empty.error, /zone index ""/);
    const global = parseAddress('2001:db8::1%eth0');
    assert.ok('error' in global);
    assert.match(global.error, /only a link-local address \(fe80::\/10\) takes/);
    assert.deepEqual(parseAddress('fe80::1%eth0'), { kind: 'ip', text: 'fe80::1%eth0', version: 6 });
  });

  test('probe HOST with a zone and a prefix is one exit-2 line naming the zone', () => {
    const r = runCli(['probe', 'fe80::1%lo/64', '22']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^portolan: HOST: "fe80::1%lo\/64" gives a zone index with a prefix/);
  });
});

describe('import: the generated inventory refused', () => {
  const FIX = join(ROOT, 'tests', 'fixtures', 'import');
  const map = (name: string, from: string, to: string) => {
    return write(name, readFileSync(join(FIX, 'map-veeam.yaml'), 'utf8').replace(from, to));
  };

  test("an error the map wrote is located in the map, not at 'stdout'", () => {
    const m = map('typo-map.yaml', 'features: [app-aware]', 'features: [app-awar]');
    const r = runCli(['import', 'rvtools', join(FIX, 'rvtools-vInfo.csv'), '--map', m]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.doesNotMatch(r.stderr, /stdout/);
    assert.match(
      r.stderr,
      new RegExp(
        `^portolan: the imported inventory does not validate, nothing written: ${m.replace(/[.]/g, '\\.')}:4:\\d+ products\\.veeam-proxmox\\.features\\[0\\]: unknown feature "app-awar"`,
        'm',
      ),
    );
  });

  test("a host's error is located at its source row, and a fact a rule gave at that rule", () => {
    const m = map('fact-map.yaml', 'databases: [mssql]', 'databases: [mssqlx]');
    const r = runCli(['import', 'rvtools', join(FIX, 'rvtools-vInfo.csv'), '--map', m]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /nothing written: rvtools-vInfo\.csv:2 hosts\.sql-01\.facts\.databases\[0\]: "mssqlx" is not allowed for veeam-proxmox:guest .* \(given by the map's rule at .*fact-map\.yaml:13:\d+ import\.rules\[0\]\.facts\.databases\)$/m,
    );
  });

  test('an endless pipe of text for pvesh stops at its 64 MiB limit', { timeout: 120_000 }, () => {
    const r = spawnSync(
      'sh',
      [
        '-c',
        `yes '[' | "${process.execPath}" "${BIN}" import pvesh /dev/stdin --map "${join(FIX, 'map-veeam.yaml')}"`,
      ],
      { cwd: ROOT, encoding: 'utf8', env: cliEnv() },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.equal(
      r.stderr,
      'portolan: /dev/stdin: the pvesh output is more than 67108864 bytes; the limit is 67108864 bytes (64 MiB)\n',
    );
  });
});

describe('validate: several files, and JSON', () => {
  test('each file is reported; exit 2 when any is bad', () => {
    const good = 'examples/platespin.yaml';
    const bad = site(
      'bad-addr.yaml',
      'site: s\n',
      'hosts:\n  a: { address: 10.0.0.300, roles: [druva-vmware:backup-proxy] }\n',
    );
    const r = runCli(['validate', good, bad, join(dir, 'missing.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /^examples\/platespin\.yaml: ok \(site migrate-2019: 6 hosts/);
    assert.match(
      r.stderr,
      /bad-addr\.yaml:5:17 hosts\.a\.address: "10\.0\.0\.300" is not a valid IPv4 address/,
    );
    assert.match(r.stderr, /missing\.yaml: the inventory does not exist\n$/);
    assert.equal(runCli(['validate', good, 'examples/druva-vmware.yaml']).code, 0);
  });

  test('--format json lists every problem with file, line, column, path and message', () => {
    const bad = site(
      'two-bad.yaml',
      'site: s\n',
      'hosts:\n  a: { address: 10.0.0.300, roles: [druva-vmware:backup-proxy] }\n  b: { address: 10.0.0.2, roles: [druva-vmware:nope] }\n',
    );
    const r = runCli([
      'validate',
      'examples/mixed-site.yaml',
      bad,
      join(dir, 'none.yaml'),
      '--format',
      'json',
    ]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, '');
    const report = JSON.parse(r.stdout);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.files.map((f: { file: string; ok: boolean }) => [f.file, f.ok]),
      [
        ['examples/mixed-site.yaml', true],
        [bad, false],
        [join(dir, 'none.yaml'), false],
      ],
    );
    const [good, two, none] = report.files;
    assert.equal(good.site, 'east-dc');
    assert.equal(good.hosts, 15);
    assert.deepEqual(good.warnings[0], {
      file: 'examples/mixed-site.yaml',
      line: 7,
      column: 3,
      path: 'products.druva-vmware',
      message: 'no host has role druva-vmware:cloudcache; its 2 catalog entries yield no flows',
    });
    assert.deepEqual(two.errors[0], {
      file: bad,
      line: 5,
      column: 17,
      path: 'hosts.a.address',
      message: '"10.0.0.300" is not a valid IPv4 address (expected four decimal octets 0-255)',
    });
    assert.equal(two.errors.length, 2);
    assert.deepEqual(none.errors, [
      { file: join(dir, 'none.yaml'), message: 'the inventory does not exist' },
    ]);
    const ok = runCli(['validate', 'examples/platespin.yaml', '--format', 'json']);
    assert.equal(ok.code, 0);
    assert.equal(JSON.parse(ok.stdout).ok, true);
  });

  test('no file, an empty name, or stdin twice is a usage error', () => {
    for (const args of [['validate'], ['validate', ''], ['validate', '-', '-']]) {
      const r = runCli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /run `portolan help validate` for usage\n$/);
    }
  });
});

describe('the command line', () => {
  test('probe --catalog is refused: probe reads no catalog', () => {
    // It was accepted and ignored.
    const r = runCli(['probe', '127.0.0.1', '22', '--catalog', 'catalog']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^portolan: --catalog: probe reads no catalog/);
  });

  test('portolan alone prints the command list on stderr and exits 2; help on stdout exits 0', () => {
    // It printed the help on stdout and exited 2.
    const bare = runCli([]);
    assert.equal(bare.code, 2);
    assert.equal(bare.stdout, '');
    assert.match(bare.stderr, /^Usage: portolan <command>/m);
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = runCli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /^Usage: portolan <command>/m);
    }
  });

  test('--help on every command is its usage on stdout, exit 0', () => {
    const names = [
      'plan',
      'catalog',
      'export',
      'check',
      'probe',
      'init',
      'listen',
      'serve',
      'agent',
      'lab',
      'import',
      'validate',
    ];
    for (const name of names)
      for (const args of [
        [name, '--help'],
        ['help', name],
      ]) {
        const r = runCli(args);
        assert.equal(r.code, 0, args.join(' '));
        assert.equal(r.stderr, '', args.join(' '));
        assert.match(r.stdout, new RegExp(`^Usage: portolan ${name}\\b`), args.join(' '));
      }
  });
});

describe('a rewritten file keeps its owner', () => {
  test("root rewriting a file of another user leaves it that user's, with its mode", {
    skip: process.getuid?.() !== 0 ? 'needs root' : false,
  }, () => {
    const out = write('owned.json', '{}\n');
    chownSync(out, 65534, 65534);
    spawnSync('chmod', ['640', out]);
    const r = runCli(['plan', 'examples/platespin.yaml', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    const st = statSync(out);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o640]);
    assert.ok(st.size > 100);
  });
});

describe('a file name with control characters in a message', () => {
  // A file's name was printed as given inside FILE:LINE:COL: a line feed split the message in two
  // (a forged second line) and validate's warnings kept it; now the name is quoted, escaped.
  const name = 'x\u001b]0;t\u0007\n\u2028y.yaml';
  const good = join(dir, name);
  cpSync(join(ROOT, 'examples/mixed-site.yaml'), good);
  const bad = write(`b${name}`, 'site: x\nhosts: [\n');
  for (const [what, args] of [
    ['plan of a bad file', ['plan', bad]],
    ['plan of a missing file', ['plan', join(dir, `none${name}`)]],
    ['validate of good, bad and missing files', ['validate', good, bad, join(dir, `none${name}`)]],
  ] as const)
    test(what, () => {
      const r = runCli([...args]);
      assert.equal(r.code, 2, r.stderr);
      const out = r.stdout + r.stderr;
      assert.doesNotMatch(out, RAW);
      for (const line of out.split('\n').filter(Boolean))
        assert.match(line, /^(portolan: )?"[^"]*x\\u001b\]0;t\\u0007\\n\\u2028y\.yaml"/, line);
    });
});

test('validate --format json writes C1, DEL and bidirectional controls as \\u escapes', () => {
  // JSON.stringify escapes C0 only: a file name or an alias holding U+009B (a one-character CSI)
  // or U+202E reached the terminal raw inside the JSON.
  const name = join(dir, 'j\u009b31m\u202e.yaml');
  writeFileSync(name, 'site: east\nproducts:\n  druva-vmware: *x\u009b31m\u007fy\nhosts: {}\n');
  const r = runCli(['validate', '--format', 'json', name]);
  assert.equal(r.code, 2, r.stderr);
  assert.doesNotMatch(r.stdout, RAW);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.files[0].file, name);
  assert.match(doc.files[0].errors[0].message, /alias \*x\u009b31m\u007fy has no anchor/);
});
