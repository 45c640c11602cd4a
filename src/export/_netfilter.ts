import type { AddressSet, ExportModel, ExportRule } from './model.js';
import { setIsEmpty } from './model.js';

/**
 * Internal to the netfilter generators (nftables, iptables): which address matches a rule needs per
 * address family, decided once so both files say the same thing about the same rule.
 */

export type Family = 'v4' | 'v6';
export const FAMILIES: readonly Family[] = ['v4', 'v6'];
export const FAMILY_LABEL: Record<Family, string> = { v4: 'IPv4', v6: 'IPv6' };

export type Side = 'src' | 'dst';
/** Inventory addresses, DNS names the platform cannot match, or peers the documents leave open. */
export type MatchKind = 'addr' | 'names' | 'peers';

/** One kind of address on one side of a rule, in one family. */
export interface SideMatch {
  side: Side;
  family: Family;
  kind: MatchKind;
  /** addr: collapsed CIDRs; names: DNS names; peers: the documents' descriptions (free text). */
  values: string[];
}

/** One source x destination combination to render; null: the side is this host (host mode). */
export interface Pairing {
  family: Family;
  src: SideMatch | null;
  dst: SideMatch | null;
}

export interface RulePlan {
  /** Empty when the rule is not rendered at all (then `skipped` says why). */
  pairs: Pairing[];
  skipped?: string;
  /** Addresses no pairing covers (a family only one side has): rendered for the rest, said here. */
  partial: string[];
}

export function sideLabel(side: Side): string {
  return side === 'src' ? 'source' : 'destination';
}

function hasFamily(a: AddressSet, family: Family): boolean {
  return a[family].length > 0 || a.names.length > 0 || a.unspecified.length > 0;
}

/**
 * Host mode leaves the host's own side unmatched: the input and output hooks already see only its
 * traffic, and its inventory address may be a DNS name or a whole range. Its address still decides
 * which families apply (a v4-only host gets no IPv6 rules). A name or an unspecified peer may have
 * addresses in either family, so it pairs with both.
 */
export function planRule(model: ExportModel, r: ExportRule): RulePlan {
  const self: Side | undefined = model.mode === 'host' ? (r.direction === 'in' ? 'dst' : 'src') : undefined;
  for (const side of ['src', 'dst'] as const)
    if (side !== self && setIsEmpty(r[side]))
      return {
        pairs: [],
        partial: [],
        skipped: `its ${sideLabel(side)} has no addresses (an empty match would mean any)`,
      };
  if (r.protocol !== 'icmp' && r.ports.length === 0)
    return { pairs: [], partial: [], skipped: 'it has no ports (an empty port match would mean any)' };

  const matches = (side: Side, family: Family): (SideMatch | null)[] => {
    const a = r[side];
    if (side === self) return hasFamily(a, family) ? [null] : [];
    const out: SideMatch[] = [];
    if (a[family].length) out.push({ side, family, kind: 'addr', values: a[family] });
    if (a.names.length) out.push({ side, family, kind: 'names', values: a.names });
    if (a.unspecified.length) out.push({ side, family, kind: 'peers', values: a.unspecified });
    return out;
  };
  const pairs: Pairing[] = [];
  const partial: string[] = [];
  for (const family of FAMILIES) {
    const srcs = matches('src', family);
    const dsts = matches('dst', family);
    for (const src of srcs) for (const dst of dsts) pairs.push({ family, src, dst });
    if (srcs.length && dsts.length) continue;
    for (const side of ['src', 'dst'] as const) {
      if (side === self || !r[side][family].length) continue;
      const label = FAMILY_LABEL[family];
      partial.push(
        `its ${label} ${sideLabel(side)} addresses (${r[side][family].join(', ')}) have no ${label} peer on the other side, so no rule covers them`,
      );
    }
  }
  if (!pairs.length) {
    const fams = (a: AddressSet) => FAMILIES.filter((f) => hasFamily(a, f)).map((f) => FAMILY_LABEL[f]);
    return {
      pairs,
      partial: [],
      skipped: `its source (${fams(r.src).join('/') || 'none'}) and destination (${fams(r.dst).join('/') || 'none'}) share no address family`,
    };
  }
  return { pairs, partial };
}
