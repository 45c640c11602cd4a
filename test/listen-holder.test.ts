import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { holderText, portHolders } from '../src/listen/holder.js';
import { bindReport } from '../src/listen/sockets.js';

/**
 * `listen` on a port another process already holds (EADDRINUSE): the report names the holder,
 * as `ss -ltnup` would, when /proc shows it (this test's own sockets on loopback, so the holder
 * is this process), and says whose socket it is when the process is not visible.
 */

const linux = process.platform === 'linux';

describe('listen: a port already in use names its holder', { skip: !linux && 'reads Linux /proc' }, () => {
  const servers: net.Server[] = [];
  const udps: dgram.Socket[] = [];
  const ports: Record<string, number> = {};
  const listen = (name: string, host: string) =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, host, () => {
        ports[name] = (s.address() as net.AddressInfo).port;
        resolve();
      });
      servers.push(s);
    });

  before(async () => {
    await listen('one', '127.0.0.1');
    await listen('all', '0.0.0.0');
    await listen('v6', '::1');
    const u = dgram.createSocket('udp4');
    udps.push(u);
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', r));
    ports.udp = u.address().port;
  });
  after(() => {
    for (const s of servers) s.close();
    for (const u of udps) u.close();
  });

  it('finds the process of a socket on the same address, on the wildcard address, over IPv6 and UDP', () => {
    const one = ports.one as number;
    const all = ports.all as number;
    const v6 = ports.v6 as number;
    const udp = ports.udp as number;
    const held = portHolders([
      { proto: 'tcp', address: '127.0.0.1', port: one },
      { proto: 'tcp', address: '127.0.0.2', port: all },
      { proto: 'tcp', address: '::1', port: v6 },
      { proto: 'udp', address: '127.0.0.1', port: udp },
    ]);
    for (const [key, address] of [
      [`tcp|127.0.0.1|${one}`, '127.0.0.1'],
      [`tcp|127.0.0.2|${all}`, '0.0.0.0'],
      [`tcp|::1|${v6}`, '0:0:0:0:0:0:0:1'],
      [`udp|127.0.0.1|${udp}`, '127.0.0.1'],
    ] as const) {
      const h = held.get(key);
      assert.ok(h, `no holder for ${key}`);
      assert.equal(h.process?.pid, process.pid, key);
      assert.equal(h.address, address, key);
      assert.equal(h.uid, process.getuid?.());
    }
    assert.match(
      holderText(held.get(`tcp|127.0.0.2|${all}`) as never, 'tcp'),
      /^by \S+ \(pid \d+\) on 0\.0\.0\.0$/,
    );
  });

  it('a port nobody holds has no holder', () => {
    // A port this test closed: nothing of this namespace holds it now.
    const s = net.createServer();
    return new Promise<void>((resolve) => {
      s.listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => {
          assert.equal(portHolders([{ proto: 'tcp', address: '127.0.0.1', port }]).size, 0);
          resolve();
        });
      });
    });
  });

  it("listen's bind report says who holds the port, and whose socket it is when the process is hidden", () => {
    const one = ports.one as number;
    const spec = { proto: 'tcp' as const, address: '127.0.0.1', port: one, local: false };
    const inUse = { spec, error: { code: 'EADDRINUSE', message: 'listen EADDRINUSE' } };
    const real = bindReport([inUse], [], undefined);
    assert.match(
      real.notBound[0]?.reason ?? '',
      new RegExp(`^already in use by \\S+ \\(pid ${process.pid}\\)$`),
    );
    const hidden = bindReport(
      [inUse],
      [],
      undefined,
      () => new Map([[`tcp|127.0.0.1|${one}`, { uid: 0, address: '0.0.0.0' }]]),
    );
    assert.equal(
      hidden.notBound[0]?.reason,
      'already in use by a socket of uid 0 on 0.0.0.0 (its process is visible to root only: sudo ss -ltnp)',
    );
    const unknown = bindReport([inUse], [], undefined, () => new Map());
    assert.equal(unknown.notBound[0]?.reason, 'already in use');
  });
});
