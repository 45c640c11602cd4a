import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { checkJson, onPath, portVerdicts } from './check-lab.js';
import { runCliAsync } from './helpers.js';

/**
 * A service that accepts every connection and resets it at once, before a byte was sent either way
 * (a Python server on loopback closing with SO_LINGER 0, as a full connection limit or a
 * per-source filter does). An SSH client waits for the server's line, so the reset always comes
 * before portolan sends anything: the verdict and hint must put it on the service, not on an IPS
 * that resets sessions once data flows, and never speak of an SSH line portolan did not send.
 */

const SERVER = `
import socket, struct, sys
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()
`;

describe('probe: a service that resets every connection at accept', {
  skip: onPath('python3') ? false : 'python3 is not installed',
}, () => {
  let server: ChildProcess;
  let port = 0;

  before(async () => {
    server = spawn('python3', ['-c', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    port = await new Promise<number>((resolve, reject) => {
      server.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      server.once('exit', (code) => reject(new Error(`the server exited ${code}`)));
    });
  });

  after(() => {
    server?.kill();
  });

  it('ssh: reset-after-connect, put on the service (reset before any data), not on an IPS', async () => {
    const r = await runCliAsync(['probe', '127.0.0.1', String(port), '--service', 'ssh', '--format', 'json']);
    const doc = checkJson(r);
    assert.equal(r.code, 1, r.stderr);
    const got = portVerdicts(doc).get(`127.0.0.1|tcp|${port}`);
    assert.ok(got, r.stdout);
    assert.equal(got.verdict, 'reset-after-connect', got.detail);
    assert.match(got.detail, /reset \(ECONNRESET\) before anything was sent/);
    assert.doesNotMatch(got.detail, /identification line/);
    const hint = doc.flows[0]?.hint ?? '';
    assert.match(
      hint,
      /resets them at once, before any data was sent: the service \(or a proxy in front of it\) refuses this source/,
    );
    assert.doesNotMatch(hint, /^[^;]*an IPS or application-aware firewall/);
  });
});
