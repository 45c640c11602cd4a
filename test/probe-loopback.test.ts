import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { loadSite } from '../src/inventory/load.js';
import { buildPlan } from '../src/plan/plan.js';
import { ConnectError, connectFailure } from '../src/probe/conn.js';
import { type CheckReport, runCheck } from '../src/probe/engine.js';
import { type Selection, scopeFor, select } from '../src/probe/scope.js';
import { SweepPool } from '../src/probe/sweep.js';
import { OPEN, quietConnect, SILENT, type SweepJob, sweepTcp } from '../src/probe/tcp.js';
import type { PortResult } from '../src/probe/verdict.js';
import { catalog, entry, onPath, selfSignedCert } from './check-lab.js';
import { BIN, ROOT } from './helpers.js';

/**
 * The engine end to end on loopback, with in-process peers: runs without root (loopback is
 * exempt from ICMP rate limits, and nothing leaves the machine). The namespace tests cover
 * firewalls and real daemons; this one covers the engine itself, including a 5000-port range that
 * goes through the worker threads and the net.Socket fallback of the sweep.
 */

const SERVER = '127.0.0.2';

function listenTcp(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, SERVER, () => resolve((server.address() as net.AddressInfo).port)),
  );
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  const p = await listenTcp(s);
  await new Promise((r) => s.close(r));
  return p;
}

describe('check engine on loopback, in-process peers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-loop-'));
  const servers: net.Server[] = [];
  const sockets: dgram.Socket[] = [];
  const ports: Record<string, number> = {};
  const haveOpenssl = onPath('openssl');
  let site: string;
  let report: CheckReport;
  const at = (port: number, proto = 'tcp'): PortResult => {
    const r = report.results.flatMap((f) => f.results).find((x) => x.port === port && x.protocol === proto);
    assert.ok(r, `no result for ${proto}/${port}`);
    return r;
  };

  before(async () => {
    const add = async (name: string, s: net.Server) => {
      servers.push(s);
      ports[name] = await listenTcp(s);
    };
    await add(
      'plain',
      net.createServer((s) => s.on('error', () => {})),
    );
    await add(
      'ssh',
      net.createServer((s) => {
        s.on('error', () => {});
        s.write('SSH-2.0-FakeSSH_1.0\r\n');
      }),
    );
    await add(
      'http',
      net.createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.end('HTTP/1.1 204 No Content\r\n\r\n'));
      }),
    );
    if (haveOpenssl) {
      const pem = selfSignedCert(dir, '/CN=loop.test');
      const creds = { key: readFileSync(pem.key), cert: readFileSync(pem.cert) };
      const answer = (s: tls.TLSSocket) => {
        s.on('error', () => {});
        s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
      };
      await add('tls13', tls.createServer({ ...creds, minVersion: 'TLSv1.3' }, answer));
      await add(
        'tls10',
        tls.createServer(
          { ...creds, minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' },
          answer,
        ),
      );
    }
    ports.closed = await freePort();
    // A fake NTP server: mode 4, stratum 2, our transmit time echoed as origin.
    const ntp = dgram.createSocket('udp4');
    ntp.on('message', (m, r) => {
      const out = Buffer.alloc(48);
      out[0] = 0x24;
      out[1] = 2;
      m.copy(out, 24, 40, 48);
      m.copy(out, 32, 40, 48);
      m.copy(out, 40, 40, 48);
      ntp.send(out, r.port, r.address);
    });
    await new Promise<void>((r) => ntp.bind(0, SERVER, () => r()));
    sockets.push(ntp);
    ports.ntp = ntp.address().port;
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, SERVER, () => r()));
    sockets.push(silent);
    ports.silentUdp = silent.address().port;
    const gone = dgram.createSocket('udp4');
    await new Promise<void>((r) => gone.bind(0, SERVER, () => r()));
    ports.closedUdp = gone.address().port;
    gone.close();
    // A 5000-port range around the plain listener: large enough for the worker threads.
    const base = Math.min(Math.max(1024, (ports.plain as number) - 2500), 65535 - 4999);
    ports.rangeLo = base;

    const https = [ports.tls13, ports.tls10, ports.http].filter((p): p is number => p !== undefined);
    writeFileSync(
      join(dir, 'lab.yaml'),
      catalog(
        ['client', 'server'],
        [
          entry('plain', 'server', 'tcp', [ports.plain as number, ports.closed as number], 'veeam-transport'),
          entry('ssh', 'server', 'tcp', [ports.ssh as number], 'ssh'),
          entry('http', 'server', 'tcp', [ports.http as number], 'http'),
          entry('https', 'server', 'tcp', https, 'https'),
          entry('ntp', 'server', 'udp', [ports.ntp as number], 'ntp'),
          entry(
            'udp',
            'server',
            'udp',
            [ports.silentUdp as number, ports.closedUdp as number],
            'veeam-data-mover',
          ),
          entry('range', 'server', 'tcp', [`${base}-${base + 4999}`], 'msrpc-dynamic'),
        ],
      ),
    );
    site = join(dir, 'site.yaml');
    writeFileSync(
      site,
      `site: loop\ncatalogs: [lab.yaml]\nproducts:\n  lab: {}\nhosts:\n  cli: { address: 127.0.0.1, roles: [lab:client] }\n  srv: { address: ${SERVER}, roles: [lab:server] }\n`,
    );
    const { inventory, catalogs } = loadSite(site);
    const scope = await scopeFor(inventory, buildPlan(inventory, catalogs), { from: 'cli' });
    report = await runCheck(scope, { timeoutMs: 1000, spacingMs: 300 });
  });

  after(async () => {
    for (const s of servers) s.close();
    for (const s of sockets) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('TCP: open, closed, and the application probes', () => {
    assert.equal(at(ports.plain as number).verdict, 'open-unverified');
    assert.deepEqual(
      [at(ports.closed as number).verdict, at(ports.closed as number).evidence.errno],
      ['closed', 'ECONNREFUSED'],
    );
    assert.equal(at(ports.ssh as number).verdict, 'ok');
    assert.equal(at(ports.ssh as number).evidence.banner, 'SSH-2.0-FakeSSH_1.0');
    assert.equal(at(ports.http as number).verdict, 'ok');
  });

  it('HTTPS: TLS 1.3 ok, TLS 1.0 tls-weak, plain HTTP on an https flow wrong-service', {
    skip: haveOpenssl ? false : 'openssl not installed',
  }, () => {
    assert.equal(at(ports.tls13 as number).verdict, 'ok', at(ports.tls13 as number).detail);
    assert.equal(at(ports.tls10 as number).verdict, 'tls-weak', at(ports.tls10 as number).detail);
    assert.equal(at(ports.http as number).verdict, 'ok'); // the http flow
    const https = report.results.find((f) => f.flow.service === 'https');
    assert.equal(https?.results.find((r) => r.port === ports.http)?.verdict, 'wrong-service');
  });

  it('UDP: NTP ok with stratum, a silent socket open|filtered, nothing bound closed', () => {
    assert.equal(at(ports.ntp as number, 'udp').verdict, 'ok');
    assert.equal(at(ports.ntp as number, 'udp').evidence.ntp?.stratum, 2);
    assert.equal(at(ports.silentUdp as number, 'udp').verdict, 'open|filtered');
    assert.equal(at(ports.closedUdp as number, 'udp').verdict, 'closed');
  });

  it('a 5000-port range: every port has a verdict, the listener among them is open', () => {
    const range = report.results.find((f) => f.flow.service === 'msrpc-dynamic');
    assert.equal(range?.results.length, 5000);
    assert.equal(range?.results.find((r) => r.port === ports.plain)?.verdict, 'open-unverified');
    const closed = range?.results.filter((r) => r.verdict === 'closed').length ?? 0;
    assert.ok(closed > 4900, `${closed} closed`);
  });

  it('the refused ports of a range share one evidence object, which has every field a port would', () => {
    const range = report.results.find((f) => f.flow.service === 'msrpc-dynamic');
    const refused = (range?.results ?? []).filter(
      (r) => r.evidence.errno === 'ECONNREFUSED' && r.evidence.attempts === 1,
    );
    assert.ok(refused.length > 4900, `${refused.length} refused at the first attempt`);
    // One object per (address, errno, attempts), not one per port: a 65535-port range holds one.
    assert.equal(new Set(refused.map((r) => r.evidence)).size, 1);
    const e = refused[0]?.evidence;
    assert.deepEqual(Object.keys(e ?? {}), [
      'errno',
      ...(e?.rttMs !== undefined ? ['rttMs'] : []),
      'attempts',
      'source',
    ]);
    assert.equal(e?.source, '127.0.0.1');
    // The port of the plain flow is also in the range: one probe, the same verdict in both flows.
    const plain = report.results.find((f) => f.flow.service === 'veeam-transport');
    const inPlain = plain?.results.find((r) => r.port === ports.plain);
    const inRange = range?.results.find((r) => r.port === ports.plain);
    assert.equal(inPlain?.verdict, 'open-unverified');
    assert.equal(inRange?.verdict, 'open-unverified');
    assert.equal(inPlain?.evidence.attempts, inRange?.evidence.attempts);
  });

  it('the silent ports of a range share one evidence object, which has every field a port would', async () => {
    // A pool that hears nothing: every port stays silent, and the retry budget (0) runs out.
    const silent = {
      warm() {
        return this;
      },
      run: async (job: SweepJob) => ({
        status: new Int32Array(job.port.length).fill(SILENT),
        rttMs: new Float32Array(job.port.length).fill(Number.NaN),
        rtt: job.targets.map(() => ({ srtt: Number.NaN, rttvar: 0, samples: 0 })),
      }),
    } as unknown as SweepPool;
    const { inventory, catalogs } = loadSite(site);
    const scope = await scopeFor(inventory, buildPlan(inventory, catalogs), { from: 'cli' });
    const lo = ports.rangeLo as number;
    const r = await runCheck(
      scope,
      { pool: silent, attempts: 1, spacingMs: 0, retryBudgetMs: 0 },
      select(scope, { ports: [[lo, lo + 4999]] }),
    );
    const range = r.results.find((f) => f.flow.service === 'msrpc-dynamic')?.results ?? [];
    assert.equal(range.length, 5000);
    assert.ok(range.every((p) => p.verdict === 'filtered'));
    assert.equal(new Set(range.map((p) => p.evidence)).size, 1);
    assert.deepEqual(range[0]?.evidence, { attempts: 1, rateLimited: true, source: '127.0.0.1' });
  });

  it('starts a sweep thread for a check large enough to use it, none for a small or rate-capped one', async () => {
    const { inventory, catalogs } = loadSite(site);
    const scope = await scopeFor(inventory, buildPlan(inventory, catalogs), { from: 'cli' });
    const lo = ports.rangeLo as number;
    const small = select(scope, { ports: [[ports.closed as number, ports.closed as number]] });
    const range = select(scope, { ports: [[lo, lo + 4999]] });
    const cases: [string, Selection, { maxRate?: number }, number][] = [
      ['one port', small, {}, 0],
      ['5000 ports under --max-rate', range, { maxRate: 200_000 }, 0],
      ['5000 ports', range, {}, 1],
    ];
    for (const [what, sel, opts, threads] of cases) {
      const pool = new SweepPool(2);
      try {
        const r = await runCheck(scope, { timeoutMs: 1000, spacingMs: 300, pool, ...opts }, sel);
        assert.ok(r.results.length > 0, what);
        assert.equal(pool.started, threads, what);
      } finally {
        await pool.close();
      }
    }
  });

  it('the net.Socket fallback of the sweep gives the same verdicts (PORTOLAN_SWEEP=net)', async () => {
    const out = await new Promise<string>((resolve) => {
      const child = spawn(
        process.execPath,
        [
          BIN,
          'check',
          site,
          '--from',
          'cli',
          '--format',
          'json',
          '--port',
          `${ports.rangeLo}-${(ports.rangeLo as number) + 4999}`,
        ],
        {
          cwd: ROOT,
          env: { ...process.env, PORTOLAN_SWEEP: 'net', NO_COLOR: '1' },
        },
      );
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.on('close', () => resolve(text));
    });
    const doc = JSON.parse(out) as {
      flows: { service: string; results: { ports: [number, number]; verdict: string }[] }[];
    };
    const mine = report.results.find((f) => f.flow.service === 'msrpc-dynamic')?.results ?? [];
    const theirs = new Map<number, string>();
    for (const r of doc.flows.find((f) => f.service === 'msrpc-dynamic')?.results ?? [])
      for (let p = r.ports[0]; p <= r.ports[1]; p++) theirs.set(p, r.verdict);
    assert.equal(theirs.size, 5000);
    const differ = mine.filter((r) => theirs.get(r.port) !== r.verdict);
    assert.ok(differ.length <= 2, `ports that differ: ${differ.map((d) => d.port).join(', ')}`);
  });
});

describe('the sweep pool on loopback', () => {
  it('shares a round between threads, counts every answer once and the earlier estimate once', async () => {
    const server = net.createServer((s) => s.on('error', () => {}));
    const open = await listenTcp(server);
    const n = 5000;
    const base = open > 40000 ? open - n + 1 : open;
    const port = Uint16Array.from({ length: n }, (_, i) => base + i);
    const pool = new SweepPool(2);
    try {
      const out = await pool.run({
        targets: [{ address: SERVER, family: 4, rtt: { srtt: 1, rttvar: 0.5, samples: 10 } }],
        target: new Uint32Array(n),
        port,
        concurrency: 256,
        // Every port answers at once on loopback: the timeout only guards against a starved
        // machine calling a late completion silent, which is not what this test is about.
        minTimeoutMs: 5000,
        maxTimeoutMs: 10_000,
      });
      const statuses = new Map<number, number>();
      for (const s of out.status) statuses.set(s, (statuses.get(s) ?? 0) + 1);
      assert.equal(out.status[port.indexOf(open)], OPEN);
      // Every other port of the range is refused (or, rarely, taken by another test's listener).
      assert.ok((statuses.get(-111) ?? 0) > n - 50, JSON.stringify([...statuses]));
      assert.equal(statuses.get(SILENT) ?? 0, 0);
      assert.equal(out.rtt[0]?.samples, 10 + n);
    } finally {
      await pool.close();
      server.close();
    }
  });

  it('never dials a socket of an IPv4-mapped address to a native IPv6 one', async () => {
    // A socket keeps its IPv4-mapped mode; sent to ::1 its connect would never complete.
    const n = 1000;
    const port = Uint16Array.from({ length: 2 * n }, (_, i) => 44000 + (i % n));
    const target = Uint32Array.from({ length: 2 * n }, (_, i) => (i < n ? 0 : 1));
    const none = { srtt: 0, rttvar: 0, samples: 0 };
    const out = await sweepTcp({
      targets: [
        { address: '::ffff:127.0.0.1', family: 6, rtt: none },
        { address: '::1', family: 6, rtt: none },
      ],
      target,
      port,
      concurrency: 256,
      // Generous: a connect that can never complete stays silent however long the wait, and a
      // loaded machine must not turn a late answer into silence.
      minTimeoutMs: 5000,
      maxTimeoutMs: 10_000,
    });
    assert.equal(out.status.filter((s) => s === SILENT).length, 0);
  });

  it('runs out of descriptors with an IPv4 and an IPv6 target and still finishes every port', async () => {
    // Spare sockets of one target must not starve the other's connects (see dropSpares in
    // src/probe/tcp.ts): with 60 descriptors, the sweep slows down but never stalls.
    const tcp = join(ROOT, 'dist', 'src', 'probe', 'tcp.js');
    const script = `
      import { sweepTcp } from ${JSON.stringify(new URL(`file://${tcp}`).href)};
      const n = 2000, port = new Uint16Array(2 * n), target = new Uint32Array(2 * n);
      for (let i = 0; i < 2 * n; i++) { port[i] = 43000 + (i % n); target[i] = i < n ? 0 : 1; }
      const none = { srtt: 0, rttvar: 0, samples: 0 };
      const out = await sweepTcp({ targets: [{ address: '127.0.0.1', family: 4, rtt: none },
        { address: '::1', family: 6, rtt: none }], target, port, concurrency: 256,
        minTimeoutMs: 5000, maxTimeoutMs: 10000 });
      const counts = {};
      for (const s of out.status) counts[s] = (counts[s] ?? 0) + 1;
      console.log(JSON.stringify(counts));`;
    const { code, stdout, stderr } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
    }>((resolve) => {
      const child = spawn(
        'sh',
        ['-c', 'ulimit -n 60 && exec "$0" --input-type=module -e "$1"', process.execPath, script],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stdout: out, stderr: err });
      });
    });
    assert.equal(code, 0, `the sweep did not finish: ${stderr}`);
    const counts = JSON.parse(stdout) as Record<string, number>;
    assert.equal(counts[String(SILENT)] ?? 0, 0, stdout);
    assert.equal(
      Object.values(counts).reduce((a, b) => a + b, 0),
      4000,
    );
  });
});

describe('a connect reset after its handshake completed', () => {
  // A peer that accepts and resets at once (as portolan listen does at its connection limit), and
  // a prober whose event loop is busy until the reset has arrived: the connect then completes with
  // ECONNRESET, not success. Linux reports a reset that answers the SYN as ECONNREFUSED; this one
  // came after the handshake, so the port is open (it was once reported closed).
  let dir = '';
  let child: ReturnType<typeof spawn> | undefined;
  let port = 0;
  const count = () => join(dir, 'resets');
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portolan-reset-'));
    writeFileSync(count(), '0');
    const script = `
      import net from 'node:net';
      import { writeFileSync } from 'node:fs';
      let n = 0;
      const s = net.createServer((c) => { c.on('error', () => {}); c.resetAndDestroy(); writeFileSync(${JSON.stringify(count())}, String(++n)); });
      s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
    child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    port = await new Promise<number>((resolve) =>
      child?.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
    );
  });
  after(() => {
    child?.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  /** Blocks this thread (its event loop too) until the peer has reset `n` connections in all. */
  const blockUntilReset = (n: number) => {
    const lock = new Int32Array(new SharedArrayBuffer(4));
    const end = Date.now() + 30_000;
    while (Number(readFileSync(count(), 'utf8') || 0) < n && Date.now() < end) Atomics.wait(lock, 0, 0, 5);
    assert.ok(Number(readFileSync(count(), 'utf8')) >= n, 'the peer never reset the connections');
  };

  it('the sweep calls every such port open', async () => {
    const before = Number(readFileSync(count(), 'utf8'));
    const n = 40;
    const none = { srtt: 0, rttvar: 0, samples: 0 };
    const sweep = sweepTcp({
      targets: [{ address: '127.0.0.1', family: 4, rtt: none }],
      target: new Uint32Array(n),
      port: new Uint16Array(n).fill(port),
      concurrency: 256,
      minTimeoutMs: 2000,
      maxTimeoutMs: 5000,
    });
    blockUntilReset(before + n);
    const out = await sweep;
    assert.deepEqual([...new Set(out.status)], [OPEN], `statuses: ${[...out.status].join(',')}`);
  });

  it('a quiet connect calls it open', async () => {
    const before = Number(readFileSync(count(), 'utf8'));
    const q = quietConnect('127.0.0.1', 4, port, 5000);
    blockUntilReset(before + 1);
    assert.equal((await q).status, OPEN);
  });

  it('a service connect that meets it is reset-after-connect, never closed', () => {
    const out = connectFailure(new ConnectError('ECONNRESET', 0.1, '127.0.0.1', port), 'TLS');
    assert.equal(out.verdict, 'reset-after-connect');
    assert.match(out.detail, /connected, then reset \(ECONNRESET\) before anything was sent/);
    assert.equal(
      connectFailure(new ConnectError('ECONNREFUSED', 0.1, '127.0.0.1', port), 'TLS').verdict,
      'closed',
    );
  });
});
