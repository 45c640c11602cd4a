import { BlockList, isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { mergeCidr, normalizeCidr } from 'cidr-tools';
import { quote } from '../errors.js';

/** A host's address as the inventory gives it, parsed once at the edge. */
export type Address =
  | { kind: 'ip'; text: string; version: 4 | 6 }
  | { kind: 'cidr'; text: string; version: 4 | 6; prefix: number }
  | { kind: 'dns'; text: string };

// RFC 1123 labels; a leading "*." is allowed for cloud endpoint patterns.
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^(?:\\*\\.)?(?:${LABEL}\\.)*${LABEL}\\.?$`, 'i');

let unspecifiedList: BlockList | undefined;

/** The unspecified addresses as a BlockList, made on first use (most inventories never need it). */
function unspecifiedAddresses(): BlockList {
  if (unspecifiedList === undefined) {
    unspecifiedList = new BlockList();
    unspecifiedList.addAddress('0.0.0.0', 'ipv4');
    unspecifiedList.addAddress('::', 'ipv6');
  }
  return unspecifiedList;
}

/**
 * True for the unspecified address in any spelling: 0.0.0.0, ::, ::ffff:0.0.0.0 (RFC 4291 2.5.2,
 * RFC 1122 3.2.1.3). A connect to it reaches this machine, never a remote host.
 */
export function isUnspecified(ip: string): boolean {
  const v = isIP(ip);
  // Node reads IPv4 only as four plain decimal octets (no leading zeros): one spelling.
  if (v === 4) return ip === '0.0.0.0';
  return v === 6 && unspecifiedAddresses().check(ip, 'ipv6');
}

let groupList: BlockList | undefined;

/**
 * Why `ip` (an IPv4 or IPv6 address as isIP reads it) names no single host, or undefined when it
 * may: a multicast group (224.0.0.0/4, RFC 5771; ff00::/8, RFC 4291 2.7) or the limited broadcast
 * 255.255.255.255 (RFC 919). TCP cannot connect to either, and a probe sent there would fail as if a
 * firewall dropped it (ENETUNREACH), so an inventory or command line naming one is refused.
 */
export function notOneHost(ip: string): string | undefined {
  if (ip === '255.255.255.255') return 'the limited broadcast address';
  if (groupList === undefined) {
    groupList = new BlockList();
    groupList.addSubnet('224.0.0.0', 4, 'ipv4');
    groupList.addSubnet('ff00::', 8, 'ipv6');
  }
  const v = isIP(ip);
  if (v === 4 ? groupList.check(ip, 'ipv4') : v === 6 && groupList.check(ip.replace(/%.*$/, ''), 'ipv6'))
    return 'a multicast group address';
  return undefined;
}

/**
 * True for a text that inet_aton(3) (and so glibc's getaddrinfo) reads as an IPv4 address: one to
 * four dot-separated parts, each decimal, octal (leading 0) or hex (0x): `0x0`, `0x0.0`,
 * `0x0a.0.0.1`, `010.1`, `167772161`. Such a text must never pass for a DNS name: the exports would
 * print the name while the probes go to the number it spells.
 */
export function isInetAtonForm(text: string): boolean {
  const parts = text.replace(/\.$/, '').split('.');
  return parts.length <= 4 && parts.every((p) => /^(?:0x[0-9a-f]*|\d+)$/i.test(p));
}

/**
 * Parses an address, returning the reason it is not one. Node's own parser is strict: leading-zero
 * octets such as 010.0.0.1 are rejected rather than read as octal.
 */
export function parseAddress(raw: string): Address | { error: string } {
  const text = raw.trim();
  // Most addresses are canonical IPv4 (`10.0.0.1`, `10.0.0.0/24`): read without node:net's regular
  // expressions. Anything else, the unspecified 0.0.0.0 and its /32 included, takes the general path,
  // as does every block from 224.0.0.0 up (multicast and broadcast are refused there).
  const key = ipv4Key(text);
  if (key > 0 && key < FIRST_MULTICAST_KEY) {
    const hostBits = key % 64;
    return hostBits === 0 && text.indexOf('/') < 0
      ? { kind: 'ip', text, version: 4 }
      : { kind: 'cidr', text, version: 4, prefix: 32 - hostBits };
  }
  const expected = '(expected an IPv4/IPv6 address, a CIDR or a DNS name)';
  if (text === '') return { error: `the address is empty ${expected}` };
  if (/^[\d.]+:\d+$/.test(text) || /^\[.*\]:\d+$/.test(text))
    return {
      error: `${quote(text)} carries a port (expected the address alone; ports come from the catalog)`,
    };
  if (/(^|[./])0\d/.test(text.split('/')[0] ?? '') && /^[\d.]+(\/\d+)?$/.test(text))
    return {
      error: `${quote(text)} has an octet with a leading zero (expected plain decimal such as 10.0.0.1; leading zeros are refused, not read as octal)`,
    };
  // A zone index (RFC 4007 section 11: fe80::1%eth0) is read before any '/': an interface name
  // is not a prefix, whatever it holds.
  const pct = text.indexOf('%');
  if (pct >= 0) {
    const base = text.slice(0, pct);
    const zone = text.slice(pct + 1);
    if (isIP(base) !== 6)
      return {
        error: `${quote(text)} has a '%' zone index after ${quote(base)}, which is not an IPv6 address (expected a link-local IPv6 address with its zone, e.g. fe80::1%eth0, or an address or CIDR without '%')`,
      };
    if (!/^fe[89ab]/i.test(base))
      return {
        error: `${quote(text)} carries a zone index (%${zone}), which only a link-local address (fe80::/10) takes (expected ${base} alone; RFC 4007 section 11)`,
      };
    if (zone.includes('/'))
      return {
        error: `${quote(text)} gives a zone index with a prefix (%${zone}): a zone names one interface of one machine, a prefix a network (expected the address with its zone, e.g. ${base}%eth0, or the network without one, e.g. fe80::/64)`,
      };
    if (!/^[0-9A-Za-z.:-]+$/.test(zone))
      return {
        error: `${quote(text)} has the zone index ${quote(zone)}, which is not an interface name or number that can be used (expected letters, digits, '.', '-' or ':' after the '%', e.g. fe80::1%eth0 or fe80::1%2)`,
      };
  }
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const ip = text.slice(0, slash);
    const prefixText = text.slice(slash + 1);
    const version = isIP(ip) as 0 | 4 | 6;
    if (version === 0)
      return {
        error: `${quote(ip)} before the / is not an IPv4 or IPv6 address (expected a CIDR such as 10.0.0.0/24)`,
      };
    const max = version === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max)
      return {
        error: `prefix /${prefixText} is out of range (expected a whole number from 0 to ${max} for IPv${version})`,
      };
    if (Number(prefixText) === max && isUnspecified(ip))
      return {
        error: `${quote(text)} is the unspecified address: a connect to it reaches this machine, not a host (expected the host's own address or network)`,
      };
    const group = Number(prefixText) >= (version === 4 ? 4 : 8) ? notOneHost(ip) : undefined;
    if (group !== undefined)
      return {
        error: `${quote(text)} lies in multicast address space (224.0.0.0/4, ff00::/8), which names groups, not hosts (expected the hosts' own network)`,
      };
    const canonical = normalizeCidr(`${ip}/${prefixText}`);
    if (canonical !== normalizeCidr(`${ip}/${max}`).replace(/\/\d+$/, `/${prefixText}`))
      return { error: `host bits are set in ${text} (expected the network address ${canonical})` };
    return { kind: 'cidr', text: canonical, version, prefix: Number(prefixText) };
  }
  const version = isIP(text);
  if ((version === 4 || version === 6) && isUnspecified(text))
    return {
      error: `${quote(text)} is the unspecified address: a connect to it reaches this machine, not a host (expected the host's own address)`,
    };
  const group = version === 4 || version === 6 ? notOneHost(text) : undefined;
  if (group !== undefined)
    return {
      error: `${quote(text)} is ${group}, not one host: a flow's probes and rules name one host (expected the host's own unicast address)`,
    };
  // An IPv4 address isIP accepts is already canonical (plain decimal octets); IPv6 has many spellings.
  if (version === 4) return { kind: 'ip', text, version };
  if (version === 6) return { kind: 'ip', text: normalizeCidr(text), version };
  if (isInetAtonForm(text) && !/^[\d.]+$/.test(text))
    return {
      error: `${quote(text)} is a number the system resolver reads as an IPv4 address (hex or octal form), not a DNS name (expected four decimal octets such as 10.0.0.1, or a name)`,
    };
  if (/^[\d.]+$/.test(text))
    return {
      error: `${quote(text)} is not a valid IPv4 address (expected four decimal octets 0-255)`,
    };
  if (text.includes(':')) return { error: `${quote(text)} is not a valid IPv6 address ${expected}` };
  if (/[^\x00-\x7f]/.test(text)) {
    // An internationalised name goes on the wire, and into every rule, as its A-labels (RFC 5891
    // section 4.4): say which, so a look-alike letter (Cyrillic "а" for "a") shows as what it is.
    const ascii = domainToASCII(text);
    if (ascii !== '' && ascii.length <= 253 && DNS_NAME.test(ascii))
      return {
        error: `${quote(text)} is an internationalised domain name (expected it as DNS carries it, in ASCII: ${quote(ascii)}; RFC 5891)`,
      };
  }
  if (text.length > 253 || !DNS_NAME.test(text))
    return { error: `${quote(text)} is neither an IP address, a CIDR nor a DNS name ${expected}` };
  return { kind: 'dns', text: text.toLowerCase().replace(/\.$/, '') };
}

/**
 * Collapses IP and CIDR texts into the fewest CIDRs that cover exactly the same addresses: IPv4
 * first, then IPv6, each in address order, every one with its prefix (`10.0.0.1/32`). IPv4 in the
 * canonical form the inventory keeps (four plain decimal octets, optional /prefix) is merged here in
 * linear-logarithmic time on 32-bit numbers; anything else goes through cidr-tools' mergeCidr, whose
 * result this equals.
 */
export function collapseAddresses(texts: readonly string[]): string[] {
  let v4: readonly string[] = texts;
  const v6: string[] = [];
  // Split only when there is IPv6 to split off.
  let any6 = false;
  for (const t of texts)
    if (t.includes(':')) {
      any6 = true;
      break;
    }
  if (any6) {
    const only4: string[] = [];
    for (const t of texts) (t.includes(':') ? v6 : only4).push(t);
    v4 = only4;
  }
  const out = v4.length ? (collapseIpv4(v4) ?? mergeCidr([...v4])) : [];
  if (v6.length) for (const c of mergeCidr(v6)) out.push(c);
  return out;
}

const TWO_32 = 2 ** 32;
/** ipv4Key of 224.0.0.0/32, the first multicast address (RFC 5771). */
const FIRST_MULTICAST_KEY = 224 * 2 ** 24 * 64;

/**
 * A canonical IPv4 text (`a.b.c.d` or `a.b.c.d/p`: decimal octets 0-255 and a prefix 0-32, no
 * leading zeros, no host bits set) as `start * 64 + (32 - prefix)`, a number that sorts blocks by
 * start and then by size; -1 for any other text.
 */
function ipv4Key(text: string): number {
  let ip = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  let prefix = 32;
  let i = 0;
  for (; i <= text.length; i++) {
    const ch = i < text.length ? text.charCodeAt(i) : -1;
    if (ch >= 48 && ch <= 57) {
      if (digits === 1 && part === 0) return -1; // a leading zero
      part = part * 10 + (ch - 48);
      if (++digits > 3 || part > 255) return -1;
      continue;
    }
    if (digits === 0) return -1;
    ip = ip * 256 + part;
    part = 0;
    digits = 0;
    if (ch === 46 && dots < 3) {
      dots++;
      continue;
    }
    if (dots !== 3) return -1;
    if (ch === -1) break;
    if (ch !== 47) return -1;
    // The prefix: 0-32, no leading zero.
    const rest = text.slice(i + 1);
    if (!/^(?:3[0-2]|[12]?\d)$/.test(rest)) return -1;
    prefix = Number(rest);
    break;
  }
  const size = 2 ** (32 - prefix);
  if (ip % size !== 0) return -1;
  return ip * 64 + (32 - prefix);
}

/**
 * IPv4 texts (`a.b.c.d` or `a.b.c.d/p`, plain decimal, no host bits set) merged into the fewest
 * CIDRs, in address order; null when a text is not of that form (the caller falls back to the
 * general merge).
 */
function collapseIpv4(texts: readonly string[]): string[] | null {
  // Plain numbers: 2^32 * 64 fits a double exactly, and a typed array sorts numerically.
  const keys = new Float64Array(texts.length);
  for (let i = 0; i < texts.length; i++) {
    const key = ipv4Key(texts[i] as string);
    if (key < 0) return null;
    keys[i] = key;
  }
  keys.sort();
  const out: string[] = [];
  let lo = -1;
  let hi = -2;
  for (const key of keys) {
    const s = Math.floor(key / 64);
    const e = s + 2 ** (key % 64) - 1;
    if (s <= hi + 1) {
      if (e > hi) hi = e;
      continue;
    }
    if (lo >= 0) pushRange(out, lo, hi);
    lo = s;
    hi = e;
  }
  if (lo >= 0) pushRange(out, lo, hi);
  return out;
}

/** The CIDRs exactly covering [lo, hi], largest aligned block first. */
function pushRange(out: string[], lo: number, hi: number): void {
  let start = lo;
  while (start <= hi) {
    let size = 1;
    let prefix = 32;
    // Grow the block while it stays aligned at `start` and inside the range.
    while (prefix > 0 && start % (size * 2) === 0 && start + size * 2 - 1 <= hi) {
      size *= 2;
      prefix--;
    }
    out.push(`${ipv4Text(start)}/${prefix}`);
    start += size;
    if (start >= TWO_32) break;
  }
}

function ipv4Text(n: number): string {
  return `${Math.floor(n / 16777216)}.${Math.floor(n / 65536) % 256}.${Math.floor(n / 256) % 256}.${n % 256}`;
}

/** The eight 16-bit groups of a valid IPv6 address text (with or without an embedded dotted IPv4 tail). */
function ipv6Groups(text: string): number[] {
  let t = text.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(t);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    t = `${t.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = t.split('::');
  const part = (s: string) => (s ? s.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const h = part(head);
  const tl = tail === undefined ? [] : part(tail);
  return [...h, ...new Array(8 - h.length - tl.length).fill(0), ...tl];
}

/**
 * The identity of an IP or CIDR address for "one host per address": a CIDR of one address (/32,
 * /128) is that address, and an IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 section 2.5.5.2)
 * or network (prefix 96 and longer) is the IPv4 one. DNS names are themselves.
 */
export function addressIdentity(a: Address): string {
  if (a.kind === 'dns') return a.text;
  // An IPv4 address without a prefix is its own identity.
  if (a.version === 4 && a.text.indexOf('/') < 0) return a.text;
  const [ip = '', prefixText] = a.text.split('/');
  let prefix = prefixText === undefined ? undefined : Number(prefixText);
  let out = ip;
  if (a.version === 6) {
    const g = ipv6Groups(ip);
    if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff && (prefix === undefined || prefix >= 96)) {
      const [hi = 0, lo = 0] = g.slice(6);
      out = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
      if (prefix !== undefined) prefix -= 96;
      return prefix === undefined || prefix === 32 ? out : `${out}/${prefix}`;
    }
    out = g.map((x) => x.toString(16)).join(':');
    return prefix === undefined || prefix === 128 ? out : `${out}/${prefix}`;
  }
  return prefix === undefined || prefix === 32 ? out : `${out}/${prefix}`;
}
