import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * Who holds a port that a bind found in use (EADDRINUSE), as `ss -ltnup` would say it, read from
 * Linux's /proc: the sockets of this network namespace (/proc/net/tcp, tcp6, udp, udp6: local
 * address and port, state, uid, inode) and the processes whose open files include that socket
 * (/proc/PID/fd/* -> socket:[INODE], /proc/PID/comm). A process another user owns is visible
 * only to root; then the socket's uid is all that is said. Off Linux, or when /proc cannot be
 * read, nothing is known.
 */
export interface Holder {
  /** The process name (/proc/PID/comm) and id, when visible. */
  process?: { name: string; pid: number };
  /** The uid that owns the socket. */
  uid: number;
  /** The holder's local address as /proc shows it (0.0.0.0 or :: when it holds every address). */
  address: string;
}

interface SocketRow {
  proto: 'tcp' | 'udp';
  address: string;
  port: number;
  uid: number;
  inode: string;
}

/** An address of /proc/net/{tcp,udp}[6]: hex, each 32-bit word in host (little-endian) order. */
function procAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => Number.parseInt(b, 16)));
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < bytes.length; i += 2)
    groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // Not compressed (::): compared through normal() below.
  return groups.join(':');
}

/** An IPv6 address in full (8 groups, no zero padding), an IPv4 one as is: for comparing. */
function normal(address: string): string {
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = address.includes('::') ? (tail ? tail.split(':') : []) : [];
  const fill = address.includes('::') ? new Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t].map((g) => Number.parseInt(g || '0', 16).toString(16)).join(':');
}

const TCP_LISTEN = '0A';

function sockets(): SocketRow[] {
  const rows: SocketRow[] = [];
  for (const [file, proto] of [
    ['tcp', 'tcp'],
    ['tcp6', 'tcp'],
    ['udp', 'udp'],
    ['udp6', 'udp'],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(`/proc/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [addr, port] = (f[1] ?? '').split(':');
      if (!addr || !port) continue;
      if (proto === 'tcp' && f[3] !== TCP_LISTEN) continue;
      rows.push({
        proto,
        address: procAddress(addr),
        port: Number.parseInt(port, 16),
        uid: Number(f[7]),
        inode: f[9] ?? '0',
      });
    }
  }
  return rows;
}

/** socket inode -> the first process (lowest pid) that has it open, over the /proc this user may read. */
function owners(inodes: ReadonlySet<string>): Map<string, { name: string; pid: number }> {
  const out = new Map<string, { name: string; pid: number }>();
  let pids: number[];
  try {
    pids = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .sort((a, b) => a - b);
  } catch {
    return out;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (!m?.[1] || !inodes.has(m[1]) || out.has(m[1])) continue;
      let name = '?';
      try {
        name = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        // gone since
      }
      out.set(m[1], { name, pid });
    }
    if (out.size === inodes.size) break;
  }
  return out;
}

const UNSPECIFIED = new Set(['0.0.0.0', '0:0:0:0:0:0:0:0']);

/**
 * The holders of the given (protocol, address, port) binds that failed with EADDRINUSE, keyed
 * `proto|address|port`: a socket of this namespace on the same port and protocol whose address
 * is the same or the unspecified one (which holds every address of its family, and an IPv6
 * wildcard socket the IPv4 ones too, unless it is IPv6-only: /proc does not say, so it is named).
 * Reads /proc once for them all; empty off Linux.
 */
export function portHolders(
  binds: readonly { proto: 'tcp' | 'udp'; address: string; port: number }[],
): Map<string, Holder> {
  const out = new Map<string, Holder>();
  if (process.platform !== 'linux' || !binds.length) return out;
  const rows = sockets();
  const found = new Map<string, SocketRow>();
  for (const b of binds) {
    const want = normal(b.address);
    const candidates = rows.filter((r) => r.proto === b.proto && r.port === b.port);
    const row =
      candidates.find((r) => normal(r.address) === want) ??
      candidates.find(
        (r) => UNSPECIFIED.has(normal(r.address)) && r.address.includes(':') === b.address.includes(':'),
      ) ??
      candidates.find((r) => UNSPECIFIED.has(normal(r.address)));
    if (row) found.set(`${b.proto}|${b.address}|${b.port}`, row);
  }
  const procs = owners(new Set([...found.values()].map((r) => r.inode)));
  for (const [key, row] of found) {
    const p = procs.get(row.inode);
    out.set(key, {
      ...(p ? { process: p } : {}),
      uid: row.uid,
      address: UNSPECIFIED.has(normal(row.address))
        ? row.address.includes(':')
          ? '::'
          : '0.0.0.0'
        : row.address,
    });
  }
  return out;
}

/**
 * "by sshd (pid 812) on 0.0.0.0", or "by a socket of uid 0 (its process is visible to root only:
 * sudo ss -ltnp)": `on ADDRESS` only for a holder of every address, which a bind of one address
 * meets too.
 */
export function holderText(h: Holder, proto: 'tcp' | 'udp'): string {
  const on = UNSPECIFIED.has(normal(h.address)) ? ` on ${h.address}` : '';
  return h.process
    ? `by ${h.process.name} (pid ${h.process.pid})${on}`
    : `by a socket of uid ${h.uid}${on} (its process is visible to root only: sudo ss -l${proto === 'tcp' ? 't' : 'u'}np)`;
}
