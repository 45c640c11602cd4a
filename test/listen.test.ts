import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hostSecret, makeProbe, verifyReply } from '../src/listen/protocol.js';
import { BIN, ROOT, runCli, runCliAsync } from './helpers.js';

/**
 * `portolan listen` end to end: the real CLI in a child process, on a site whose responder host is
 * 127.0.0.1, probed over loopback only (sources 127.0.0.x so the log's source address is checkable).
 * Ports come from a test catalog written per run, at a base found free on this machine.
 */

const SECRET = 'listen-test-secret-0123456789';
/** Probes are signed with the secret bound to the target host's name (hostSecret). */
const KEY = hostSecret(SECRET, 'srv');
// A guard against a hang, not a measure: on a loaded machine the range tests take minutes.
const LONG = { timeout: 300_000 };

// ---------------------------------------------------------------------------------------------
// A throwaway site: a test catalog with the ports we choose, and an inventory naming it.

interface Entry {
  proto: 'tcp' | 'udp' | 'icmp';
  ports?: (number | string)[];
  local?: boolean;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function writeSite(entries: Entry[], serverAddress = '127.0.0.1'): string {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-listen-'));
  dirs.push(dir);
  chmodSync(dir, 0o755); // readable by the unprivileged user of the EACCES test
  const lines = entries.map((e, i) => {
    const to = e.local ? '{ role: server, local: true }' : 'server';
    const from = e.local ? 'server' : 'client';
    const ports = e.proto === 'icmp' ? 'icmp-type: echo-request' : `ports: ${JSON.stringify(e.ports)}`;
    return `  - { id: e${i}, from: ${from}, to: ${to}, protocol: ${e.proto}, ${ports}, service: s${i}, purpose: test, sources: [{ doc: t.txt, table: t, row: ${i + 1} }] }`;
  });
  writeFileSync(
    join(dir, 'catalog.yaml'),
    [
      'product: listen-test',
      'title: listen test product',
      'documents: [{ file: t.txt, title: test }]',
      'roles: { client: { title: client }, server: { title: server } }',
      'entries:',
      ...lines,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'site.yaml'),
    [
      'site: listen-lab',
      'catalogs: [catalog.yaml]',
      'products: { listen-test: {} }',
      'hosts:',
      `  srv: { address: ${serverAddress}, roles: [listen-test:server] }`,
      '  cli: { address: 127.0.0.2, roles: [listen-test:client] }',
      '',
    ].join('\n'),
  );
  return join(dir, 'site.yaml');
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => s.close(() => resolve(false)));
      u.bind({ address: '127.0.0.1', port, exclusive: true }, () =>
        u.close(() => s.close(() => resolve(true))),
      );
    });
  });
}

/** A base port with `span` free TCP and UDP ports above it, below the ephemeral range. */
async function freeBase(span: number): Promise<number> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - span));
    const ports = Array.from({ length: span }, (_, i) => base + i);
    const ok = await pool(ports, 64, canBind);
    if (ok.every(Boolean)) return base;
  }
  throw new Error(`no ${span} free ports found`);
}

async function pool<T, R>(
  items: readonly T[],
  n: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The responder under test, as a child process.

// biome-ignore lint/suspicious/noExplicitAny: JSON lines from the child, checked field by field
type Json = any;

class Listener {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];

  constructor(
    args: string[],
    opts: { env?: Record<string, string | undefined>; uid?: number; shell?: string } = {},
  ) {
    const env: Record<string, string | undefined> = {
      ...process.env,
      NO_COLOR: '1',
      PORTOLAN_SECRET: undefined,
      ...opts.env,
    };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const argv = [BIN, 'listen', ...args];
    this.child = opts.shell
      ? spawn('bash', ['-c', `${opts.shell}; exec "$0" "$@"`, process.execPath, ...argv], { cwd: ROOT, env })
      : spawn(process.execPath, argv, {
          cwd: ROOT,
          env,
          ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
        });
    let buf = '';
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        this.line(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
      }
    });
    this.child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      this.stderr += c;
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  private line(l: string) {
    this.lines.push(l);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(l)) return true;
      w.resolve(l);
      return false;
    });
  }

  /** How many stdout lines have been seen: pass it to waitLine/waitEvent to skip those lines. */
  mark(): number {
    return this.lines.length;
  }

  /**
   * The first stdout line (seen or still to come) that matches, among the lines from index `after`
   * on: an event picked by its source port must be looked for only after its exchange started, as
   * the kernel may give a later connection the same port.
   */
  waitLine(pred: (l: string) => boolean, what: string, ms = 30_000, after = 0): Promise<string> {
    const seen = this.lines.slice(after).find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${why}; stdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`));
      };
      const t = setTimeout(() => fail(`no ${what} within ${ms} ms`), ms);
      const waiter = {
        pred,
        resolve: (l: string) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      this.waiters.push(waiter);
      // Lines are all read before 'exit' is handled; a waiter still here then never gets its line.
      void this.exited.then(() =>
        setImmediate(() => {
          if (!this.waiters.includes(waiter)) return;
          clearTimeout(t);
          fail(`exited before ${what}`);
        }),
      );
    });
  }

  events(): Json[] {
    return this.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json);
  }

  async waitEvent(pred: (e: Json) => boolean, what: string, ms?: number, after = 0): Promise<Json> {
    const safe = (l: string) => {
      try {
        return l.startsWith('{') && pred(JSON.parse(l));
      } catch {
        return false;
      }
    };
    return JSON.parse(await this.waitLine(safe, what, ms, after));
  }

  kill(signal: NodeJS.Signals = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

const running: Listener[] = [];
after(() => {
  for (const l of running) l.kill('SIGKILL');
});
function listen(...a: ConstructorParameters<typeof Listener>): Listener {
  const l = new Listener(...a);
  running.push(l);
  return l;
}

// ---------------------------------------------------------------------------------------------
// Probing clients (loopback only).

interface TcpResult {
  reply: Buffer;
  localPort: number;
  ms: number;
}

/** Connects from `from`, sends `data` (half-closing when `end`), returns every byte received until close. */
function tcpExchange(
  port: number,
  data: string | Buffer,
  opts: { from?: string; end?: boolean } = {},
): Promise<TcpResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    let localPort = 0;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: opts.from ?? '127.0.0.1' });
    // A guard against a hang, well past the responder's own 10 s deadline even on a loaded machine:
    // the responder's log, not this timer, says who closed.
    s.setTimeout(60_000, () => s.destroy());
    s.on('connect', () => {
      localPort = s.localPort ?? 0;
      if (opts.end) s.end(data);
      else s.write(data);
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => resolve({ reply: Buffer.concat(chunks), localPort, ms: Date.now() - started }));
  });
}

/** Sends one datagram from `from` and collects what comes back within `waitMs`. */
function udpExchange(
  port: number,
  data: string | Buffer,
  opts: { from?: string; waitMs?: number; expect?: number } = {},
) {
  return new Promise<{ replies: Buffer[]; localPort: number }>((resolve) => {
    const s = dgram.createSocket('udp4');
    const replies: Buffer[] = [];
    let localPort = 0;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.close(() => resolve({ replies, localPort }));
    };
    s.on('message', (m) => {
      replies.push(m);
      // A reply expected: taken as soon as it comes, so a loaded machine only makes the wait longer.
      if (opts.expect !== undefined && replies.length >= opts.expect) finish();
    });
    s.on('error', () => {});
    s.bind({ address: opts.from ?? '127.0.0.1', port: 0 }, () => {
      localPort = s.address().port;
      s.send(typeof data === 'string' ? Buffer.from(data) : data, port, '127.0.0.1');
      timer = setTimeout(finish, opts.waitMs ?? 1000);
    });
  });
}

function portsOf(groups: Json[], proto: string, pred: (g: Json) => boolean = () => true): number {
  return groups
    .filter((g) => g.proto === proto && pred(g))
    .flatMap((g) => g.ports as [number, number][])
    .reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
}

/** A small seeded generator, so a failing fuzz case can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type FuzzKind = 'valid' | 'random' | 'flipped' | 'truncated' | 'padded' | 'other-port' | 'two-lines';

function fuzzCase(
  rand: () => number,
  proto: 'tcp' | 'udp',
  port: number,
): { kind: FuzzKind; data: Buffer; probe?: ReturnType<typeof makeProbe> } {
  const kinds: FuzzKind[] = ['valid', 'random', 'flipped', 'truncated', 'padded', 'other-port', 'two-lines'];
  const kind = kinds[Math.floor(rand() * kinds.length)] as FuzzKind;
  const probe = makeProbe(KEY, proto, port);
  const line = Buffer.from(probe.line);
  switch (kind) {
    case 'valid':
      return { kind, data: line, probe };
    case 'random': {
      const data = Buffer.from(
        Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)),
      );
      if (data.length && rand() < 0.5) data[data.length - 1] = 0x0a;
      return { kind, data };
    }
    case 'flipped': {
      const i = Math.floor(rand() * line.length);
      line[i] = (line[i] as number) ^ (1 + Math.floor(rand() * 255));
      return { kind, data: line };
    }
    case 'truncated':
      return {
        kind,
        data: Buffer.concat([line.subarray(0, Math.floor(rand() * (line.length - 1))), Buffer.from('\n')]),
      };
    case 'padded':
      return {
        kind,
        data: Buffer.from(`${probe.line.slice(0, -1)}${' '.repeat(1 + Math.floor(rand() * 60))}\n`),
      };
    case 'other-port':
      return { kind, data: Buffer.from(makeProbe(KEY, proto, port + 1).line) };
    case 'two-lines':
      return { kind, data: Buffer.concat([line, Buffer.from(makeProbe(KEY, proto, port).line)]) };
  }
}

// =============================================================================================

describe('portolan listen: one responder, probed over loopback', () => {
  let base = 0;
  let site = '';
  let l: Listener;
  let ready: Json;
  let blocker: net.Server;
  // Ports, relative to base.
  const P = () => ({
    tcp: base,
    udp: base + 1,
    udpRange: [base + 2, base + 4] as const,
    inUse: base + 5,
    local: base + 6,
    range: [base + 10, base + 810] as const,
  });

  before(async () => {
    base = await freeBase(811);
    const p = P();
    site = writeSite([
      { proto: 'tcp', ports: [p.tcp, p.inUse] },
      { proto: 'udp', ports: [p.udp, `${p.udpRange[0]}-${p.udpRange[1]}`] },
      { proto: 'tcp', ports: [`${p.range[0]}-${p.range[1]}`] },
      { proto: 'tcp', ports: [p.local], local: true },
      { proto: 'icmp' },
    ]);
    blocker = net.createServer();
    await new Promise<void>((resolve) =>
      blocker.listen({ host: '127.0.0.1', port: p.inUse, exclusive: true }, resolve),
    );
    l = listen([site, '--host', 'srv', '--ttl', '10m', '--secret', SECRET, '--format', 'json']);
    ready = await l.waitEvent((e) => e.event === 'listening', 'listening event');
  });
  after(() => {
    l.kill('SIGKILL');
    blocker.close();
  });

  it('binds every planned TCP and UDP port, the 801-port range in full, and the local flow on loopback', () => {
    const p = P();
    assert.deepEqual(ready.bind.addresses, ['127.0.0.1']);
    assert.deepEqual(ready.ports, { wanted: 1 + 1 + 801 + 1 + 4, bound: 1 + 801 + 1 + 4 });
    const tcp = ready.listening.filter((g: Json) => g.proto === 'tcp' && !g.local);
    assert.deepEqual(tcp, [
      {
        proto: 'tcp',
        address: '127.0.0.1',
        ports: [
          [p.tcp, p.tcp],
          [p.range[0], p.range[1]],
        ],
        local: false,
      },
    ]);
    assert.deepEqual(
      ready.listening.find((g: Json) => g.proto === 'udp'),
      { proto: 'udp', address: '127.0.0.1', ports: [[p.udp, p.udpRange[1]]], local: false },
    );
    assert.deepEqual(
      ready.listening.find((g: Json) => g.local),
      { proto: 'tcp', address: '127.0.0.1', ports: [[p.local, p.local]], local: true },
    );
    assert.equal(ready.secret, undefined, 'a given secret is never printed');
    assert.deepEqual(ready.check, [`portolan check ${site} --from cli --secret "$PORTOLAN_SECRET"`]);
  });

  it('lists a port already in use, naming its holder (this test), and carries on; says ICMP has nothing to bind', () => {
    const [inUse] = ready.notBound;
    assert.match(inUse?.reason ?? '', new RegExp(`^already in use by \\S+ \\(pid ${process.pid}\\)$`));
    assert.deepEqual(ready.notBound, [
      {
        proto: 'tcp',
        address: '127.0.0.1',
        ports: [[P().inUse, P().inUse]],
        local: false,
        code: 'EADDRINUSE',
        reason: inUse?.reason,
      },
    ]);
    assert.deepEqual(ready.icmp, [{ from: 'cli', type: 'echo-request' }]);
    assert.equal(l.child.exitCode, null, 'still running');
  });

  it('answers an authenticated TCP probe with exactly the OK line, and logs the source it saw', async () => {
    const probe = makeProbe(KEY, 'tcp', P().tcp);
    const mark = l.mark();
    const r = await tcpExchange(P().tcp, probe.line, { from: '127.0.0.2' });
    assert.equal(r.reply.length, 46);
    assert.ok(verifyReply(KEY, probe, r.reply.toString('latin1')), r.reply.toString('latin1'));
    const e = await l.waitEvent(
      (x) => x.event === 'probe' && x.from.port === r.localPort && x.proto === 'tcp',
      'log line',
      undefined,
      mark,
    );
    assert.deepEqual(
      { result: e.result, from: e.from, to: e.to, received: e.received, sent: e.sent },
      {
        result: 'answered',
        from: { address: '127.0.0.2', port: r.localPort },
        to: { address: '127.0.0.1', port: P().tcp },
        received: probe.line.length,
        sent: 46,
      },
    );
  });

  it('answers an authenticated UDP probe with exactly the OK line, on every UDP port', async () => {
    for (let port = P().udp; port <= P().udpRange[1]; port++) {
      const probe = makeProbe(KEY, 'udp', port);
      const mark = l.mark();
      const r = await udpExchange(port, probe.line, { from: '127.0.0.2', waitMs: 30_000, expect: 1 });
      assert.equal(r.replies.length, 1, `udp/${port}`);
      assert.ok(verifyReply(KEY, probe, r.replies[0]?.toString('latin1') ?? ''));
      const e = await l.waitEvent(
        (x) => x.event === 'probe' && x.proto === 'udp' && x.from.port === r.localPort,
        'udp log line',
        undefined,
        mark,
      );
      assert.equal(e.from.address, '127.0.0.2');
      assert.equal(e.result, 'answered');
    }
  });

  it('answers on the local-flow port over loopback', async () => {
    const probe = makeProbe(KEY, 'tcp', P().local);
    const r = await tcpExchange(P().local, probe.line);
    assert.ok(verifyReply(KEY, probe, r.reply.toString('latin1')));
  });

  it('sends zero bytes and closes on unauthenticated TCP input', async () => {
    const port = P().tcp;
    const replayed = makeProbe(KEY, 'tcp', port);
    assert.equal(
      (await tcpExchange(port, replayed.line, { from: '127.0.0.3' })).reply.length,
      46,
      'first use',
    );
    const cases: [string, string | Buffer, string][] = [
      ['garbage', 'GET / HTTP/1.0\n', 'not a portolan probe'],
      ['binary', Buffer.from([0, 1, 2, 0xff, 0x0a]), 'not a portolan probe'],
      [
        'wrong secret',
        makeProbe('not-the-secret-0123456789', 'tcp', port).line,
        'bad MAC: another secret, or signed for a host name other than "srv" (probe: give --name srv)',
      ],
      // Signed for another host: what a NAT sending host A's port to host B looks like.
      [
        'probe meant for another host',
        makeProbe(hostSecret(SECRET, 'cli'), 'tcp', port).line,
        'signed for host "cli", not "srv": the secret is right, the host name is not (probe: give --name srv; check: the inventory\'s host at this address is not "srv")',
      ],
      // What probe without --name signs for: the address it was given.
      [
        'probe signed for the address',
        makeProbe(hostSecret(SECRET, '127.0.0.1'), 'tcp', port).line,
        'signed for host "127.0.0.1", not "srv": the secret is right, the host name is not (probe: give --name srv; check: the inventory\'s host at this address is not "srv")',
      ],
      [
        'the bare secret, unbound to the host',
        makeProbe(SECRET, 'tcp', port).line,
        'bad MAC: another secret, or signed for a host name other than "srv" (probe: give --name srv)',
      ],
      ['replayed nonce', replayed.line, 'replayed nonce'],
      [
        'probe for another port',
        makeProbe(KEY, 'tcp', P().range[0]).line,
        `probe for tcp/${P().range[0]} arrived on tcp/${port}`,
      ],
      ['udp probe on tcp', makeProbe(KEY, 'udp', port).line, `probe for udp/${port} arrived on tcp/${port}`],
      [
        'stale timestamp',
        makeProbe(KEY, 'tcp', port, Date.now() - 3_600_000).line,
        'timestamp outside the allowed clock skew',
      ],
      ['oversized line', `${'A'.repeat(200)}\n`, 'longer than 128 bytes'],
      ['valid line with more after it', `${makeProbe(KEY, 'tcp', port).line}x`, 'bytes after the probe line'],
    ];
    for (const [name, data, reason] of cases) {
      const mark = l.mark();
      const r = await tcpExchange(port, data, { from: '127.0.0.3' });
      assert.equal(r.reply.length, 0, `${name}: got ${JSON.stringify(r.reply.toString('latin1'))}`);
      const e = await l.waitEvent(
        (x) => x.event === 'probe' && x.from.port === r.localPort,
        `log of ${name}`,
        undefined,
        mark,
      );
      assert.equal(e.result, 'rejected', name);
      assert.equal(e.reason, reason, name);
      assert.equal(e.sent, 0);
    }
  });

  it('closes a silent connection after the read timeout, with no bytes sent', LONG, async () => {
    const mark = l.mark();
    const r = await tcpExchange(P().tcp, Buffer.alloc(0), { from: '127.0.0.3' });
    assert.equal(r.reply.length, 0);
    const e = await l.waitEvent(
      (x) => x.event === 'probe' && x.from.port === r.localPort,
      'log of the silent connection',
      undefined,
      mark,
    );
    assert.equal(e.result, 'rejected');
    assert.match(e.reason, /^no probe line within \d+ ms$/);
  });

  it('closes a connection that drips bytes, at the same deadline', LONG, async () => {
    // A byte every 500 ms, never the line's end: an idle timeout would never fire, so only a
    // deadline counted from accept closes it. The proof is that the responder closed with nothing
    // sent back, not how long it took (which a loaded machine stretches).
    const line = makeProbe(KEY, 'tcp', P().tcp).line;
    const body = Buffer.from(line.slice(0, -1), 'latin1');
    const mark = l.mark();
    const r = await new Promise<TcpResult & { dripped: number; closedBy: string }>((resolve) => {
      const started = Date.now();
      const chunks: Buffer[] = [];
      const s = net.connect({ host: '127.0.0.1', port: P().tcp, localAddress: '127.0.0.3' });
      let i = 0;
      const drip = setInterval(() => {
        if (s.writable) s.write(body.subarray(i % body.length, (i % body.length) + 1));
        i++;
      }, 500);
      let closedBy = 'responder';
      let localPort = 0;
      s.on('connect', () => {
        localPort = s.localPort ?? 0;
      });
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => {});
      // More than MAX_PROBE_BYTES would be refused for its length, another reason: stop well before.
      const guard = setTimeout(() => {
        closedBy = 'test';
        s.destroy();
      }, 200_000);
      s.on('close', () => {
        clearInterval(drip);
        clearTimeout(guard);
        resolve({
          reply: Buffer.concat(chunks),
          localPort,
          ms: Date.now() - started,
          dripped: i,
          closedBy,
        });
      });
    });
    assert.equal(r.closedBy, 'responder', `still open after ${r.ms} ms and ${r.dripped} bytes`);
    assert.equal(r.reply.length, 0);
    assert.ok(r.dripped < 256, `${r.dripped} bytes dripped before the close`);
    const e = await l.waitEvent(
      (x) => x.event === 'probe' && x.proto === 'tcp' && x.from.port === r.localPort,
      'log line of the dripping connection',
      undefined,
      mark,
    );
    assert.equal(e.result, 'rejected');
    assert.match(e.reason, /^no probe line within 10000 ms$/);
  });

  it('sends nothing back to unauthenticated UDP datagrams', async () => {
    const port = P().udp;
    const replayed = makeProbe(KEY, 'udp', port);
    assert.equal(
      (await udpExchange(port, replayed.line, { from: '127.0.0.4', waitMs: 30_000, expect: 1 })).replies
        .length,
      1,
    );
    const cases: [string, string | Buffer][] = [
      ['empty', Buffer.alloc(0)],
      ['garbage', 'hello\n'],
      ['wrong secret', makeProbe('not-the-secret-0123456789', 'udp', port).line],
      ['replayed nonce', replayed.line],
      ['probe for another port', makeProbe(KEY, 'udp', port + 1).line],
      ['tcp probe on udp', makeProbe(KEY, 'tcp', port).line],
      ['oversized', Buffer.alloc(1400, 0x41)],
    ];
    const results = await Promise.all(
      cases.map(([, data]) => udpExchange(port, data, { from: '127.0.0.4' })),
    );
    assert.deepEqual(
      Object.fromEntries(results.map((r, i) => [cases[i]?.[0], r.replies.length])),
      Object.fromEntries(cases.map(([name]) => [name, 0])),
    );
  });

  it('answers an authenticated probe on every port of the 801-port range', LONG, async () => {
    const [lo, hi] = P().range;
    const ports = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
    const bad = (
      await pool(ports, 32, async (port) => {
        const probe = makeProbe(KEY, 'tcp', port);
        const r = await tcpExchange(port, probe.line);
        return verifyReply(KEY, probe, r.reply.toString('latin1')) ? undefined : port;
      })
    ).filter((p) => p !== undefined);
    assert.deepEqual(bad, []);
  });

  it(
    'never replies with more bytes than it received (fuzz: 300 TCP lines, 300 UDP datagrams)',
    LONG,
    async () => {
      const rand = prng(0x5eed);
      const tcpCases = Array.from({ length: 300 }, () => fuzzCase(rand, 'tcp', P().tcp));
      const udpCases = Array.from({ length: 300 }, () => fuzzCase(rand, 'udp', P().udp));
      const tcp = await pool(tcpCases, 16, (c) =>
        tcpExchange(P().tcp, c.data, { from: '127.0.0.5', end: true }),
      );
      const udp = await pool(udpCases, 100, (c) =>
        udpExchange(
          P().udp,
          c.data,
          c.kind === 'valid'
            ? { from: '127.0.0.5', waitMs: 30_000, expect: 1 }
            : { from: '127.0.0.5', waitMs: 800 },
        ),
      );
      let answered = 0;
      tcpCases.forEach((c, i) => {
        const reply = tcp[i]?.reply ?? Buffer.alloc(0);
        assert.ok(
          reply.length <= c.data.length,
          `tcp case ${i} (${c.kind}): ${reply.length} > ${c.data.length}`,
        );
        if (c.kind === 'valid') {
          assert.ok(c.probe && verifyReply(KEY, c.probe, reply.toString('latin1')), `tcp case ${i} valid`);
          answered++;
        } else assert.equal(reply.length, 0, `tcp case ${i} (${c.kind}) got a reply`);
      });
      udpCases.forEach((c, i) => {
        const replies = udp[i]?.replies ?? [];
        for (const r of replies) assert.ok(r.length <= c.data.length, `udp case ${i} (${c.kind})`);
        if (c.kind === 'valid') {
          assert.equal(replies.length, 1, `udp case ${i} valid`);
          assert.ok(c.probe && verifyReply(KEY, c.probe, replies[0]?.toString('latin1') ?? ''));
          answered++;
        } else assert.equal(replies.length, 0, `udp case ${i} (${c.kind}) got a reply`);
      });
      assert.ok(answered > 40, 'the fuzz mix includes valid probes');
    },
  );

  it(
    'check with another secret than listen: the hint says the signed probe went unanswered, not "run listen"',
    LONG,
    async () => {
      const verdictOf = async (extra: string[]) => {
        const r = await runCliAsync([
          'check',
          site,
          '--from',
          'cli',
          '--to',
          'srv',
          '--port',
          String(P().tcp),
          ...extra,
          '--format',
          'json',
        ]);
        const doc = JSON.parse(r.stdout) as { flows: { verdict: string; hint: string }[] };
        assert.equal(doc.flows.length, 1, r.stderr);
        return doc.flows[0] as { verdict: string; hint: string };
      };
      const wrong = await verdictOf(['--secret', 'another-secret-0123456789']);
      assert.equal(wrong.verdict, 'open-unverified');
      assert.doesNotMatch(wrong.hint, /run portolan listen/);
      assert.match(wrong.hint, /^connected, and the signed probe was closed without a reply/);
      assert.match(
        wrong.hint,
        /it uses another secret than this check, or runs as another host \(its log says "bad MAC" or "signed for host \.\.\."\)/,
      );
      // Without --secret the advice to run listen stands.
      const none = await verdictOf([]);
      assert.equal(none.verdict, 'open-unverified');
      assert.match(none.hint, /run portolan listen on srv and check --secret/);
      const right = await verdictOf(['--secret', SECRET]);
      assert.equal(right.verdict, 'ok (responder)');
    },
  );

  it('rate-limits log lines per source while counting every probe', async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind({ address: '127.0.0.6', port: 0 }, resolve));
    for (let i = 0; i < 60; i++)
      await new Promise((resolve) => s.send(`junk ${i}\n`, P().udp, '127.0.0.1', resolve));
    // A signed probe behind them on the same socket: its reply means the responder has read all 60
    // (one socket, read in order), however long a loaded machine took. No fixed sleep.
    const probe = makeProbe(KEY, 'udp', P().udp);
    const reply = new Promise<Buffer>((resolve) => s.once('message', resolve));
    s.send(probe.line, P().udp, '127.0.0.1');
    const guard = setTimeout(() => s.emit('message', Buffer.alloc(0)), 60_000);
    const answer = await reply;
    clearTimeout(guard);
    s.close();
    assert.ok(
      verifyReply(KEY, probe, answer.toString('latin1')),
      'the responder never answered behind the junk',
    );
    await l.waitEvent(
      (e) => e.event === 'probe' && e.from.address === '127.0.0.6',
      'a logged probe from 127.0.0.6',
    );
  });

  it('on SIGTERM closes every socket, prints the summary by source and exits 0', LONG, async () => {
    l.kill('SIGTERM');
    const { code } = await l.exited;
    assert.equal(code, 0, l.stderr);
    const summary = l.events().find((e) => e.event === 'summary');
    assert.ok(summary, l.lines.join('\n'));
    assert.equal(summary.end, 'signal');
    const by = (src: string) => summary.sources.find((s: Json) => s.source === src);
    assert.equal(by('127.0.0.2').answered, 5, 'one TCP and four UDP probes');
    assert.equal(by('127.0.0.6').rejected, 60);
    assert.ok(by('127.0.0.6').suppressed >= 35);
    // Every line is read by now: the 61 probes of 127.0.0.6 (60 junk, 1 signed) came as one burst.
    const logged = l.events().filter((e) => e.event === 'probe' && e.from.address === '127.0.0.6').length;
    assert.ok(logged >= 1 && logged <= 25, `${logged} lines logged for 61 probes`);
    assert.ok(by('127.0.0.1').answered >= 802, 'the range and the local port');
    const refused = await new Promise<string>((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port: P().tcp });
      c.on('connect', () => resolve('connected'));
      c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.equal(refused, 'ECONNREFUSED');
  });
});

describe('portolan listen: a generated secret, text log and the TTL', () => {
  it(
    'prints a new secret with the check command, answers with it, logs the source, exits 0 at the TTL',
    LONG,
    async () => {
      const base = await freeBase(2);
      const site = writeSite([{ proto: 'tcp', ports: [base] }]);
      const l = listen([site, '--host', 'srv', '--ttl', '4s']);
      const secretLine = await l.waitLine((x) => x.startsWith('secret: '), 'secret line');
      const secret = secretLine.split(' ')[1] ?? '';
      assert.match(secret, /^[A-Za-z0-9_-]{24}$/);
      const command = await l.waitLine((x) => x.includes('portolan check'), 'check command');
      assert.equal(command.trim(), `portolan check ${site} --from cli --secret ${secret}`);
      await l.waitLine((x) => x.startsWith('answering signed probes until '), 'ready line');
      const probe = makeProbe(hostSecret(secret, 'srv'), 'tcp', base);
      const r = await tcpExchange(base, probe.line, { from: '127.0.0.2' });
      assert.ok(verifyReply(hostSecret(secret, 'srv'), probe, r.reply.toString('latin1')));
      await l.waitLine(
        (x) => x.includes(` answered tcp/${base} from 127.0.0.2:${r.localPort} to 127.0.0.1:${base} `),
        'text log line',
      );
      // Exits by itself at the TTL (the test's timeout is the guard against it never doing so; how
      // long after the TTL it exits is the machine's load, not the responder's).
      const { code } = await l.exited;
      assert.equal(code, 0, l.stderr);
      assert.ok(
        l.lines.includes(
          'TTL of 4s ended: 1 signed probe answered, 0 reach (connected and closed without data), 0 rejected, 0 refused for load',
        ),
        l.lines.join('\n'),
      );
      assert.ok(l.lines.includes('  127.0.0.2: 1 answered, 0 rejected'), l.lines.join('\n'));
    },
  );
});

describe('portolan listen: the open-file limit', () => {
  it(
    'binds what fits under a low limit, single ports first, and lists the rest of the range',
    LONG,
    async () => {
      const base = await freeBase(811);
      const site = writeSite([
        { proto: 'tcp', ports: [base] },
        { proto: 'udp', ports: [base + 1] },
        { proto: 'tcp', ports: [`${base + 10}-${base + 810}`] },
      ]);
      const l = listen([site, '--host', 'srv', '--ttl', '10m', '--secret', SECRET, '--format', 'json'], {
        shell: 'ulimit -n 400',
      });
      const ready = await l.waitEvent((e) => e.event === 'listening', 'listening event');
      assert.equal(ready.ports.wanted, 803);
      assert.ok(ready.ports.bound > 10 && ready.ports.bound < 400, `bound ${ready.ports.bound}`);
      assert.equal(portsOf(ready.listening, 'tcp') + portsOf(ready.listening, 'udp'), ready.ports.bound);
      assert.equal(portsOf(ready.notBound, 'tcp'), 803 - ready.ports.bound, 'every port is bound or listed');
      assert.ok(ready.notBound.every((g: Json) => g.code === 'EMFILE' && /open-file limit/.test(g.reason)));
      const top = ready.notBound[0].ports.at(-1)[1];
      assert.equal(top, base + 810, 'the end of the range is what is left over');
      for (const [proto, port] of [
        ['tcp', base],
        ['udp', base + 1],
        ['tcp', base + 10],
      ] as const) {
        const probe = makeProbe(KEY, proto, port);
        const reply =
          proto === 'tcp'
            ? (await tcpExchange(port, probe.line)).reply
            : ((await udpExchange(port, probe.line, { waitMs: 30_000, expect: 1 })).replies[0] ??
              Buffer.alloc(0));
        assert.ok(verifyReply(KEY, probe, reply.toString('latin1')), `${proto}/${port}`);
      }
      l.kill();
      assert.equal((await l.exited).code, 0);
    },
  );

  it(
    'binds the whole dynamic range 49152-65535 (16384 listeners) under the default limit',
    LONG,
    async () => {
      const site = writeSite([{ proto: 'tcp', ports: ['49152-65535'] }]);
      const l = listen([site, '--host', 'srv', '--ttl', '10m', '--secret', SECRET, '--format', 'json']);
      const ready = await l.waitEvent((e) => e.event === 'listening', 'listening event', 240_000);
      assert.equal(ready.ports.wanted, 16384);
      // Ports this machine has in use (other tests' ephemeral connections) are listed, never missing.
      assert.equal(portsOf(ready.listening, 'tcp') + portsOf(ready.notBound, 'tcp'), 16384);
      assert.ok(
        ready.notBound.every((g: Json) => g.code === 'EADDRINUSE'),
        JSON.stringify(ready.notBound),
      );
      assert.ok(ready.ports.bound > 16000, `bound ${ready.ports.bound}`);
      const bound = (ready.listening[0].ports as [number, number][]).flatMap(([lo, hi]) => [
        lo,
        hi,
        Math.floor((lo + hi) / 2),
      ]);
      for (const port of bound.slice(0, 30)) {
        const probe = makeProbe(KEY, 'tcp', port);
        assert.ok(
          verifyReply(KEY, probe, (await tcpExchange(port, probe.line)).reply.toString('latin1')),
          `tcp/${port}`,
        );
      }
      l.kill();
      assert.equal((await l.exited).code, 0, l.stderr);
    },
  );
});

describe('portolan listen: privileges, --bind and PORTOLAN_SECRET', () => {
  const root = process.getuid?.() === 0;
  const unprivilegedStart = existsSync('/proc/sys/net/ipv4/ip_unprivileged_port_start')
    ? Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'))
    : 1024;
  let l: Listener;
  let ready: Json;
  let base = 0;

  before(async () => {
    base = await freeBase(2);
    // The host's inventory address is not on this machine; --bind keeps the test on loopback.
    const site = writeSite([{ proto: 'tcp', ports: [1, base] }], '198.51.100.7');
    l = listen([site, '--host', 'srv', '--bind', '127.0.0.1', '--ttl', '10m', '--format', 'json'], {
      env: { PORTOLAN_SECRET: SECRET },
      ...(root ? { uid: 65534 } : {}),
    });
    ready = await l.waitEvent((e) => e.event === 'listening', 'listening event');
  });
  after(() => l.kill('SIGKILL'));

  it('lists a privileged port it has no right to bind (EACCES) and carries on', {
    skip: unprivilegedStart <= 1,
  }, () => {
    assert.deepEqual(
      ready.notBound.map((g: Json) => [g.proto, g.ports, g.code]),
      [['tcp', [[1, 1]], 'EACCES']],
    );
    assert.match(ready.notBound[0].reason, /privileged port/);
  });

  it('binds --bind instead of all addresses when the inventory address is elsewhere', () => {
    assert.deepEqual(ready.bind.addresses, ['127.0.0.1']);
    assert.match(ready.bind.why, /^--bind 127\.0\.0\.1$/);
    assert.deepEqual(ready.listening, [
      { proto: 'tcp', address: '127.0.0.1', ports: [[base, base]], local: false },
    ]);
  });

  it('uses PORTOLAN_SECRET and does not print it', async () => {
    assert.equal(ready.secret, undefined);
    assert.ok(!l.lines.some((x) => x.includes(SECRET)));
    const probe = makeProbe(KEY, 'tcp', base);
    assert.ok(verifyReply(KEY, probe, (await tcpExchange(base, probe.line)).reply.toString('latin1')));
    l.kill();
    assert.equal((await l.exited).code, 0, l.stderr);
  });
});

describe('portolan listen: bad input', () => {
  let site = '';
  before(() => {
    site = writeSite([{ proto: 'tcp', ports: [1] }]);
  });
  const cases: [string, string[], RegExp][] = [
    ['unknown host', ['--host', 'nope'], /--host "nope" is not a host of .* \(expected one of: srv, cli\)/],
    [
      'a host name with a typo',
      ['--host', 'srvv'],
      /--host "srvv" is not a host of .* \(did you mean "srv"\?\) \(expected one of: srv, cli\)/,
    ],
    ['missing host', [], /--host is required/],
    ['bad ttl', ['--host', 'srv', '--ttl', '2d'], /--ttl "2d" is not a duration from 1s to 24h/],
    ['ttl over 24h', ['--host', 'srv', '--ttl', '25h'], /--ttl "25h"/],
    [
      'bind elsewhere',
      ['--host', 'srv', '--bind', '198.51.100.7'],
      /--bind 198\.51\.100\.7 is not an address of this machine/,
    ],
    ['bad format', ['--host', 'srv', '--format', 'xml'], /--format "xml" is not one of: text, json/],
    ['empty secret', ['--host', 'srv', '--secret', ''], /the secret is empty/],
  ];
  for (const [name, args, message] of cases)
    it(`exits 2 on ${name}, before binding anything`, () => {
      const r = runCli(['listen', site, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    });

  it('says so and exits 0 when the host accepts no TCP or UDP flow', () => {
    const r = runCli(['listen', site, '--host', 'cli', '--secret', SECRET]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /host cli accepts no TCP or UDP flow in this plan: nothing to listen on/);
  });
});
