/**
 * Hostile and broken input files (issue 10): every one gives one located line on stderr and exit 2,
 * never a hang, a crash (exit 70), a renamed host or a quoted secret. Inputs that cannot be committed
 * (devices, FIFOs, symbolic link loops, unreadable directories, multi-megabyte files) are made here.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, type CliResult, ROOT, runCli } from './helpers.js';

const STACK_LINE = /^\s+at /m;
const PROXY = 'roles: [druva-vmware:backup-proxy]';

function oneLine(r: CliResult, what: string): string {
  assert.equal(r.code, 2, `${what}: exit code (stderr: ${r.stderr.slice(0, 500)})`);
  assert.equal(r.stdout, '', `${what}: stdout must be empty`);
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  assert.equal(lines.length, 1, `${what}: one line on stderr: ${JSON.stringify(r.stderr.slice(0, 500))}`);
  assert.doesNotMatch(r.stderr, STACK_LINE);
  return lines[0] ?? '';
}

/** Runs the CLI as the unprivileged user nobody (root reads every directory). */
function runAsNobody(args: string[]): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: '/',
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    uid: 65534,
    gid: 65534,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI asynchronously (a FIFO needs a writer at the same time). */
function runAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('hostile input files', () => {
  let dir = '';
  const site = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-hostile-'));
    chmodSync(dir, 0o755);
  });
  after(() => {
    if (dir) {
      spawnSync('chmod', ['-R', 'u+rwx', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a header of comments and blank lines is read in one pass, however long', { timeout: 120_000 }, () => {
    // A pattern with nested repetition over comment lines backtracked exponentially: twelve
    // comment lines took minutes. Real inventories start with a comment header (init writes one).
    const header = Array.from({ length: 200 }, (_, i) => (i % 3 === 2 ? '' : `# header line ${i}`)).join(
      '\n',
    );
    const ok = runCli([
      'validate',
      site(
        'header.yaml',
        `${header}\nsite: h\nproducts:\n  druva-vmware: {}\nhosts:\n  p: { address: 10.0.0.1, ${PROXY} }\n`,
      ),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /header\.yaml: ok \(site h:/);
    const empty = oneLine(
      runCli(['validate', site('only-comments.yaml', `${header}\n   \n\t# indented\n`)]),
      'comments only',
    );
    assert.match(empty, /only-comments\.yaml:1:1: the inventory is empty \(expected a YAML mapping\)/);
  });

  test('brackets nested millions deep are refused at the first level too deep, without parsing them all', {
    timeout: 120_000,
  }, () => {
    const n = 1_900_000;
    const file = site(
      'deep.yaml',
      `site: d\nhosts:\n  p:\n    description: ${'['.repeat(n)}${']'.repeat(n)}\n`,
    );
    const line = oneLine(runCli(['validate', file]), 'deep brackets');
    // The first bracket is at column 18, on the third level (the document, hosts, p); the 62nd
    // bracket is level 65, the first too deep, as the parser would have said after parsing it all.
    assert.equal(
      line,
      `portolan: ${file}:4:${17 + 62}: YAML: nested more than 64 levels deep (expected at most 64 levels of lists and mappings)`,
    );
  });

  test('/dev/zero as the inventory is refused at its first NUL byte, not after reading the limit', () => {
    const line = oneLine(runCli(['validate', '/dev/zero']), '/dev/zero');
    assert.equal(line, 'portolan: /dev/zero:1:1: the inventory contains a NUL byte (expected YAML text)');
  });

  test('an endless pipe of text as the inventory is refused after reading limit + 1 bytes', {
    timeout: 120_000,
  }, () => {
    // `yes` never ends and never writes a NUL: only the limit stops the read.
    const r = spawnSync('sh', ['-c', `yes '# x' | "${process.execPath}" "${BIN}" validate -`], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
    });
    const line = oneLine({ code: r.status, stdout: r.stdout, stderr: r.stderr }, 'yes |');
    assert.equal(
      line,
      'portolan: -: the inventory is more than 67108864 bytes; the limit is 67108864 bytes (64 MiB); raise it with --max-inventory-size SIZE or PORTOLAN_MAX_INVENTORY_SIZE=SIZE (e.g. 128MiB)',
    );
  });

  test('/dev/zero as a catalog (--catalog) is refused the same way', () => {
    const file = site(
      'zero-cat.yaml',
      `site: z\nproducts: {}\nhosts:\n  a: { address: 10.0.0.1, ${PROXY} }\n`,
    );
    const line = oneLine(runCli(['validate', file, '--catalog', '/dev/zero']), 'catalog /dev/zero');
    assert.equal(line, 'portolan: /dev/zero:1:1: the catalog contains a NUL byte (expected YAML text)');
  });

  test('a NUL after the first chunk read is located at its line and column', () => {
    const file = site('late-nul.yaml', `${'# padding\n'.repeat(20_000)}site: z\0\n`);
    const line = oneLine(runCli(['validate', file]), 'late NUL');
    assert.equal(line, `portolan: ${file}:20001:8: the inventory contains a NUL byte (expected YAML text)`);
  });

  test('a FIFO without a writer reads as empty, never hangs', { timeout: 120_000 }, () => {
    const fifo = join(dir, 'nowriter.yaml');
    spawnSync('mkfifo', [fifo]);
    const line = oneLine(runCli(['validate', fifo]), 'fifo');
    assert.match(line, /nowriter\.yaml:1:1: the inventory is empty/);
  });

  test('a FIFO whose writer never writes is given up on, with a one-line error', {
    timeout: 120_000,
  }, async () => {
    const fifo = join(dir, 'silent.yaml');
    spawnSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `exec 3>"${fifo}"; sleep 60`]);
    try {
      const line = oneLine(await runAsync(['validate', fifo]), 'silent fifo');
      assert.match(line, /silent\.yaml: the inventory is a pipe that sent nothing for 10 s/);
    } finally {
      writer.kill();
    }
  });

  test('a pipe with an inventory in it is read (process substitution)', { timeout: 120_000 }, async () => {
    const fifo = join(dir, 'piped.yaml');
    spawnSync('mkfifo', [fifo]);
    const writer = spawn('sh', [
      '-c',
      `printf 'site: p\\nproducts:\\n  druva-vmware: {}\\nhosts:\\n  a: { address: 10.0.0.1, ${PROXY} }\\n' > "${fifo}"`,
    ]);
    const r = await runAsync(['validate', fifo]);
    writer.kill();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ok \(site p: 1 host, /);
  });

  test('a symbolic link loop is named as such, for the inventory and for a catalog', () => {
    symlinkSync('loop-b', join(dir, 'loop-a'));
    symlinkSync('loop-a', join(dir, 'loop-b'));
    assert.equal(
      oneLine(runCli(['validate', join(dir, 'loop-a')]), 'loop inventory'),
      `portolan: ${join(dir, 'loop-a')}: the inventory is a symbolic link loop (too many levels of symbolic links)`,
    );
    const file = site(
      'loop-cat.yaml',
      `site: l\ncatalogs: [loop-a]\nproducts: {}\nhosts:\n  a: { address: 10.0.0.1, ${PROXY} }\n`,
    );
    assert.match(
      oneLine(runCli(['validate', file]), 'loop catalog'),
      /loop-cat\.yaml:2:12 catalogs\[0\]: "loop-a" is a symbolic link loop/,
    );
  });

  test('an unreadable catalog directory is a located exit-2 error, not an internal error', () => {
    const cat = join(dir, 'locked');
    mkdirSync(cat);
    writeFileSync(join(cat, 'c.yaml'), 'product: x\n');
    chmodSync(cat, 0o000);
    const file = site(
      'locked.yaml',
      `site: l\ncatalogs: [locked]\nproducts: {}\nhosts:\n  a: { address: 10.0.0.1, ${PROXY} }\n`,
    );
    const line = oneLine(runAsNobody(['validate', file]), 'EACCES');
    assert.equal(
      line,
      `portolan: ${cat}: the catalog directory cannot be read: permission denied (expected a directory of catalog YAML files this user can list)`,
    );
  });

  test('host names are strings exactly as written: 007 and 1e3 stay 007 and 1e3', () => {
    const file = site(
      'numeric-names.yaml',
      `site: n\nproducts:\n  druva-vmware: {}\nhosts:\n  007: { address: 10.0.0.7, ${PROXY} }\n  1e3: { address: 10.0.0.8, ${PROXY} }\n  true: { address: 10.0.0.9, ${PROXY} }\n  "7": { address: 10.0.0.10, ${PROXY} }\n`,
    );
    const r = runCli(['plan', file, '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const hosts = new Set(
      (JSON.parse(r.stdout) as { flows: { to: { host: string | null } }[] }).flows.map((f) => f.to.host),
    );
    assert.deepEqual([...hosts].filter((h) => h !== null).sort(), ['007', '1e3', '7', 'true']);
    assert.match(runCli(['validate', file]).stdout, /4 hosts/);
  });

  test('a version YAML reads as a number is taken as written: 5.10 is not 5.1, 0x50 and 1e400 are not versions', () => {
    // String(value) turned 5.10 into 5.1, 0x50 into 80 (accepted) and 1e400 into Infinity.
    const version = (v: string) =>
      site(
        'version.yaml',
        `site: v\nproducts:\n  platespin:\n    version: ${v}\n    edition: forge\nhosts:\n  ps: { address: 10.0.0.1, roles: [platespin:platespin-server] }\n`,
      );
    assert.match(
      oneLine(runCli(['validate', version('5.10')]), '5.10'),
      /version\.yaml:4:14 products\.platespin\.version: platespin edition "forge" never had version "5\.10"/,
    );
    for (const v of ['0x50', '1e400', '-0', '.inf'])
      assert.match(
        oneLine(runCli(['validate', version(`${v}  # written so`)]), v),
        new RegExp(
          `products\\.platespin\\.version: "${v.replace('.', '\\.')}" is not a version \\(expected dotted numbers`,
        ),
      );
  });

  test('--catalog names a catalog outside the inventory directory that catalogs: may not', () => {
    const outside = `${ROOT}tests/fixtures/hostile/catalog`;
    const file = site(
      'outside.yaml',
      `site: o\ncatalogs: [${outside}]\nproducts:\n  evil-product: {}\nhosts:\n  a: { address: 10.0.0.1, roles: [evil-product:client] }\n`,
    );
    assert.match(oneLine(runCli(['validate', file]), 'outside'), /is outside the inventory's directory/);
    const r = runCli(['validate', file, '--catalog', outside]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('a secret file named as a catalog is never quoted back', () => {
    const secret = 'AAAAB3NzaC1yc2EAAAADAQABAAABgQC7secretsecretsecret';
    const key = join(dir, 'id_rsa');
    writeFileSync(key, `-----BEGIN OPENSSH PRIVATE KEY-----\n${secret}\n-----END OPENSSH PRIVATE KEY-----\n`);
    const shadow = join(dir, 'shadow');
    writeFileSync(shadow, 'root:$6$salt$hashhashhash:19000:0:99999:7:::\n');
    for (const f of [key, shadow]) {
      const file = site(
        'secret.yaml',
        `site: s\nproducts: {}\nhosts:\n  a: { address: 10.0.0.1, ${PROXY} }\n`,
      );
      const line = oneLine(runCli(['validate', file, '--catalog', f]), f);
      assert.match(
        line,
        /not a catalog: expected a mapping with the keys product, title, documents, roles, entries/,
      );
      assert.ok(!line.includes(secret) && !line.includes('hashhash') && !line.includes('BEGIN'), line);
    }
  });

  test('alias amplification under the alias cap (3 MiB x 189) is a located exit-2 error', {
    timeout: 300_000,
  }, () => {
    const big = 'x'.repeat(3 * 1024 * 1024 - 300);
    const file = site(
      'amplified.yaml',
      `big: &a "${big}"\nsite: t\nproducts: {}\nhosts:\n  h: { address: 10.0.0.1, roles: [${Array(189).fill('*a').join(', ')}] }\n`,
    );
    const line = oneLine(runCli(['validate', file]), 'amplified');
    assert.match(
      line,
      /amplified\.yaml:5:\d+: YAML: alias \*a makes the document expand to more than 16777216 bytes/,
    );
  });

  test('a mapping of 400,000 keys is parsed in linear time and its duplicate still located', {
    timeout: 600_000,
  }, () => {
    // 40,000 keys took 12.6 s with a quadratic duplicate check: 400,000 would take about 20 minutes.
    const keys = Array.from({ length: 400_000 }, (_, i) => `k${i.toString(36)}: 0`);
    const file = site('many-keys.yaml', `site: t\nproducts: {}\nhosts: {}\nx: {${keys.join(',')},k7: 1}\n`);
    const line = oneLine(runCli(['validate', file]), 'many keys');
    assert.match(
      line,
      /many-keys\.yaml:4:\d+ x\.k7: YAML: duplicate key "k7" \(first at line 4; expected each key once in a mapping\)/,
    );
  });
});

describe('hostile command lines', () => {
  const cases: [string[], RegExp][] = [
    [
      ['probe', '127.0.0.1', '22', '--timeout', '-1'],
      /^portolan: --timeout needs a value, and "-1" after it reads as an option \(write --timeout=-1 if it is the value\)$/,
    ],
    [
      ['probe', '127.0.0.1', '22', '--timeout=-1'],
      /^portolan: --timeout "-1" is not a whole number from 1 to 600000$/,
    ],
    [['plan', 'examples/mixed-site.yaml', '--format'], /^portolan: -f, --format needs a value$/],
    // A multicast target was probed and its ENETUNREACH blamed on a firewall ("blocked", exit 1).
    [
      ['probe', '224.0.0.1', '22'],
      /^portolan: HOST: "224\.0\.0\.1" is a multicast group address, not one host/,
    ],
    // The ports were quoted without the protocol the parser had taken off: PORTS "22/tcp".
    [
      ['probe', '127.0.0.1', '22/tcp/udp'],
      /^portolan: PORTS "22\/tcp\/udp": "22\/tcp" is not a port or low-high range within 1-65535 \(expected PORTS or PORTS\/udp/,
    ],
    [
      ['probe', '127.0.0.1', '23-22/udp'],
      /^portolan: PORTS "23-22\/udp": "23-22": the range's low port is above its high port/,
    ],
    [
      ['plan', 'examples/mixed-site.yaml', '-f', 'json', '--format', 'csv'],
      /^portolan: --format given twice \("json", then "csv"\); expected it once$/,
    ],
    [
      ['export', 'examples/mixed-site.yaml', '--to', 'csv', '--to', 'nftables'],
      /^portolan: --to given twice \("csv", then "nftables"\); expected it once$/,
    ],
    [
      ['check', 'examples/mixed-site.yaml', '--max-rate', '5', '--max-rate', '9'],
      /^portolan: --max-rate given twice/,
    ],
    // An empty argument was counted and then called missing ("expected one inventory file, got 1"),
    // or printed as an empty place (": the catalog path does not exist").
    [['plan', ''], /^portolan: the inventory file is named by an empty argument \(expected a path\)$/],
    [['validate', ''], /^portolan: the inventory file is named by an empty argument \(expected a path\)$/],
    [
      ['import', 'pvesh', '', '--map', 'tests/fixtures/import/map-veeam.yaml'],
      /^portolan: the pvesh file is named by an empty argument \(expected a path\)$/,
    ],
    [
      ['import', 'pvesh', 'tests/fixtures/import/pvesh-resources.json', '--map', ''],
      /^portolan: --map needs a file name \(expected --map MAP\.yaml\)$/,
    ],
    // An empty output (`-o "$OUT"` with OUT unset) wrote an export into the working directory,
    // and sent an import to stdout (a check probed, then failed to write: below).
    [
      ['export', 'examples/mixed-site.yaml', '--to', 'aws', '-o', ''],
      /^portolan: -o needs a directory name \(expected -o DIR\)$/,
    ],
    [
      [
        'import',
        'pvesh',
        'tests/fixtures/import/pvesh-resources.json',
        '--map',
        'tests/fixtures/import/map-veeam.yaml',
        '-o',
        '',
      ],
      /^portolan: -o needs a file name \(expected -o FILE\)$/,
    ],
    [
      ['plan', 'examples/mixed-site.yaml', '--catalog', ''],
      /^portolan: --catalog needs a path \(expected a directory of catalog YAML files or one such file\)$/,
    ],
  ];
  for (const [args, want] of cases) {
    test(`${args.join(' ')}: one usage error, exit 2`, () => {
      const r = runCli(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr.split('\n')[0] ?? '', want);
      assert.doesNotMatch(r.stderr, STACK_LINE);
    });
  }
  test('the same value given twice is harmless', () => {
    const r = runCli(['plan', 'examples/mixed-site.yaml', '-f', 'json', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('files and tokens named on the agent and serve command lines', () => {
  /** runCli with a deadline: the old reads of /dev/zero never ended. */
  const run = (args: string[]): CliResult => {
    const r = spawnSync(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
      timeout: 60_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const cases: [string, string[], RegExp][] = [
    [
      'serve --tls-cert /dev/zero (read forever)',
      ['serve', '--tls-cert', '/dev/zero', '--tls-key', '/dev/zero', '--listen', '127.0.0.1:1'],
      /^portolan: --tls-cert \/dev\/zero: the --tls-cert file is more than 4194304 bytes; the limit is 4194304 bytes \(4 MiB\)$/,
    ],
    [
      'agent --ca /dev/zero (read forever)',
      ['agent', '--server', 'https://127.0.0.1:1', '--token', 'x', '--once', '--ca', '/dev/zero'],
      /^portolan: --ca \/dev\/zero: the --ca file is more than 4194304 bytes/,
    ],
    [
      'agent --token-file /dev/zero (read forever)',
      ['agent', '--server', 'http://127.0.0.1:1', '--token-file', '/dev/zero', '--once'],
      /^portolan: --token-file \/dev\/zero: the --token-file file is more than 65536 bytes/,
    ],
    [
      'agent --token-file that does not exist (an internal error)',
      ['agent', '--server', 'http://127.0.0.1:1', '--token-file', '/nonexistent/token', '--once'],
      /^portolan: --token-file \/nonexistent\/token: the --token-file file does not exist/,
    ],
    [
      'agent --token with a line break (every request failed as "server unreachable", exit 3)',
      ['agent', '--server', 'http://127.0.0.1:1', '--token', 'agent_x\r\nX-Evil: 1', '--once'],
      /^portolan: the agent token \(--token, --token-file or PORTOLAN_AGENT_TOKEN\) holds white space/,
    ],
    [
      'agent --spool /dev/null (an internal error, exit 70)',
      ['agent', '--server', 'http://127.0.0.1:1', '--token', 'x', '--once', '--spool', '/dev/null'],
      /^portolan: --spool "\/dev\/null": cannot make \/dev\/null\/pending \(ENOTDIR; expected a directory/,
    ],
  ];
  for (const [name, args, want] of cases)
    test(`${name}: one usage error, exit 2`, { timeout: 120_000 }, () => {
      assert.match(oneLine(run(args), name), want);
    });
});

describe('-o onto what is not a plain file', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-hostile-o-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a character device (a copy of /dev/full) is written in place, not replaced: ENOSPC, exit 1', () => {
    const dev = join(dir, 'full');
    assert.equal(spawnSync('mknod', [dev, 'c', '1', '7']).status, 0, 'mknod');
    for (const args of [
      ['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', dev],
      ['init', 'druva-vmware', '-o', dev],
    ]) {
      const r = runCli(args);
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(`^portolan: cannot write ${dev}: ENOSPC \\(no space left on device\\)$`, 'm'),
      );
      assert.ok(lstatSync(dev).isCharacterDevice(), `${args[0]}: the device node is still a device`);
    }
  });

  test('a FIFO receives the export and stays a FIFO', () => {
    const fifo = join(dir, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
    const fd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', fifo]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(lstatSync(fifo).isFIFO(), 'still a FIFO');
      const buf = Buffer.alloc(1 << 16);
      const n = readSync(fd, buf);
      assert.match(buf.subarray(0, n).toString('utf8'), /^# Generated by portolan/);
    } finally {
      closeSync(fd);
    }
  });

  test('a symbolic link stays a link; the file it names is written, even one not made yet', () => {
    const link = join(dir, 'current.nft');
    symlinkSync('real.nft', link);
    for (const args of [
      ['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', link],
      ['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', link],
    ]) {
      const r = runCli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(lstatSync(link).isSymbolicLink(), 'still a link');
      assert.match(readFileSync(join(dir, 'real.nft'), 'utf8'), /^# Generated by portolan/);
    }
    const r = runCli(['init', 'druva-vmware', '-o', link, '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), 'init: still a link');
    assert.match(readFileSync(join(dir, 'real.nft'), 'utf8'), /druva-vmware/);
  });
});

describe('serve --listen', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-hostile-serve-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a port in use is one exit-2 line before the store is opened or the examples loaded', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const { port } = server.address() as AddressInfo;
      const r = runCli(['serve', '--listen', `127.0.0.1:${port}`], { env: { XDG_DATA_HOME: dir } });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(
        r.stderr,
        `portolan: --listen "127.0.0.1:${port}": cannot listen there: the port is in use by another process (stop it, or pick another port)\n`,
      );
      assert.equal(r.stdout, '', 'no examples loaded');
      assert.deepEqual(readdirSync(dir), [], 'no store or token written');
    } finally {
      server.close();
    }
  });

  for (const [value, want] of [
    ['::1:80', /an IPv6 address goes in brackets: \[::1\]:80$/],
    ['[::1]:99999', /expected HOST:PORT with a port from 0 to 65535/],
    [' 127.0.0.1:80', /expected HOST:PORT/],
    ['203.0.113.77:8080', /the address is not on this machine/],
  ] as const) {
    test(`--listen ${JSON.stringify(value)}: one exit-2 line`, () => {
      const r = runCli(['serve', '--listen', value], { env: { XDG_DATA_HOME: dir } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trimEnd(), want);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1);
      assert.deepEqual(readdirSync(dir), [], 'no store or token written');
    });
  }

  // --db under /proc once hung for good (creating its directory there never returns), a directory
  // was an exit-1 SQLite error, and a missing directory was created unasked.
  for (const [value, want] of [
    ['/proc/nope/x.db', /^portolan: --db "\/proc\/nope\/x\.db": the directory \/proc\/nope does not exist/],
    ['/tmp', /^portolan: --db "\/tmp" is a directory \(expected --db FILE\)$/],
  ] as const) {
    test(`--db ${JSON.stringify(value)}: one exit-2 line, nothing written`, () => {
      const r = runCli(['serve', '--db', value, '--listen', '127.0.0.1:0'], { env: { XDG_DATA_HOME: dir } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trimEnd(), want);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1);
      assert.deepEqual(readdirSync(dir), [], 'no store or token written');
    });
  }
});

describe('probe HOST with a zone index', () => {
  test('a zone index on an address that is not link-local is refused with one exit-2 line', () => {
    const r = runCli(['probe', '::1%eth0', '22', '--timeout', '200']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      'portolan: HOST: "::1%eth0" carries a zone index (%eth0), which only a link-local address (fe80::/10) takes (expected ::1 alone; RFC 4007 section 11)\n',
    );
  });
});

describe('output directories that cannot be made (under /proc)', () => {
  /** runCli with a deadline: Node's recursive mkdir retried /proc/x forever. */
  const run = (args: string[]): CliResult => {
    const r = spawnSync(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1', PORTOLAN_MAX_RATE: '0' },
      timeout: 60_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-hostile-mkdir-'));
    writeFileSync(
      join(dir, 'lo.yaml'),
      'site: lo\nproducts:\n  druva-vmware: {}\nhosts:\n  p: { address: 127.0.0.1, roles: [druva-vmware:backup-proxy] }\n  v: { address: 127.0.0.2, roles: [druva-vmware:vcenter] }\n',
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string, () => string[], number, RegExp][] = [
    [
      'export -o /proc/x/',
      () => ['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', '/proc/portolan-x/'],
      1,
      /^portolan: cannot write \/proc\/portolan-x\/portolan\.nft: ENOENT \(no such file or directory\); expected a file in a directory this user can create files in/,
    ],
    [
      'export -o /proc/x/y/ (two levels, a format that writes a subdirectory)',
      () => [
        'export',
        'examples/mixed-site.yaml',
        '--to',
        'ufw',
        '--host',
        'proxy-01',
        '-o',
        '/proc/portolan-x/y/',
      ],
      1,
      /^portolan: cannot write \/proc\/portolan-x\/y\/\S+: ENOENT/,
    ],
    [
      'agent --spool /proc/x',
      () => [
        'agent',
        '--server',
        'http://127.0.0.1:1',
        '--token',
        'x',
        '--once',
        '--spool',
        '/proc/portolan-x',
      ],
      2,
      /^portolan: --spool "\/proc\/portolan-x": cannot make \/proc\/portolan-x \(ENOENT; expected a directory/,
    ],
    [
      'check --output-dir /proc/x',
      () => [
        'check',
        join(dir, 'lo.yaml'),
        '--from',
        'p',
        '--timeout',
        '200',
        '--output-dir',
        '/proc/portolan-x',
      ],
      1,
      /^portolan: cannot write \/proc\/portolan-x: ENOENT/m,
    ],
  ];
  for (const [name, args, code, want] of cases)
    test(`${name}: an error at once, never a hang`, { timeout: 120_000 }, () => {
      const r = run(args());
      assert.equal(r.code, code, `exit code (stderr: ${r.stderr.slice(0, 500)})`);
      assert.match(r.stderr, want);
      assert.doesNotMatch(r.stderr, STACK_LINE);
    });

  test('check --output-dir "" is refused before the first probe', () => {
    const r = run(['check', join(dir, 'lo.yaml'), '--from', 'p', '--timeout', '200', '--output-dir', '']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, 'portolan: --output-dir needs a directory name (expected --output-dir DIR)\n');
    assert.equal(r.stdout, '');
  });

  test('a new output directory is still made with its parents, and a file in the way is named', () => {
    const out = join(dir, 'a', 'b');
    const r = run([
      'export',
      'examples/mixed-site.yaml',
      '--to',
      'ufw',
      '--host',
      'proxy-01',
      '-o',
      `${out}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(join(out, 'applications.d', 'portolan')).isFile());
    writeFileSync(join(dir, 'file'), '');
    const f = run([
      'export',
      'examples/mixed-site.yaml',
      '--to',
      'ufw',
      '--host',
      'proxy-01',
      '-o',
      `${join(dir, 'file', 'x')}/`,
    ]);
    assert.equal(f.code, 1, f.stderr);
    assert.match(f.stderr, /ENOTDIR \(not a directory\)/);
  });
});
