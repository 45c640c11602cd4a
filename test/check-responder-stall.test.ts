import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hostSecret } from '../src/listen/protocol.js';
import { Answerer } from '../src/listen/responder.js';
import { checkJson, portVerdicts } from './check-lab.js';
import { runCliAsync } from './helpers.js';

/**
 * `check --secret` against a responder that stalls (issue 8): a small Node fake on loopback that
 * answers signed probes with the real Answerer, but stops answering on every port while it holds
 * one connection (as a responder whose event loop is busy with a burst of connects does), and a
 * silent non-responder on a third port. A merely slow responder's port must end `ok (responder)`,
 * however often it stalls; a port something else holds ends `open-unverified`.
 */

const SECRET = 'stall-test-secret-0123456789';
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function writeSite(ports: number[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'portolan-stall-'));
  dirs.push(dir);
  writeFileSync(
    join(dir, 'catalog.yaml'),
    [
      'product: stall-test',
      'title: stall test product',
      'documents: [{ file: t.txt, title: test }]',
      'roles: { client: { title: client }, server: { title: server } }',
      'entries:',
      `  - { id: e0, from: client, to: server, protocol: tcp, ports: ${JSON.stringify(ports)}, service: s0, purpose: test, sources: [{ doc: t.txt, table: t, row: 1 }] }`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'site.yaml'),
    [
      'site: stall-lab',
      'catalogs: [catalog.yaml]',
      'products: { stall-test: {} }',
      'hosts:',
      '  srv: { address: 127.0.0.1, roles: [stall-test:server] }',
      '  cli: { address: 127.0.0.2, roles: [stall-test:client] }',
      '',
    ].join('\n'),
  );
  return join(dir, 'site.yaml');
}

/**
 * The fake responder. `pilot` answers every signed probe unless the responder is stalled; `slow`
 * leaves its first probe unanswered (the check's first pass), stalls the whole responder while it
 * holds its second (the first ask again), and answers from the third on. `other` reads and never answers.
 */
async function fake(): Promise<{ ports: { pilot: number; slow: number; other: number }; close: () => void }> {
  const answerer = new Answerer(hostSecret(SECRET, 'srv'));
  let stalled = false;
  let slowLines = 0;
  const servers: net.Server[] = [];
  const open = (onLine: (sock: net.Socket, line: Buffer, port: number) => void) =>
    new Promise<number>((resolve) => {
      const server = net.createServer((sock) => {
        sock.on('error', () => {});
        let buf = Buffer.alloc(0);
        sock.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.includes(10)) onLine(sock, buf, sock.localPort ?? 0);
        });
      });
      servers.push(server);
      server.listen({ host: '127.0.0.1', port: 0 }, () =>
        resolve((server.address() as net.AddressInfo).port),
      );
    });
  const reply = (sock: net.Socket, line: Buffer, port: number) => {
    const a = answerer.answer(line, 'tcp', port, Date.now(), '127.0.0.2');
    if ('reply' in a) sock.end(a.reply);
    else sock.destroy();
  };
  const pilot = await open((sock, line, port) => {
    if (!stalled) reply(sock, line, port);
  });
  const slow = await open((sock, line, port) => {
    slowLines++;
    if (slowLines === 2) {
      stalled = true;
      sock.on('close', () => {
        stalled = false;
      });
    }
    if (slowLines >= 3 && !stalled) reply(sock, line, port);
  });
  const other = await open(() => {});
  return {
    ports: { pilot, slow, other },
    close: () => {
      for (const s of servers) s.close();
    },
  };
}

describe('check --secret: a responder that stalls again after it answered', () => {
  it('keeps asking a slow responder port until it answers (ok (responder)), and leaves a port something else holds open-unverified', {
    timeout: 600_000,
  }, async () => {
    const f = await fake();
    try {
      const site = writeSite([f.ports.pilot, f.ports.slow, f.ports.other]);
      const r = await runCliAsync(['check', site, '--from', 'cli', '--secret', SECRET, '--format', 'json']);
      const doc = checkJson(r);
      const v = portVerdicts(doc);
      const at = (port: number) => v.get(`127.0.0.1|tcp|${port}`);
      assert.equal(at(f.ports.pilot)?.verdict, 'ok (responder)', JSON.stringify(at(f.ports.pilot)));
      assert.equal(
        at(f.ports.slow)?.verdict,
        'ok (responder)',
        `the port asked while the responder stalled: ${JSON.stringify(at(f.ports.slow))}`,
      );
      assert.equal(at(f.ports.other)?.verdict, 'open-unverified', JSON.stringify(at(f.ports.other)));
      assert.match(at(f.ports.other)?.detail ?? '', /no portolan responder answered the signed probe/);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      f.close();
    }
  });
});
