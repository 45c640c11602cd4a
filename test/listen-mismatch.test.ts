import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, ROOT, runCliAsync } from './helpers.js';

/**
 * A signed probe `portolan listen` rejects, for a wrong secret or a host name other than listen's
 * --host: both sides say which, and every port of the responder gets the same verdict with a hint
 * that leads with the mismatch. The real CLI on both sides, over loopback only, at an address of
 * this run's own (so a parallel test's listener on the same ports is not met).
 */

const SECRET = 'mismatch-test-secret-0123456789';
const ADDR = `127.${30 + (process.pid % 200)}.${(process.pid >> 8) % 250}.7`;
const LONG = { timeout: 180_000 };

type Json = Record<string, unknown> & {
  flows: { verdict: string; hint: string; results: { detail: string }[] }[];
};

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, ADDR, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe('a signed probe the responder rejects: the secret or the host name, said on both sides', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-mismatch-'));
  let listen: ChildProcess;
  const events: Record<string, unknown>[] = [];
  let https = 0;
  let ssh = 0;
  let site = '';

  before(async () => {
    https = await freePort();
    ssh = await freePort();
    const entry = (id: string, service: string, port: number, row: number) =>
      `  - { id: ${id}, from: client, to: server, protocol: tcp, ports: [${port}], service: ${service}, purpose: test, sources: [{ doc: t.txt, table: t, row: ${row} }] }`;
    writeFileSync(
      join(dir, 'catalog.yaml'),
      [
        'product: mismatch-test',
        'title: mismatch test product',
        'documents: [{ file: t.txt, title: test }]',
        'roles: { client: { title: client }, server: { title: server } }',
        'entries:',
        entry('web', 'https', https, 1),
        entry('shell', 'ssh', ssh, 2),
        '',
      ].join('\n'),
    );
    site = join(dir, 'site.yaml');
    writeFileSync(
      site,
      [
        'site: mismatch-lab',
        'catalogs: [catalog.yaml]',
        'products: { mismatch-test: {} }',
        'hosts:',
        `  srv: { address: ${ADDR}, roles: [mismatch-test:server] }`,
        '  cli: { address: 127.0.0.2, roles: [mismatch-test:client] }',
        '',
      ].join('\n'),
    );
    listen = spawn(
      process.execPath,
      [BIN, 'listen', site, '--host', 'srv', '--secret', SECRET, '--ttl', '10m', '--format', 'json'],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      listen.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.startsWith('{')) continue;
          const e = JSON.parse(line) as Record<string, unknown>;
          events.push(e);
          if (e.event === 'listening') resolve();
        }
      });
      listen.once('exit', (code) => reject(new Error(`listen exited ${code}`)));
    });
  });
  after(() => {
    listen?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** Reasons the responder logged for rejected probes to `port` since `from` events. */
  const rejected = async (port: number, from: number) => {
    // The log line is written as the probe is closed; wait for it to come through the pipe (the
    // deadline is a hang guard: a loaded machine can take seconds to schedule the responder).
    const end = Date.now() + 60_000;
    while (!events.slice(from).some((e) => e.result === 'rejected' && e.port === port) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 100));
    return events
      .slice(from)
      .filter((e) => e.event === 'probe' && e.result === 'rejected' && e.port === port)
      .map((e) => String(e.reason));
  };

  it(
    'probe without --name signs for the address: the responder says so, and the hint says to give --name',
    LONG,
    async () => {
      const seen = events.length;
      const r = await runCliAsync(['probe', ADDR, `${https},${ssh}`, '--secret', SECRET, '--format', 'json']);
      const doc = JSON.parse(r.stdout) as Json;
      assert.equal(doc.flows.length, 1, r.stderr);
      const flow = doc.flows[0] as Json['flows'][number];
      assert.equal(flow.verdict, 'open-unverified');
      assert.match(flow.hint, /^connected, and the signed probe was closed without a reply/);
      assert.match(flow.hint, /give --name with the host listen runs as \(its --host\)/);
      assert.doesNotMatch(flow.hint, /wrong secret\?/);
      const reasons = await rejected(https, seen);
      assert.ok(reasons.length > 0, JSON.stringify(events.slice(seen)));
      for (const reason of reasons)
        assert.equal(
          reason,
          `signed for host "${ADDR}", not "srv": the secret is right, the host name is not (probe: give --name srv; check: the inventory's host at this address is not "srv")`,
        );
      const named = await runCliAsync([
        'probe',
        ADDR,
        `${https},${ssh}`,
        '--secret',
        SECRET,
        '--name',
        'srv',
        '--format',
        'json',
      ]);
      assert.equal(named.code, 0, named.stderr);
      assert.equal((JSON.parse(named.stdout) as Json).flows[0]?.verdict, 'ok (responder)');
    },
  );

  it(
    'probe with the right --name and another secret: the hint leads with the secret and does not ask for --name',
    LONG,
    async () => {
      const seen = events.length;
      const r = await runCliAsync([
        'probe',
        ADDR,
        `${https},${ssh}`,
        '--secret',
        'another-secret-0123456789',
        '--name',
        'srv',
        '--format',
        'json',
      ]);
      const doc = JSON.parse(r.stdout) as Json;
      assert.equal(doc.flows.length, 1, r.stderr);
      const flow = doc.flows[0] as Json['flows'][number];
      assert.equal(flow.verdict, 'open-unverified');
      assert.match(
        flow.hint,
        /^connected, and the signed probe was closed without a reply, as portolan listen does when it uses another secret than this probe \(its log says "bad MAC"\): give probe the secret that listen on srv printed \(or PORTOLAN_SECRET\); or it runs as another host than --name srv/,
      );
      assert.doesNotMatch(flow.hint, /give --name with the host/);
      const reasons = await rejected(https, seen);
      assert.ok(reasons.length > 0, JSON.stringify(events.slice(seen)));
      for (const reason of reasons) assert.match(reason, /^bad MAC: another secret/);
    },
  );

  it(
    'no secret at all: the reset is not blamed on the path alone, the hint says to give check the secret',
    LONG,
    async () => {
      const r = await runCliAsync(['check', site, '--from', 'cli', '--format', 'json']);
      const doc = JSON.parse(r.stdout) as Json;
      const web = doc.flows.find((f) => f.verdict === 'reset-after-connect');
      assert.ok(web, JSON.stringify(doc.flows.map((f) => f.verdict)));
      assert.match(
        web.hint,
        /if portolan listen runs on srv, it resets every probe not signed with its secret this way: give check that secret \(--secret or PORTOLAN_SECRET\)/,
      );
    },
  );

  it(
    'another secret: the responder says bad MAC and names its host; check gives every port the same verdict, the mismatch first',
    LONG,
    async () => {
      const seen = events.length;
      const r = await runCliAsync([
        'check',
        site,
        '--from',
        'cli',
        '--secret',
        'another-secret-0123456789',
        '--format',
        'json',
      ]);
      const doc = JSON.parse(r.stdout) as Json;
      assert.equal(doc.flows.length, 2, r.stderr);
      // The https port (its TLS ClientHello is reset by the responder) and the ssh port (no banner
      // comes) alike: connected, not proven, and not a firewall's fault.
      for (const flow of doc.flows) {
        assert.equal(flow.verdict, 'open-unverified', JSON.stringify(flow));
        assert.match(
          flow.results[0]?.detail ?? '',
          /^the signed probe was closed without a reply, as portolan listen closes/,
        );
        assert.match(
          flow.hint,
          /^connected, and the signed probe was closed without a reply, as portolan listen does when it uses another secret than this check, or runs as another host/,
        );
        assert.match(flow.hint, /check signs for the inventory host "srv": listen must run with --host srv/);
        assert.doesNotMatch(flow.hint, /IPS/);
      }
      assert.equal(r.code, 0, r.stderr);
      for (const port of [https, ssh]) {
        const reasons = (await rejected(port, seen)).filter((x) => x.startsWith('bad MAC'));
        assert.ok(reasons.length > 0, JSON.stringify(events.slice(seen)));
        for (const reason of reasons)
          assert.equal(
            reason,
            'bad MAC: another secret, or signed for a host name other than "srv" (probe: give --name srv)',
          );
      }
      const right = await runCliAsync([
        'check',
        site,
        '--from',
        'cli',
        '--secret',
        SECRET,
        '--format',
        'json',
      ]);
      assert.equal(right.code, 0, right.stderr);
      assert.deepEqual(
        (JSON.parse(right.stdout) as Json).flows.map((f) => f.verdict),
        ['ok (responder)', 'ok (responder)'],
      );
    },
  );
});
