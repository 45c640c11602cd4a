import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { displayWidth } from '../src/util/width.js';
import { BIN, type CliResult, cliEnv, ROOT, runCli } from './helpers.js';

/** The commands `portolan help` lists. */
function commands(): string[] {
  const r = runCli(['help'], { env: { COLUMNS: '80' } });
  const block = r.stdout.split('Commands:\n')[1]?.split('\n\n')[0] ?? '';
  return [...block.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1] as string);
}

function products(): string[] {
  return (JSON.parse(runCli(['catalog', '--format', 'json']).stdout) as { product: string }[]).map(
    (c) => c.product,
  );
}

/** Lines wider than `columns` that are more than one unbreakable token (a URL alone may run past). */
function overflowing(text: string, columns: number): string[] {
  return text.split('\n').filter((l) => displayWidth(l) > columns && /\s/.test(l.trim()));
}

describe('help and catalog fit the terminal', () => {
  const names = commands();

  it('portolan help lists every command', () => {
    assert.ok(names.length >= 12, names.join(' '));
    for (const n of ['plan', 'catalog', 'export', 'check', 'probe', 'lab', 'import', 'validate'])
      assert.ok(names.includes(n), n);
  });

  it("every command's help lists the options every command takes (--catalog, --no-color, --debug, -h)", () => {
    for (const n of names) {
      const r = runCli(['help', n], { env: { COLUMNS: '100' } });
      assert.equal(r.code, 0, n);
      const common = r.stdout.split('Options for every command:\n')[1] ?? '';
      for (const flag of ['--catalog DIR', '--no-color', '--debug', '-h, --help'])
        assert.ok(common.includes(flag), `portolan help ${n} does not list ${flag}`);
    }
  });

  it('a Usage line breaks between options, never inside one ([--bind ADDR] stays whole)', () => {
    for (const n of names) {
      const text = runCli(['help', n], { env: { COLUMNS: '80' } }).stdout;
      const usage = text.slice(0, text.indexOf('\n\n'));
      for (const line of usage.split('\n'))
        assert.equal(line.split('[').length, line.split(']').length, `portolan help ${n}: ${line}`);
    }
  });

  for (const columns of [80, 60])
    it(`every command's help fits COLUMNS=${columns}, and --help prints the same as help CMD`, () => {
      const env = { COLUMNS: String(columns) };
      const top = runCli(['help'], { env });
      assert.deepEqual(overflowing(top.stdout, columns), []);
      for (const n of names) {
        const r = runCli(['help', n], { env });
        assert.equal(r.code, 0, `${n}: ${r.stderr}`);
        assert.deepEqual(overflowing(r.stdout, columns), [], `portolan help ${n}`);
        assert.equal(runCli([n, '--help'], { env }).stdout, r.stdout, n);
      }
    });

  it('wrapping keeps every word: the help at 80 columns has the words of the help at 1000', () => {
    for (const n of names) {
      const wide = runCli(['help', n], { env: { COLUMNS: '1000' } }).stdout;
      const narrow = runCli(['help', n], { env: { COLUMNS: '80' } }).stdout;
      assert.deepEqual(narrow.split(/\s+/), wide.split(/\s+/), n);
    }
  });

  it('a description on the lines under a long option stays at the description column when wrapped', () => {
    for (const n of ['plan', 'export', 'validate', 'check']) {
      const lines = runCli(['help', n], { env: { COLUMNS: '60' } }).stdout.split('\n');
      const at = lines.findIndex((l) => l.startsWith('  --max-inventory-size SIZE'));
      assert.ok(at >= 0, n);
      const block: string[] = [];
      for (let k = at + 1; k < lines.length && /^ {21}\S/.test(lines[k] as string); k++)
        block.push(lines[k] as string);
      assert.ok(block.length >= 3, `${n}: ${lines.slice(at, at + 6).join('\n')}`);
      assert.match(
        lines[at + block.length + 1] as string,
        /^( {2}\S|$)/,
        `${n}: a line of the description is indented further`,
      );
    }
  });

  it('an option\'s description continues under its description column ("export --to")', () => {
    const r = runCli(['help', 'export'], { env: { COLUMNS: '80' } });
    const lines = r.stdout.split('\n');
    const at = lines.findIndex((l) => l.startsWith('  -t, --to FORMAT    one of: '));
    assert.ok(at >= 0, r.stdout);
    assert.match(lines[at + 1] ?? '', /^ {21}\S/);
  });

  it('catalog and catalog PRODUCT (en and ja, Japanese counted double width) fit COLUMNS=80', () => {
    const env = { COLUMNS: '80' };
    assert.deepEqual(overflowing(runCli(['catalog'], { env }).stdout, 80), []);
    for (const p of products())
      for (const lang of ['en', 'ja']) {
        const r = runCli(['catalog', p, '--lang', lang], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(overflowing(r.stdout, 80), [], `catalog ${p} --lang ${lang}`);
      }
  });

  it('catalog PRODUCT piped, without COLUMNS, is not wrapped: grep finds a source row whole', () => {
    const r = runCli(['catalog', 'platespin']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^ {4}source: 003_a7e0e83404719d03\.txt block-based row 1 \(heading: Legacy - applies to Portability Suite 8\.1\.3\/Forge 2\.5 and below\); PlateSpin Forge 2\.5 /m,
    );
  });

  it('catalog PRODUCT with a wide COLUMNS keeps each entry on its line', () => {
    const r = runCli(['catalog', 'platespin'], { env: { COLUMNS: '1000' } });
    assert.ok(r.stdout.split('\n').some((l) => displayWidth(l) > 80));
  });
});

describe('usage errors: one line, then where the usage is', () => {
  for (const n of commands())
    it(`${n} --no-such-option: the error and "run \`portolan help ${n}\` for usage", exit 2`, () => {
      const r = runCli(n === 'lab' ? ['lab', 'up', '--no-such-option'] : [n, '--no-such-option']);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `portolan: unknown option --no-such-option\nrun \`portolan help ${n}\` for usage\n`,
      );
    });

  it('a missing argument or value says what is missing, then the hint', () => {
    const cases: [string[], string][] = [
      [['export', 'examples/mixed-site.yaml'], 'portolan: --to FORMAT is required'],
      [['export', 'examples/mixed-site.yaml', '--to'], 'portolan: -t, --to needs a value'],
      [['plan'], 'portolan: expected one inventory file, got 0'],
      [['lab', 'frob'], 'portolan: unknown lab command "frob"'],
      [['probe', '127.0.0.1'], 'portolan: expected HOST and PORTS, got 1 argument'],
      [['import', 'rvtools'], 'portolan: expected a source kind and one file, got 1 argument\n'],
    ];
    for (const name of ['version', '-v']) {
      const r = runCli([name]);
      assert.equal(r.code, 2, name);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(
          `^portolan: unknown command "${name}" \\(the version is printed by portolan --version\\) \\(expected one of: plan, `,
        ),
      );
    }
    for (const [args, first] of cases) {
      const r = runCli(args);
      assert.equal(r.code, 2, args.join(' '));
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 2, r.stderr);
      assert.ok(`${lines[0]}\n`.startsWith(first), r.stderr);
      assert.equal(lines[1], `run \`portolan help ${args[0]}\` for usage`);
    }
  });
});

describe('a bad PORTS says what it takes, once', () => {
  it('probe and check --port: the bad part, the rule and examples; an unknown protocol names tcp and udp', () => {
    const cases: [string[], string][] = [
      [
        ['probe', '127.0.0.1', '99999'],
        'portolan: PORTS "99999" is not a port or low-high range within 1-65535 (expected ports and ranges separated by commas, e.g. 443, 8000-8010 or 22,443,8006)\n',
      ],
      [
        ['probe', '127.0.0.1', '22,x'],
        'portolan: PORTS "22,x": "x" is not a port or low-high range within 1-65535 (expected ports and ranges separated by commas, e.g. 443, 8000-8010 or 22,443,8006)\n',
      ],
      [
        ['probe', '127.0.0.1', '80/sctp'],
        'portolan: PORTS "80/sctp": protocol "sctp" is not one of: tcp, udp (expected PORTS or PORTS/udp, e.g. 443 or 123/udp)\n',
      ],
      [
        ['check', 'examples/lab/loopback.yaml', '--from', 'vbr', '--port', '0'],
        'portolan: --port "0" is not a port or low-high range within 1-65535 (expected ports and ranges separated by commas, e.g. 443, 8000-8010 or 22,443,8006)\n',
      ],
    ];
    for (const [args, said] of cases) {
      const r = runCli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, said);
    }
  });
});

describe('output paths: checked the same way by every command, before any work', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-output-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Exit `code`, one line on stderr matching `re`, nothing on stdout. */
  function oneLine(r: CliResult, code: number, re: RegExp): void {
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }

  it('export --to aws -o FILE: -o must be a directory for a format that writes several files', () => {
    const before = readFileSync(join(ROOT, 'examples/mixed-site.yaml'), 'utf8');
    const r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'aws', '-o', 'examples/mixed-site.yaml']);
    oneLine(
      r,
      2,
      /^portolan: -o "examples\/mixed-site\.yaml" is a file, and --to aws writes several files \(aws\.tf\.json, aws\.cfn\.json\) \(expected a directory/,
    );
    assert.equal(readFileSync(join(ROOT, 'examples/mixed-site.yaml'), 'utf8'), before);
  });

  it('-o FILE in a missing directory is refused by export, check, init and import (exit 2), nothing created', () => {
    const missing = join(dir, 'missing');
    const cases: string[][] = [
      ['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', join(missing, 'x.nft')],
      ['check', 'examples/lab/loopback.yaml', '--from', 'vbr', '-o', join(missing, 'check.json')],
      ['init', 'veeam-proxmox', '-o', join(missing, 'site.yaml')],
      [
        'import',
        'pvesh',
        'tests/fixtures/import/pvesh-resources.json',
        '--map',
        'tests/fixtures/import/map-veeam.yaml',
        '-o',
        join(missing, 'site.yaml'),
      ],
    ];
    for (const args of cases) {
      const r = runCli(args);
      oneLine(
        r,
        2,
        new RegExp(
          `^portolan: -o "${missing}/[a-z.]+": the directory ${missing} does not exist \\(expected a file in an existing directory; create it first\\)\\n$`,
        ),
      );
      assert.equal(existsSync(missing), false, args[0]);
    }
  });

  it('--output-dir that is a file is refused before the check', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x\n');
    const r = runCli(['check', 'examples/lab/loopback.yaml', '--from', 'vbr', '--output-dir', file]);
    oneLine(r, 2, /^portolan: --output-dir "\S+a-file" is a file \(expected a directory/);
  });

  it('export -o FILE says "wrote FILE" on stderr, as -o DIR says "wrote N files to DIR"', () => {
    const file = join(dir, 'site.nft');
    const r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^wrote ${file}$`, 'm'));
    assert.match(readFileSync(file, 'utf8'), /table inet/);
    const d = runCli(['export', 'examples/mixed-site.yaml', '--to', 'aws', '-o', join(dir, 'aws')]);
    assert.equal(d.code, 0, d.stderr);
    // The count is what is on disk: the export's files and their list.
    const awsDir = join(dir, 'aws');
    const onDisk = readdirSync(awsDir, { recursive: true })
      .map(String)
      .filter((f) => statSync(join(awsDir, f)).isFile());
    assert.match(
      d.stderr,
      new RegExp(
        `^wrote ${onDisk.length} files to ${awsDir}: ${onDisk.length - 1} aws files and their list \\.portolan-aws\\.files$`,
        'm',
      ),
    );
    assert.ok(onDisk.includes('.portolan-aws.files'), onDisk.join(' '));
    for (const format of ['firewalld', 'ufw']) {
      const out = join(dir, format);
      const r2 = runCli([
        'export',
        'examples/mixed-site.yaml',
        '--to',
        format,
        '--host',
        'proxy-01',
        '-o',
        `${out}/`,
      ]);
      assert.equal(r2.code, 0, r2.stderr);
      const files = readdirSync(out, { recursive: true })
        .map(String)
        .filter((f) => statSync(join(out, f)).isFile());
      assert.match(r2.stderr, new RegExp(`^wrote ${files.length} files to ${out}/: `, 'm'), format);
    }
  });

  it('a directory that takes no new file: one line with the path, the system error and what was expected', () => {
    const r = runCli(['init', 'veeam-proxmox', '-o', '/proc/nope.yaml']);
    oneLine(
      r,
      1,
      /^portolan: cannot write \/proc\/nope\.yaml: ENOENT \(no such file or directory\); expected a file in a directory this user can create files in \(\/proc is not one\)\n$/,
    );
  });
});

describe('"-" means stdin and stdout, as it does to other command-line tools', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-dash-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const site = join(ROOT, 'examples/druva-vmware.yaml');

  /** The CLI run in `dir` (where a file named `-` would appear), with `input` on stdin. */
  function inDir(args: readonly string[], input = ''): CliResult {
    const r = spawnSync(process.execPath, [BIN, ...args], {
      cwd: dir,
      encoding: 'utf8',
      env: cliEnv(),
      input,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('-o - writes to stdout for plan, export, init and import, and no file named - appears', () => {
    const cases: { args: string[]; first: RegExp }[] = [
      { args: ['plan', site, '--format', 'csv', '-o', '-'], first: /^product,from,from_address,to,/ },
      {
        args: ['export', site, '--to', 'nftables', '--host', 'sql-01', '-o', '-'],
        first: /^# Generated by portolan/,
      },
      {
        args: ['init', 'platespin', '-o', '-'],
        first: /^# Site inventory skeleton written by portolan init/,
      },
      {
        args: [
          'import',
          'pvesh',
          join(ROOT, 'tests/fixtures/import/pvesh-resources.json'),
          '--map',
          join(ROOT, 'tests/fixtures/import/map-veeam.yaml'),
          '-o',
          '-',
        ],
        first: /^# Generated by portolan/,
      },
    ];
    for (const c of cases) {
      const r = inDir(c.args);
      assert.equal(r.code, 0, `${c.args[0]}: ${r.stderr}`);
      assert.match(r.stdout, c.first, c.args[0]);
      assert.equal(existsSync(join(dir, '-')), false, `${c.args[0]} -o - wrote a file named -`);
    }
  });

  it('-o - where -o is written beside stdout (check, probe) is one line and exit 2, no file named -', () => {
    for (const args of [
      ['check', join(ROOT, 'examples/lab/loopback.yaml'), '--from', 'vbr', '-o', '-'],
      ['probe', '127.0.0.1', '9', '-o', '-'],
    ]) {
      const r = inDir(args);
      assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /^portolan: -o "-": this option takes a file, not stdout \(expected -o FILE; \.\/- names a file called -\)\n$/m,
      );
      assert.equal(existsSync(join(dir, '-')), false, args[0]);
    }
  });

  it('SITE.yaml - reads the inventory from stdin (plan, validate, export), and errors are located at -', () => {
    const text = readFileSync(site, 'utf8');
    const plan = inDir(['plan', '-', '--format', 'json'], text);
    assert.equal(plan.code, 0, plan.stderr);
    assert.equal(JSON.parse(plan.stdout).site, 'druva-dc1');
    assert.equal(plan.stdout, inDir(['plan', site, '--format', 'json']).stdout);
    const valid = inDir(['validate', '-'], text);
    assert.equal(valid.code, 0, valid.stderr);
    assert.match(valid.stdout + valid.stderr, /^-: ok \(site druva-dc1: 10 hosts/m);
    const nft = inDir(['export', '-', '--to', 'nftables', '--host', 'sql-01'], text);
    assert.equal(nft.code, 0, nft.stderr);
    assert.equal(nft.stdout, inDir(['export', site, '--to', 'nftables', '--host', 'sql-01']).stdout);
    const bad = inDir(
      ['plan', '-'],
      readFileSync(join(ROOT, 'tests/fixtures/bad/14-unknown-role.yaml'), 'utf8'),
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^portolan: -:5:42 hosts\.vbr-01\.roles\[0\]: unknown role "backup-proxy"/);
    assert.equal(bad.stderr.trimEnd().split('\n').length, 1, bad.stderr);
  });
});
