import { isIP } from 'node:net';
import { mergeCidr, normalizeCidr } from 'cidr-tools';

/** A host's address as the inventory gives it, parsed once at the edge. */
export type Address =
  | { kind: 'ip'; text: string; version: 4 | 6 }
  | { kind: 'cidr'; text: string; version: 4 | 6; prefix: number }
  | { kind: 'dns'; text: string };

// RFC 1123 labels; a leading "*." is allowed for cloud endpoint patterns.
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^(?:\\*\\.)?(?:${LABEL}\\.)*${LABEL}\\.?$`, 'i');

/**
 * Parses an address, returning the reason it is not one. Node's own parser is strict: leading-zero
 * octets such as 010.0.0.1 are rejected rather than read as octal.
 */
export function parseAddress(raw: string): Address | { error: string } {
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
    const canonical = normalizeCidr(`${ip}/${prefixText}`);
    if (canonical !== normalizeCidr(`${ip}/${max}`).replace(/\/\d+$/, `/${prefixText}`))
      return { error: `host bits are set in ${text} (expected the network address ${canonical})` };
    return { kind: 'cidr', text: canonical, version, prefix: Number(prefixText) };
  }
  const version = isIP(text);
  if (version === 4 || version === 6) return { kind: 'ip', text: normalizeCidr(text), version };
  if (/^[\d.]+$/.test(text))
    return {
      error: `${JSON.stringify(text)} is not a valid IPv4 address (expected four decimal octets 0-255)`,
    };
  if (text.includes(':')) return { error: `${JSON.stringify(text)} is not a valid IPv6 address ${expected}` };
  if (text.length > 253 || !DNS_NAME.test(text))
    return { error: `${JSON.stringify(text)} is neither an IP address, a CIDR nor a DNS name ${expected}` };
  return { kind: 'dns', text: text.toLowerCase().replace(/\.$/, '') };
}

/** Collapses IP and CIDR texts into the fewest CIDRs that cover exactly the same addresses. */
export function collapseAddresses(texts: readonly string[]): string[] {
  const v4 = texts.filter((t) => !t.includes(':'));
  const v6 = texts.filter((t) => t.includes(':'));
  return [...(v4.length ? mergeCidr(v4) : []), ...(v6.length ? mergeCidr(v6) : [])];
}
