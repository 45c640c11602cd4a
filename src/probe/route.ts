import dgram from 'node:dgram';

/**
 * How this machine would send to an address: the source address the kernel picks, or the errno
 * when it has no way to send there. Asked with connect(2) on a UDP socket, which looks the route
 * up (and binds the source address) without sending a packet (udp(7), ip(7)).
 *
 * - `{ source }`: the route exists; probes to the address leave from `source`.
 * - `{ errno: 'ENETUNREACH' }`: no route to the address (no matching route, interface down).
 * - `{ errno: 'EACCES' }`: the address is a broadcast address here (a socket needs SO_BROADCAST).
 * - any other errno: the kernel refused for its own reason (EINVAL for an unusable address).
 */
export type Route = { source: string } | { errno: string };

/** Looks up the route to one address; never throws, never sends. */
export function routeTo(address: string, family: 4 | 6): Promise<Route> {
  return new Promise((resolve) => {
    let sock: dgram.Socket;
    try {
      sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    } catch (err) {
      resolve({ errno: (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN' });
      return;
    }
    const done = (r: Route) => {
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(r);
    };
    sock.on('error', (err: NodeJS.ErrnoException) => done({ errno: err.code ?? 'EUNKNOWN' }));
    // Port 9 (discard): any port does, connect only chooses the route.
    sock.connect(9, address, (err?: Error) => {
      if (err) return done({ errno: (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN' });
      try {
        done({ source: sock.address().address });
      } catch (e) {
        done({ errno: (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN' });
      }
    });
  });
}

/** Routes of many addresses, each looked up once; those in `known` (an earlier routesTo) are not asked again. */
export async function routesTo(
  targets: Iterable<{ address: string; family: 4 | 6 }>,
  known?: ReadonlyMap<string, Route>,
): Promise<Map<string, Route>> {
  const out = new Map<string, Route>(known);
  const todo: { address: string; family: 4 | 6 }[] = [];
  for (const t of targets)
    if (!out.has(t.address)) {
      out.set(t.address, { errno: 'EUNKNOWN' });
      todo.push(t);
    }
  const width = 64;
  for (let i = 0; i < todo.length; i += width)
    await Promise.all(
      todo.slice(i, i + width).map(async (t) => {
        out.set(t.address, await routeTo(t.address, t.family));
      }),
    );
  return out;
}

/** One line on why this machine cannot send to `address`, for a `no-route` verdict. */
export function noRouteDetail(address: string, errno: string): string {
  if (errno === 'ENETUNREACH')
    return `ENETUNREACH: this machine has no route to ${address} (no route in its table, or the interface is down); no packet left this machine`;
  if (errno === 'EACCES')
    return `EACCES: ${address} is a broadcast address on this machine's network, not one host; no packet was sent`;
  return `${errno}: this machine's kernel refused to send to ${address}; no packet left this machine`;
}
