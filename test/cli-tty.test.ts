import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { width } from '../src/util/color.js';
import { catalog, entry, onPath } from './check-lab.js';
import { BIN, ROOT } from './helpers.js';

/**
 * The CLI in a real terminal: tmux gives it an 80-column pseudo-terminal, and the test reads the
 * screen as a user sees it (capture-pane), types Ctrl-C (send-keys), and reads the exit status.
 */
const SOCKET = `pt${process.pid}tty`;
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `command` in a new 80x40 session; the pane stays after it ends, with EXIT=<status>. */
function start(name: string, command: string): void {
  tmux(
    'new-session',
    '-d',
    '-s',
    name,
    '-x',
    '80',
    '-y',
    '40',
    '-c',
    ROOT,
    `${command}; echo EXIT=$?; sleep 600`,
  );
  tmux('set-option', '-t', name, 'history-limit', '5000');
}

/** The pane and its scrollback, wrapped lines joined back (-J), so a line wider than 80 shows. */
function screen(name: string): string {
  return tmux('capture-pane', '-p', '-J', '-S', '-', '-t', name);
}

async function until(name: string, re: RegExp, ms = 120_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const s = screen(name);
    if (re.test(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${re} on the screen:\n${s}`);
    await sleep(100);
  }
}

const SERVER = '127.0.0.5';

describe('in an 80-column terminal (tmux)', {
  skip: onPath('tmux') ? false : 'tmux not installed',
  timeout: 300_000,
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-tty-'));
  const sockets: dgram.Socket[] = [];
  let site = '';
  let closedPort = 0;

  before(async () => {
    // Twenty silent UDP ports: each needs three solo tries a second apart, so the check takes a
    // minute and Ctrl-C finds it mid-way; a closed TCP port is decided in the first round.
    for (let i = 0; i < 20; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, SERVER, () => r()));
      sockets.push(s);
    }
    const tmp = net.createServer();
    await new Promise<void>((r) => tmp.listen(0, SERVER, () => r()));
    closedPort = (tmp.address() as net.AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    writeFileSync(
      join(dir, 'lab.yaml'),
      catalog(
        ['client', 'server'],
        [
          entry('closed', 'server', 'tcp', [closedPort], 'veeam-transport'),
          entry(
            'silent',
            'server',
            'udp',
            sockets.map((s) => s.address().port),
            'veeam-data-mover',
          ),
        ],
      ),
    );
    site = join(dir, 'site.yaml');
    writeFileSync(
      site,
      `site: tty\ncatalogs: [lab.yaml]\nproducts:\n  lab: {}\nhosts:\n  cli: { address: 127.0.0.1, roles: [lab:client] }\n  srv: { address: ${SERVER}, roles: [lab:server] }\n`,
    );
  });

  after(() => {
    try {
      tmux('kill-server');
    } catch {
      // no server left
    }
    for (const s of sockets) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const lang of ['en', 'ja'])
    it(`plan --lang ${lang}: no line wider than the terminal, purposes wrapped under their column`, async () => {
      const name = `plan-${lang}`;
      start(name, `node ${BIN} plan examples/mixed-site.yaml --format table --lang ${lang}`);
      const s = await until(name, /EXIT=\d+/, 60_000);
      assert.match(s, /EXIT=0/);
      const lines = s.split('\n');
      for (const l of lines) assert.ok(width(l) <= 80, `wider than 80 (${width(l)}): ${l}`);
      const header = lines.find((l) => l.startsWith('FROM'));
      assert.ok(header, s);
      assert.match(header, /PURPOSE$/);
      const starts = ['FROM', 'TO', 'PROTO', 'PORTS', 'SERVICE', 'PURPOSE'].map(
        (h) => header.indexOf(` ${h}`) + 1,
      );
      // A continuation line starts each wrapped cell under its own column.
      const cont = lines.filter((l) => /^\s{10,}\S/.test(l));
      assert.ok(cont.length > 0, 'nothing was wrapped');
      for (const l of cont)
        for (const m of l.matchAll(/(?<=^|\s\s)\S/g))
          assert.ok(starts.includes(m.index as number), `a wrapped cell is not under its column: ${l}`);
      assert.ok(
        cont.some((l) => /^\s*$/.test(l.slice(0, starts[5])) && l.length > (starts[5] as number)),
        'no purpose was wrapped under PURPOSE',
      );
    });

  it('check: the progress bar fits, moves across rounds; Ctrl-C prints what was decided, marked, exit 130', async () => {
    const out = join(dir, 'partial.json');
    start(
      'check',
      `node ${BIN} check ${site} --from cli --format table -o ${out} --retry-budget 600000 2>&1`,
    );
    // The bar once the first round is over (the closed port decided, silent ports retried).
    const frame = await until('check', /\] +\d+% .*ports decided · retry/);
    const bar = frame.split('\n').find((l) => l.includes('ports decided')) as string;
    assert.ok(width(bar) <= 79, `the bar is wider than the terminal: ${bar}`);
    assert.match(bar, /^\[#*\.*\] +\d+% \d+\.\d s( · ETA \d+ s)? · \d+\/21 ports decided/);
    const pct = Number(/\] +(\d+)%/.exec(bar)?.[1]);
    assert.ok(pct > 0, `the bar restarted from 0 in a retry round: ${bar}`);
    tmux('send-keys', '-t', 'check', 'C-c');
    const s = await until('check', /EXIT=\d+/);
    assert.match(s, /EXIT=130/);
    assert.match(s, /INTERRUPTED: 1 flow was not decided and is left out/);
    assert.match(s, /closed +cli -> srv/);
    for (const l of s.split('\n')) assert.ok(width(l) <= 80, `wider than 80 (${width(l)}): ${l}`);
    // Detail and hint lines wrap under their own indent, not at column 0.
    const hint = s.split('\n').findIndex((l) => /^ +hint: /.test(l));
    assert.ok(hint > 0, s);
    assert.match(s.split('\n')[hint + 1] ?? '', /^ {18,}\S/);
    // The bar is gone from the final screen.
    assert.doesNotMatch(s.split('portolan check: site').pop() ?? '', /ports decided/);
    const doc = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(doc.interrupted, true);
    assert.equal(doc.undecided, 1);
    assert.deepEqual(
      doc.flows.map((f: { verdict: string }) => f.verdict),
      ['closed'],
    );
  });
});
