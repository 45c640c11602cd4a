/**
 * Every file portolan writes goes through one writer (src/util/atomic.ts): an unpredictable
 * temporary name created with O_CREAT|O_EXCL|O_NOFOLLOW, the mode given at creation, fsync, rename,
 * fsync of the directory. These tests plant symbolic links and FIFOs at the temporary and target
 * names of each writer (-o files, the admin token, the agent's spool, the lab's state) and show
 * that nothing outside is written and nothing hangs; and that an output never replaces an input.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer as httpServer } from 'node:http';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Agent } from '../src/agent/agent.js';
import { claimState, type LabState, saveState } from '../src/lab/state.js';
import { openDb, parseDbTarget } from '../src/server/db.js';
import * as atomic from '../src/util/atomic.js';
import { BIN, cliEnv, ROOT, runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'portolan-writes-'));
const mounts: string[] = [];
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const m of mounts) spawnSync('umount', [m]);
  rmSync(tmp, { recursive: true, force: true });
});

// Used through the module so that this file loads against an older writer too, and each test fails there on its own.
const { writeFileAtomic } = atomic;
const isRoot = process.getuid?.() === 0;
let n = 0;
function dir(): string {
  const d = join(tmp, `d${n++}`);
  mkdirSync(d);
  return d;
}
const mode = (path: string) => lstatSync(path).mode & 0o777;
const mkfifo = (path: string) => assert.equal(spawnSync('mkfifo', [path]).status, 0, 'mkfifo');

/** A victim file outside the directory written to, and its content, which must not change. */
function victim(): { path: string; text: string } {
  const d = dir();
  const path = join(d, 'victim.txt');
  writeFileSync(path, 'keep\n', { mode: 0o644 });
  return { path, text: 'keep\n' };
}

/**
 * Makes a block device node whose major number has no driver on this machine (from the range LANANA
 * keeps for local use, 240-254, minus /proc/devices' block majors): opening it could never reach a disk.
 */
function blockDevice(path: string): void {
  const text = readFileSync('/proc/devices', 'utf8');
  const used = new Set(
    [...(text.split('Block devices:')[1] ?? '').matchAll(/^\s*(\d+) /gm)].map((m) => Number(m[1])),
  );
  const major = [240, 241, 242, 243, 244, 245, 246, 247, 248].find((m) => !used.has(m));
  assert.ok(major !== undefined, 'a block major with no driver');
  assert.equal(spawnSync('mknod', [path, 'b', String(major), '0']).status, 0, 'mknod');
}

/** A small tmpfs (root only), unmounted after the tests. */
function tmpfs(size: string): string {
  const d = dir();
  assert.equal(
    spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', d]).status,
    0,
    'mount tmpfs',
  );
  mounts.push(d);
  return d;
}

/** Fills a filesystem to the last byte. */
function fill(d: string): void {
  spawnSync('dd', ['if=/dev/zero', `of=${join(d, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
  assert.ok(existsSync(join(d, 'filler')), 'the filler file');
}

/**
 * Runs `code` in a child process with writeFileAtomic and spawnSync in scope, given 30 s: a writer
 * that blocks (in open(2) of a FIFO) fails the test instead of hanging the suite.
 */
function writeInChild(code: string) {
  const script = `import { spawnSync } from 'node:child_process';
    import { writeFileAtomic } from ${JSON.stringify(join(ROOT, 'dist/src/util/atomic.js'))};
    ${code}`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
}

/**
 * Runs the CLI through `sh -c '...; exec node BIN ARGS'`: `$$` in the script is the pid the CLI runs
 * with, so a test can plant a file at a temporary name derived from the pid, as anyone on the machine
 * could have, before the CLI starts.
 */
function cliWithPid(script: string, args: readonly string[], timeout = 60_000) {
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const r = spawnSync('sh', ['-c', `${script}; exec ${quoted}`], {
    cwd: ROOT,
    encoding: 'utf8',
    env: cliEnv(),
    timeout,
  });
  return { code: r.status, stderr: r.stderr, error: r.error };
}

describe('the one writer: temporary names', () => {
  test('a new file is never opened through a link, a dangling link or a FIFO at its name', () => {
    const d = dir();
    const v = victim();
    const dangling = join(d, 'nowhere', 'created.txt');
    symlinkSync(v.path, join(d, 'link'));
    symlinkSync(join(d, 'made-by-the-link'), join(d, 'dangling'));
    mkfifo(join(d, 'fifo'));
    writeFileSync(join(d, 'file'), 'other\n');
    for (const name of ['link', 'dangling', 'fifo', 'file'])
      assert.throws(() => atomic.openExclusive(join(d, name), 0o600), { code: 'EEXIST' }, name);
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.ok(!existsSync(join(d, 'made-by-the-link')), 'the dangling link made no file');
    assert.ok(!existsSync(dangling));
  });

  test('a link planted at the name the old writer used (.NAME.PID.tmp) is not written through', () => {
    // The old name was predictable: the file a link there named received the output, and the link
    // itself was then renamed into the target's place.
    const d = dir();
    const v = victim();
    const target = join(d, 'plan.json');
    symlinkSync(v.path, join(d, `.plan.json.${process.pid}.tmp`));
    writeFileAtomic(target, '{"new": true}\n');
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.ok(lstatSync(target).isFile(), 'the target is a file, not the planted link');
    assert.equal(readFileSync(target, 'utf8'), '{"new": true}\n');
  });

  test('a FIFO planted at the old temporary name does not hang the writer', () => {
    // The old writer blocked in open(2) for good.
    const d = dir();
    const r = writeInChild(
      `spawnSync('mkfifo', [${JSON.stringify(d)} + '/.out.txt.' + process.pid + '.tmp']);
       writeFileAtomic(${JSON.stringify(join(d, 'out.txt'))}, 'done\\n');`,
    );
    assert.equal(r.error, undefined, 'finished (no hang)');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(d, 'out.txt'), 'utf8'), 'done\n');
  });

  test('plan -o: a link planted at the temporary name before the CLI starts writes nothing outside', () => {
    const d = dir();
    const v = victim();
    const out = join(d, 'plan.json');
    const r = cliWithPid(`ln -s '${v.path}' '${d}/.plan.json.'$$'.tmp'`, [
      'plan',
      'examples/mixed-site.yaml',
      '-o',
      out,
    ]);
    assert.equal(r.code, 0, `${r.error ?? ''} ${r.stderr}`);
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.ok(lstatSync(out).isFile());
    assert.match(readFileSync(out, 'utf8'), /^\{\n {2}"site": "east-dc"/);
  });

  test('nothing is left behind, and the earlier file stays whole, when the disk is full', {
    skip: isRoot ? false : 'needs root to mount a tmpfs',
  }, () => {
    const disk = tmpfs('64k');
    const file = join(disk, 'out.txt');
    writeFileSync(file, 'earlier\n');
    const secret = join(disk, 'token');
    writeFileSync(secret, 'old-token\n', { mode: 0o600 });
    fill(disk);
    assert.throws(() => writeFileAtomic(file, 'x'.repeat(1 << 20)), { code: 'ENOSPC' });
    assert.throws(() => writeFileAtomic(secret, 'new-token\n', { mode: 0o600, follow: false }), {
      code: 'ENOSPC',
    });
    assert.equal(readFileSync(file, 'utf8'), 'earlier\n');
    assert.equal(readFileSync(secret, 'utf8'), 'old-token\n');
    assert.deepEqual(readdirSync(disk).sort(), ['filler', 'out.txt', 'token']);
  });
});

describe('the one writer: modes and targets', () => {
  test("serve's SQLite store: a new store's directory is 0700 and its files (-wal, -shm too) 0600, whatever the umask", async () => {
    // The store holds sites, verdicts and token hashes; it was made 0644 in a 0755 directory.
    const d = join(dir(), 'data', 'store');
    const file = join(d, 'portolan.db');
    const old = process.umask(0);
    try {
      const db = await openDb(parseDbTarget(file));
      const names = readdirSync(d);
      const modes = names.map((n) => [n, mode(join(d, n))]);
      await db.destroy();
      assert.ok(names.includes('portolan.db-wal'), names.join(' '));
      for (const [n, m] of modes) assert.equal(m, 0o600, String(n));
    } finally {
      process.umask(old);
    }
    assert.equal(mode(d), 0o700);
    assert.equal(mode(join(d, '..')), 0o700);
  });

  test('a secret has mode 0600 whatever the umask and whatever the name held before', () => {
    const d = dir();
    const old = process.umask(0);
    try {
      writeFileAtomic(join(d, 'new-token'), 't\n', { mode: 0o600, follow: false });
      writeFileSync(join(d, 'open-token'), 'old\n', { mode: 0o666 });
      writeFileAtomic(join(d, 'open-token'), 't\n', { mode: 0o600, follow: false });
    } finally {
      process.umask(old);
    }
    assert.equal(mode(join(d, 'new-token')), 0o600);
    assert.equal(mode(join(d, 'open-token')), 0o600);
  });

  test('an output the user made private stays private when it is written again', () => {
    // The old writer made every replaced file 0644: `chmod 600 plan.json` was undone by the next plan -o.
    const d = dir();
    const out = join(d, 'plan.json');
    writeFileSync(out, '{}\n');
    chmodSync(out, 0o600);
    const r = runCli(['plan', 'examples/mixed-site.yaml', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(out), 0o600);
    writeFileAtomic(out, 'x\n');
    assert.equal(mode(out), 0o600);
  });

  test("portolan's own file replaces a link or FIFO at its name, never writes through it", () => {
    const d = dir();
    const v = victim();
    symlinkSync(v.path, join(d, 'state.json'));
    mkfifo(join(d, 'spool.json'));
    // In a child: the old writer opened the FIFO and blocked for good.
    const r = writeInChild(
      `for (const name of ['state.json', 'spool.json'])
         writeFileAtomic(${JSON.stringify(d)} + '/' + name, 'mine\\n', { mode: 0o600, follow: false });`,
    );
    assert.equal(r.error, undefined, 'finished (no hang)');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    for (const name of ['state.json', 'spool.json']) {
      assert.ok(lstatSync(join(d, name)).isFile(), name);
      assert.equal(readFileSync(join(d, name), 'utf8'), 'mine\n');
    }
  });

  test('an exclusive write refuses a name that is taken, a link included, and writes nothing there', () => {
    const d = dir();
    const v = victim();
    writeFileAtomic(join(d, 'lab.json'), 'first\n', { exclusive: true, mode: 0o600 });
    assert.throws(() => writeFileAtomic(join(d, 'lab.json'), 'second\n', { exclusive: true }), {
      code: 'EEXIST',
    });
    symlinkSync(v.path, join(d, 'linked.json'));
    assert.throws(() => writeFileAtomic(join(d, 'linked.json'), 'x\n', { exclusive: true }), {
      code: 'EEXIST',
    });
    assert.equal(readFileSync(join(d, 'lab.json'), 'utf8'), 'first\n');
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.deepEqual(readdirSync(d).sort(), ['lab.json', 'linked.json']);
  });

  test('a block device or a socket is refused, never written', {
    skip: isRoot ? false : 'mknod needs root',
  }, async () => {
    const d = dir();
    blockDevice(join(d, 'disk'));
    assert.throws(() => writeFileAtomic(join(d, 'disk'), 'x\n'), { name: 'UnwritableTarget' });
    const sock = netServer();
    await new Promise<void>((r) => sock.listen(join(d, 'sock'), () => r()));
    try {
      assert.throws(() => writeFileAtomic(join(d, 'sock'), 'x\n'), { name: 'UnwritableTarget' });
      assert.ok(lstatSync(join(d, 'sock')).isSocket());
    } finally {
      sock.close();
    }
    assert.ok(lstatSync(join(d, 'disk')).isBlockDevice());
  });
});

describe('-o onto what cannot take a file: one line, exit 2', () => {
  test('a FIFO that nothing reads: refused after 10 s instead of hanging', () => {
    const d = dir();
    mkfifo(join(d, 'fifo'));
    const r = spawnSync(process.execPath, [BIN, 'plan', 'examples/mixed-site.yaml', '-o', join(d, 'fifo')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: cliEnv(),
      timeout: 60_000,
    });
    assert.equal(r.error, undefined, 'no hang');
    assert.equal(r.status, 2, r.stderr);
    assert.equal(
      r.stderr,
      `portolan: cannot write ${d}/fifo: it is a named pipe that no process opened for reading in 10 s (expected a file, or a pipe something reads)\n`,
    );
    assert.ok(lstatSync(join(d, 'fifo')).isFIFO());
  });

  test("a block device, a socket, a directory among an export's files", {
    skip: isRoot ? false : 'mknod needs root',
  }, async () => {
    const d = dir();
    blockDevice(join(d, 'disk'));
    let r = runCli(['plan', 'examples/mixed-site.yaml', '-o', join(d, 'disk')]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `portolan: cannot write ${d}/disk: it is a block device (expected a file, a character device such as /dev/stdout, or a pipe)\n`,
    );
    const sock = netServer();
    await new Promise<void>((res) => sock.listen(join(d, 'sock'), () => res()));
    try {
      r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'nftables', '-o', join(d, 'sock')]);
    } finally {
      sock.close();
    }
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `portolan: cannot write ${d}/sock: it is a socket (expected a file, a device or a pipe)\n`,
    );
    const out = join(d, 'ipt');
    mkdirSync(join(out, 'iptables.rules'), { recursive: true });
    r = runCli(['export', 'examples/mixed-site.yaml', '--to', 'iptables', '--network', '-o', `${out}/`]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      `portolan: cannot write ${out}/iptables.rules: it is a directory (expected a file, or a new name)\n`,
    );
    assert.deepEqual(readdirSync(out), ['iptables.rules'], 'nothing else written');
  });
});

describe('an output never replaces an input', () => {
  const inventory = readFileSync(join(ROOT, 'examples/mixed-site.yaml'), 'utf8');
  const csv = readFileSync(join(ROOT, 'tests/fixtures/import/rvtools-vInfo.csv'), 'utf8');
  const map = readFileSync(join(ROOT, 'tests/fixtures/import/map-veeam.yaml'), 'utf8');

  test('plan and export -o onto the inventory, a link to it or a hard link of it', () => {
    const d = dir();
    const site = join(d, 'site.yaml');
    writeFileSync(site, inventory);
    symlinkSync('site.yaml', join(d, 'link.yaml'));
    linkSync(site, join(d, 'hard.yaml'));
    for (const [args, shown] of [
      [['plan', site, '-o', site], `-o "${site}" is a file`],
      [['plan', site, '-o', join(d, 'link.yaml')], `-o "${d}/link.yaml" is ${site}, a file`],
      [
        ['plan', join(d, 'link.yaml'), '-o', join(d, 'hard.yaml')],
        `-o "${d}/hard.yaml" is ${d}/link.yaml, a file`,
      ],
      [['export', site, '--to', 'nftables', '-o', site], `-o "${site}" is a file`],
      [
        ['export', site, '--to', 'markdown', '-o', join(d, 'hard.yaml')],
        `-o "${d}/hard.yaml" is ${site}, a file`,
      ],
    ] as const) {
      const r = runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(
        r.stderr,
        `portolan: ${shown} this command read: writing there would replace it (expected another file)\n`,
        args.join(' '),
      );
      assert.equal(readFileSync(site, 'utf8'), inventory, `${args.join(' ')}: the inventory is whole`);
    }
    assert.deepEqual(readdirSync(d).sort(), ['hard.yaml', 'link.yaml', 'site.yaml']);
  });

  test('import -o onto its source or its map', () => {
    const d = dir();
    writeFileSync(join(d, 'vinfo.csv'), csv);
    writeFileSync(join(d, 'map.yaml'), map);
    for (const out of ['vinfo.csv', 'map.yaml']) {
      const r = runCli([
        'import',
        'rvtools',
        join(d, 'vinfo.csv'),
        '--map',
        join(d, 'map.yaml'),
        '-o',
        join(d, out),
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^portolan: -o "${d}/${out}" is a file this command read: writing there would replace it \\(expected another file\\)$`,
          'm',
        ),
      );
    }
    assert.equal(readFileSync(join(d, 'vinfo.csv'), 'utf8'), csv);
    assert.equal(readFileSync(join(d, 'map.yaml'), 'utf8'), map);
  });
});

/** Starts `portolan serve` through cliWithPid's shell and resolves once it listens, with what it printed. */
function serveWithPid(
  script: string,
  args: readonly string[],
): Promise<{ child: ChildProcess; out: string }> {
  const quoted = [process.execPath, BIN, 'serve', '--listen', '127.0.0.1:0', '--no-examples', ...args]
    .map((a) => `'${a}'`)
    .join(' ');
  const child = spawn('sh', ['-c', `${script}; exec ${quoted}`], {
    cwd: ROOT,
    env: cliEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in 60 s: ${out}`)), 60_000);
    child.stdout?.on('data', (b) => {
      out += String(b);
      if (out.includes('admin token:')) {
        clearTimeout(timer);
        resolve({ child, out });
      }
    });
    child.stderr?.on('data', (b) => {
      out += String(b);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== null) resolve({ child, out: `${out}exit ${code}` });
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

describe('serve: the admin token', () => {
  test('a link or a FIFO planted at the old temporary name: the token goes only to its file, mode 0600', {
    timeout: 180_000,
  }, async () => {
    for (const plant of ['link', 'fifo'] as const) {
      const d = dir();
      const v = victim();
      const token = join(d, 'admin-token');
      const script = plant === 'link' ? `ln -s '${v.path}' '${token}.tmp-'$$` : `mkfifo '${token}.tmp-'$$`;
      const { child, out } = await serveWithPid(script, ['--db', join(d, 'store.db'), '--token-file', token]);
      await stop(child);
      assert.match(out, new RegExp(`admin token: written to ${token}\\n`), plant);
      assert.equal(readFileSync(v.path, 'utf8'), v.text, plant);
      assert.ok(lstatSync(token).isFile(), plant);
      assert.equal(mode(token), 0o600, plant);
      assert.match(readFileSync(token, 'utf8'), /^\S{20,}\n$/, plant);
    }
  });

  test('a --token-file that is the store or a link is refused, never replaced or written through', {
    timeout: 120_000,
  }, async () => {
    // The token was renamed over the SQLite file the server had open: its store was gone. It is
    // refused before the store is opened (exit 2), so no admin token is made that nobody holds.
    const d = dir();
    const db = join(d, 'store.db');
    const { out } = await serveWithPid('true', ['--db', db, '--token-file', db]);
    assert.match(
      out,
      new RegExp(
        `^portolan: --token-file ${db}: it is the --db file \\(expected another name for the admin token\\)\nexit 2$`,
      ),
    );
    assert.ok(!existsSync(db), 'nothing is made before the refusal');
    // An existing store named as the token file: refused the same way, the store left whole.
    const made = await serveWithPid('true', ['--db', db, '--token-file', join(d, 'admin-token')]);
    assert.match(made.out, /admin token: written to/);
    const exited = new Promise((done) => made.child.once('exit', done));
    made.child.kill('SIGTERM');
    await exited;
    const again = await serveWithPid('true', ['--db', db, '--new-admin-token', '--token-file', db]);
    assert.match(again.out, /it is the --db file[^\n]*\nexit 2$/);
    assert.equal(readFileSync(db).subarray(0, 15).toString('latin1'), 'SQLite format 3');
    const v = victim();
    symlinkSync(v.path, join(d, 'linked-token'));
    const linked = await serveWithPid('true', [
      '--db',
      db,
      '--new-admin-token',
      '--token-file',
      join(d, 'linked-token'),
    ]);
    assert.match(linked.out, /it is not a token file \(a symbolic link\)[^\n]*\nexit 2$/);
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.ok(lstatSync(join(d, 'linked-token')).isSymbolicLink());
  });

  test('a full disk: one line naming the file, exit 1, and no partial token left behind', {
    skip: isRoot ? false : 'needs root to mount a tmpfs',
    timeout: 120_000,
  }, async () => {
    const d = dir();
    const disk = tmpfs('64k');
    fill(disk);
    const { out } = await serveWithPid('true', [
      '--db',
      join(d, 'store.db'),
      '--token-file',
      join(disk, 'admin-token'),
    ]);
    assert.match(
      out,
      new RegExp(
        `^portolan: cannot write the admin token to ${disk}/admin-token: ENOSPC: no space left on device`,
        'm',
      ),
    );
    assert.match(out, /exit 1$/);
    assert.deepEqual(readdirSync(disk), ['filler']);
  });
});

describe('agent: the spool', () => {
  test("the spool is this user's only (directories 0700, files 0600) and a link in it is not written through", async () => {
    const yaml = readFileSync(join(ROOT, 'examples/lab/loopback.yaml'), 'utf8');
    const plan = { agent: 'a1', site: 'lab-loopback', host: 'vbr', version: 1, yaml, flowIds: [] };
    // A server that hands out the plan and refuses results, so the run stays spooled.
    const server = httpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/api/agent/plan') return res.end(JSON.stringify(plan));
        if (req.url === '/api/agent/results') {
          res.statusCode = 429;
          return res.end(JSON.stringify({ error: { code: 'EBUSY', message: 'later' } }));
        }
        return res.end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const d = dir();
    const v = victim();
    const spool = join(d, 'spool');
    mkdirSync(spool);
    symlinkSync(v.path, join(spool, 'plan.json'));
    try {
      const agent = new Agent({
        server: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        token: 'pta_test',
        spool,
        check: { timeoutMs: 200, attempts: 1, spacingMs: 10, retryBudgetMs: 100 },
        log: () => {},
      });
      await agent.cycle();
    } finally {
      server.close();
    }
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.ok(lstatSync(join(spool, 'plan.json')).isFile());
    const pending = readdirSync(join(spool, 'pending'));
    assert.equal(pending.length, 1, 'one run spooled');
    for (const sub of ['pending', 'rejected']) assert.equal(mode(join(spool, sub)), 0o700, sub);
    const files = readdirSync(spool, { recursive: true })
      .map(String)
      .filter((f) => statSync(join(spool, f)).isFile());
    assert.ok(files.length >= 2, files.join(', '));
    for (const f of files) assert.equal(mode(join(spool, f)), 0o600, f);
  });
});

describe('lab: the state file', () => {
  const state = (root: string, name: string): LabState =>
    ({
      version: 1,
      name,
      key: 'k',
      site: 's',
      inventory: '/x',
      catalogs: [],
      dir: join(root, name),
      createdAt: '2026-01-01T00:00:00Z',
      upPid: process.pid,
      phase: 'creating',
      firewall: 'nftables',
      secret: 'the-shared-secret',
      hub: 'h',
      hosts: [],
      objects: { netns: [], links: [], etcDirs: [], pids: [] },
    }) as LabState;

  test('it holds the shared secret: mode 0600 when claimed and after every save', () => {
    const root = dir();
    const s = state(root, 'one');
    claimState(s, root);
    assert.equal(mode(join(root, 'one.json')), 0o600);
    saveState({ ...s, phase: 'up' }, root);
    assert.equal(mode(join(root, 'one.json')), 0o600);
    assert.equal(mode(join(root, 'one')), 0o700);
  });

  test('a link at the old claim name or at the files directory is not followed', () => {
    const root = dir();
    const v = victim();
    symlinkSync(v.path, join(root, `two.json.${process.pid}.claim`));
    claimState(state(root, 'two'), root);
    assert.equal(readFileSync(v.path, 'utf8'), v.text);
    assert.ok(lstatSync(join(root, 'two.json')).isFile());
    const elsewhere = dir();
    symlinkSync(elsewhere, join(root, 'three'));
    assert.throws(() => claimState(state(root, 'three'), root), {
      message: `${root}/three exists and is a symbolic link (expected no file there, or a directory of this user): remove it, or give another --name`,
    });
  });
});
