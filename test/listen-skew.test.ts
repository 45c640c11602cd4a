import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkJson, portVerdicts } from './check-lab.js';
import { BIN, ROOT, runCliAsync } from './helpers.js';

/**
 * A `portolan listen` whose clock is more than MAX_SKEW_SECONDS off the checking machine's: it
 * refuses every signed probe by its timestamp, closing TCP probes without a reply and ignoring
 * datagrams, as it does with another secret. The real CLI on both sides, over loopback, at an
 * address of this run's own; the responder's clock is set 400 s ahead (a preload that moves
 * Date.now). check must not call the responder's NTP port filtered ("a firewall drops udp/...":
 * the path is open, the probe was refused), and its hint must name the clocks beside the secret.
 */

const SECRET = 'skew-test-secret-0123456789';
const ADDR = `127.${30 + (process.pid % 200)}.${(process.pid >> 8) % 250}.9`;
const AHEAD_MS = 400_000;

function freeTcp(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, ADDR, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function freeUdp(): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, ADDR, () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

describe('listen with its clock 400 s ahead of check', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-skew-'));
  let listen: ChildProcess;
  let out = '';
  let site = '';
  let tcp = 0;
  let ntp = 0;

  before(async () => {
    tcp = await freeTcp();
    ntp = await freeUdp();
    const entry = (id: string, protocol: string, port: number, service: string) =>
      `  - { id: ${id}, from: client, to: server, protocol: ${protocol}, ports: [${port}], service: ${service}, purpose: test, sources: [{ doc: t.txt, table: t, row: 1 }] }`;
    writeFileSync(
      join(dir, 'catalog.yaml'),
      [
        'product: skew-test',
        'title: skew test product',
        'documents: [{ file: t.txt, title: test }]',
        'roles: { client: { title: client }, server: { title: server } }',
        'entries:',
        entry('agent', 'tcp', tcp, 'agent'),
        entry('time', 'udp', ntp, 'ntp'),
        '',
      ].join('\n'),
    );
    site = join(dir, 'site.yaml');
    writeFileSync(
      site,
      [
        'site: skew-lab',
        'catalogs: [catalog.yaml]',
        'products: { skew-test: {} }',
        'hosts:',
        `  srv: { address: ${ADDR}, roles: [skew-test:server] }`,
        '  cli: { address: 127.0.0.2, roles: [skew-test:client] }',
        '',
      ].join('\n'),
    );
    const ahead = `data:text/javascript,const now = Date.now; Date.now = () => now() + ${AHEAD_MS};`;
    listen = spawn(
      process.execPath,
      ['--import', ahead, BIN, 'listen', site, '--host', 'srv', '--secret', SECRET, '--ttl', '10m'],
      { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((resolve, reject) => {
      listen.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('answering signed probes until')) resolve();
      });
      listen.once('exit', (code) => reject(new Error(`listen exited ${code}: ${out}`)));
    });
  });
  after(() => {
    listen?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('leaves the NTP port open|filtered (never filtered) and names the clocks in the hint', {
    timeout: 120_000,
  }, async () => {
    const r = await runCliAsync(['check', site, '--from', 'cli', '--secret', SECRET, '--format', 'json']);
    const doc = checkJson(r);
    const v = portVerdicts(doc);
    const time = v.get(`${ADDR}|udp|${ntp}`);
    assert.equal(time?.verdict, 'open|filtered', JSON.stringify(time));
    assert.match(time?.detail ?? '', /the responder on [\d.]+ closed a signed TCP probe without a reply/);
    const agent = doc.flows.find((f) => f.protocol === 'tcp');
    assert.equal(agent?.verdict, 'open-unverified', JSON.stringify(agent));
    for (const f of doc.flows)
      assert.match(
        f.hint,
        /its clock and this machine's differ by more than 300 s \(its log says "timestamp outside the allowed clock skew"\)/,
      );
    assert.equal(r.code, 0, r.stdout);
    // The responder says why, on its side.
    // Waits for the line; the deadline is a hang guard for a loaded machine.
    const end = Date.now() + 60_000;
    while (!out.includes(`rejected tcp/${tcp}`) && Date.now() < end)
      await new Promise((res) => setTimeout(res, 100));
    assert.match(out, new RegExp(`rejected tcp/${tcp} .*: timestamp outside the allowed clock skew`));
  });
});
