import assert from 'node:assert/strict';
import { BlockList, isIP } from 'node:net';
import { describe, it } from 'node:test';
import { normalizeCidr } from 'cidr-tools';
import fc from 'fast-check';
import { type Address, addressIdentity, parseAddress } from '../src/model/address.js';

/**
 * parseAddress as it was before canonical IPv4 got a path of its own: every text goes through
 * node:net's isIP and cidr-tools. The fast path must give exactly what this gives, errors included.
 */
function referenceParse(raw: string): Address | { error: string } {
  const unspecified = new BlockList();
  unspecified.addAddress('0.0.0.0', 'ipv4');
  unspecified.addAddress('::', 'ipv6');
  const isUnspecified = (ip: string) => {
    const v = isIP(ip);
    if (v === 4) return ip === '0.0.0.0';
    return v === 6 && unspecified.check(ip, 'ipv6');
  };
  // Multicast (RFC 5771, RFC 4291 2.7) and the limited broadcast name no one host.
  const groups = new BlockList();
  groups.addSubnet('224.0.0.0', 4, 'ipv4');
  groups.addSubnet('ff00::', 8, 'ipv6');
  const notOneHost = (ip: string) =>
    ip === '255.255.255.255'
      ? 'the limited broadcast address'
      : groups.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6')
        ? 'a multicast group address'
        : undefined;
  const isInetAtonForm = (t: string) => {
    const parts = t.replace(/\.$/, '').split('.');
    return parts.length <= 4 && parts.every((p) => /^(?:0x[0-9a-f]*|\d+)$/i.test(p));
  };
  const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
  const DNS_NAME = new RegExp(`^(?:\\*\\.)?(?:${LABEL}\\.)*${LABEL}\\.?$`, 'i');
  const text = raw.trim();
  const expected = '(expected an IPv4/IPv6 address, a CIDR or a DNS name)';
  if (text === '') return { error: `the address is empty ${expected}` };
  if (/^[\d.]+:\d+$/.test(text) || /^\[.*\]:\d+$/.test(text))
    return {
      error: `${JSON.stringify(text)} carries a port (expected the address alone; ports come from the catalog)`,
    };
  if (/(^|[./])0\d/.test(text.split('/')[0] ?? '') && /^[\d.]+(\/\d+)?$/.test(text))
    return {
      error: `${JSON.stringify(text)} has an octet with a leading zero (expected plain decimal such as 10.0.0.1; leading zeros are refused, not read as octal)`,
    };
  // A zone index is read before any '/' (an interface name is not a prefix).
  const pct = text.indexOf('%');
  if (pct >= 0) {
    const base = text.slice(0, pct);
    const zone = text.slice(pct + 1);
    if (isIP(base) !== 6)
      return {
        error: `${JSON.stringify(text)} has a '%' zone index after ${JSON.stringify(base)}, which is not an IPv6 address (expected a link-local IPv6 address with its zone, e.g. fe80::1%eth0, or an address or CIDR without '%')`,
      };
    if (!/^fe[89ab]/i.test(base))
      return {
        error: `${JSON.stringify(text)} carries a zone index (%${zone}), which only a link-local address (fe80::/10) takes (expected ${base} alone; RFC 4007 section 11)`,
      };
    if (zone.includes('/'))
      return {
        error: `${JSON.stringify(text)} gives a zone index with a prefix (%${zone}): a zone names one interface of one machine, a prefix a network (expected the address with its zone, e.g. ${base}%eth0, or the network without one, e.g. fe80::/64)`,
      };
    if (!/^[0-9A-Za-z.:-]+$/.test(zone))
      return {
        error: `${JSON.stringify(text)} has the zone index ${JSON.stringify(zone)}, which is not an interface name or number that can be used (expected letters, digits, '.', '-' or ':' after the '%', e.g. fe80::1%eth0 or fe80::1%2)`,
      };
  }
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const ip = text.slice(0, slash);
    const prefixText = text.slice(slash + 1);
    const version = isIP(ip) as 0 | 4 | 6;
    if (version === 0)
      return {
        error: `${JSON.stringify(ip)} before the / is not an IPv4 or IPv6 address (expected a CIDR such as 10.0.0.0/24)`,
      };
    const max = version === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max)
      return {
        error: `prefix /${prefixText} is out of range (expected a whole number from 0 to ${max} for IPv${version})`,
      };
    if (Number(prefixText) === max && isUnspecified(ip))
      return {
        error: `${JSON.stringify(text)} is the unspecified address: a connect to it reaches this machine, not a host (expected the host's own address or network)`,
      };
    if (Number(prefixText) >= (version === 4 ? 4 : 8) && notOneHost(ip) !== undefined)
      return {
        error: `${JSON.stringify(text)} lies in multicast address space (224.0.0.0/4, ff00::/8), which names groups, not hosts (expected the hosts' own network)`,
      };
    const canonical = normalizeCidr(`${ip}/${prefixText}`);
    if (canonical !== normalizeCidr(`${ip}/${max}`).replace(/\/\d+$/, `/${prefixText}`))
      return { error: `host bits are set in ${text} (expected the network address ${canonical})` };
    return { kind: 'cidr', text: canonical, version, prefix: Number(prefixText) };
  }
  const version = isIP(text);
  const zone = text.indexOf('%');
  if (version === 6 && zone >= 0 && !/^fe[89ab]/i.test(text))
    return {
      error: `${JSON.stringify(text)} carries a zone index (${text.slice(zone)}), which only a link-local address (fe80::/10) takes (expected ${text.slice(0, zone)} alone; RFC 4007 section 11)`,
    };
  if ((version === 4 || version === 6) && isUnspecified(text))
    return {
      error: `${JSON.stringify(text)} is the unspecified address: a connect to it reaches this machine, not a host (expected the host's own address)`,
    };
  const group = version === 4 || version === 6 ? notOneHost(text) : undefined;
  if (group !== undefined)
    return {
      error: `${JSON.stringify(text)} is ${group}, not one host: a flow's probes and rules name one host (expected the host's own unicast address)`,
    };
  if (version === 4) return { kind: 'ip', text, version };
  if (version === 6) return { kind: 'ip', text: normalizeCidr(text), version };
  if (isInetAtonForm(text) && !/^[\d.]+$/.test(text))
    return {
      error: `${JSON.stringify(text)} is a number the system resolver reads as an IPv4 address (hex or octal form), not a DNS name (expected four decimal octets such as 10.0.0.1, or a name)`,
    };
  if (/^[\d.]+$/.test(text))
    return {
      error: `${JSON.stringify(text)} is not a valid IPv4 address (expected four decimal octets 0-255)`,
    };
  if (text.includes(':')) return { error: `${JSON.stringify(text)} is not a valid IPv6 address ${expected}` };
  if (text.length > 253 || !DNS_NAME.test(text))
    return { error: `${JSON.stringify(text)} is neither an IP address, a CIDR nor a DNS name ${expected}` };
  return { kind: 'dns', text: text.toLowerCase().replace(/\.$/, '') };
}

/** Texts at the edges of the IPv4 fast path, each read by both paths. */
const TABLE = [
  '10.0.0.1',
  ' 10.0.0.1 ',
  '\t10.0.0.1\n',
  '1.2.3.4',
  '255.255.255.255',
  '224.0.0.1',
  '239.255.255.255/32',
  '224.0.0.0/4',
  '223.255.255.255',
  '240.0.0.1',
  '0.0.0.1',
  '0.0.0.0',
  ' 0.0.0.0',
  '0.0.0.0/32',
  '0.0.0.0/31',
  '0.0.0.0/0',
  '0.0.0.0/8',
  '10.0.0.0/8',
  '10.0.0.0/08',
  '10.0.0.0/008',
  '10.0.0.1/32',
  '10.0.0.1/31',
  '10.0.0.1/24',
  '10.0.0.0/33',
  '10.0.0.0/',
  '10.0.0.0/-1',
  '10.0.0.0/+8',
  '10.0.0.0/ 8',
  '10.0.0.0 /8',
  '10.0.0.0/8/8',
  '192.168.1.0/24',
  '192.168.1.128/25',
  '192.168.1.64/25',
  '010.0.0.1',
  '10.00.0.1',
  '10.0.0.01',
  '10.0.0.00',
  '00.0.0.0',
  '256.0.0.1',
  '10.0.0.256',
  '10.0.0.999',
  '10.0.0.1000',
  '4294967295',
  '10.0.0',
  '10.0',
  '10',
  '10.0.0.1.',
  '10.0.0.1..',
  '.10.0.0.1',
  '10..0.1',
  '10.0.0.1.5',
  '10.0.0. 1',
  '10. 0.0.1',
  '10.0.0.1:80',
  '10.0.0.1:',
  '0x0a.0.0.1',
  '0x0',
  '1e1.0.0.1',
  '١٠.0.0.1',
  '10.0.0.1%eth0',
  '::ffff:10.0.0.1',
  '::ffff:10.0.0.1/128',
  '::ffff:10.0.0.0/120',
  '::ffff:0.0.0.0',
  '::',
  '::/128',
  '::/0',
  '2001:db8::1',
  '2001:DB8::1',
  '2001:db8::/32',
  'fe80::1%eth0',
  '2001:db8::1%eth0',
  '[2001:db8::1]:443',
  'host.example',
  'HOST.Example.',
  '*.example.com',
  '',
  '   ',
  '10.0.0.1 10.0.0.2',
];

describe('parseAddress: the canonical IPv4 path', () => {
  it('reads every text of the table as the general path does', () => {
    for (const text of TABLE)
      assert.deepEqual(parseAddress(text), referenceParse(text), JSON.stringify(text));
  });

  it('reads dotted quads, with and without prefixes, leading zeros and spaces, as the general path does', () => {
    const octet = fc.oneof(
      fc.integer({ min: 0, max: 255 }).map(String),
      fc.integer({ min: 0, max: 999 }).map(String),
      fc.constantFrom('0', '00', '01', '010', '255', '256', ''),
    );
    const prefix = fc.oneof(
      fc.constant(''),
      fc.integer({ min: 0, max: 40 }).map((p) => `/${p}`),
      fc.constantFrom('/08', '/032', '/', '/ 8', '/-1'),
    );
    const pad = fc.constantFrom('', ' ', '\t', '.', ':80');
    const text = fc
      .tuple(pad, fc.array(octet, { minLength: 1, maxLength: 5 }), prefix, pad)
      .map(([a, parts, p, b]) => `${a}${parts.join('.')}${p}${b}`);
    fc.assert(
      fc.property(text, (t) => {
        assert.deepEqual(parseAddress(t), referenceParse(t), JSON.stringify(t));
      }),
      { numRuns: 5000 },
    );
  });

  it('reads networks of every prefix length at their network address as the general path does', () => {
    const net = fc
      .tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0, max: 32 }))
      .map(([n, p]) => {
        const start = p === 0 ? 0 : Math.floor(n / 2 ** (32 - p)) * 2 ** (32 - p);
        const ip = [24, 16, 8, 0].map((s) => Math.floor(start / 2 ** s) % 256).join('.');
        return `${ip}/${p}`;
      });
    fc.assert(
      fc.property(net, (t) => {
        const got = parseAddress(t);
        assert.deepEqual(got, referenceParse(t), t);
        // Every network is one but the unspecified address alone (0.0.0.0/32), the limited broadcast
        // address and blocks inside multicast space (224.0.0.0/4).
        const [a = 0, p = 0] = t.split(/[./]/).flatMap((x, i) => (i === 0 || i === 4 ? [Number(x)] : []));
        const none = t === '0.0.0.0/32' || t === '255.255.255.255/32' || (a >= 224 && a < 240 && p >= 4);
        assert.equal('kind' in got && got.kind, none ? false : 'cidr', t);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps the identity of an address as before: IPv4 alone, /32 folded, IPv4-mapped IPv6 as IPv4', () => {
    const cases: [string, string][] = [
      ['10.0.0.1', '10.0.0.1'],
      ['10.0.0.1/32', '10.0.0.1'],
      ['10.0.0.0/24', '10.0.0.0/24'],
      ['::ffff:10.0.0.1', '10.0.0.1'],
      ['::ffff:10.0.0.0/120', '10.0.0.0/24'],
      ['2001:db8::1/128', '2001:db8:0:0:0:0:0:1'],
      ['host.example', 'host.example'],
    ];
    for (const [text, identity] of cases) {
      const a = parseAddress(text);
      assert.ok('kind' in a, text);
      assert.equal(addressIdentity(a), identity, text);
    }
  });
});
