/**
 * Internal helpers shared by the cloud and router generators (aws, azure, gcp, cisco): the sets the
 * user fills in for what the platform cannot match (DNS names, unspecified peers), address families,
 * and the one escaping function for Terraform JSON. Not part of the public surface.
 */
import type { PortRange } from '../model/ports.js';
import { oneLine } from './header.js';
import type { AddressSet, ExportRule } from './model.js';

export type Family = 'v4' | 'v6';
export const FAMILIES: readonly Family[] = ['v4', 'v6'];

/** Which end of a rule: where traffic comes from or goes to. */
export type Side = 'src' | 'dst';

/**
 * A set of addresses the platform cannot express, left for the user to fill: one per DNS name
 * (filled once, reused by every rule naming it), one per rule side for unspecified peers.
 */
export interface FillSet {
  kind: 'dns' | 'peers';
  /** Stable key: the DNS name, or `<rule id>-<side>` for peers. */
  key: string;
  /** What belongs in it, for its description: the DNS name or the peers' descriptions. */
  what: string[];
  /** Peers: the rule and side the set belongs to. */
  rule?: string;
  side?: Side;
}

/** The fill sets one side of a rule needs, DNS names first, in a stable order. */
export function fillSets(rule: ExportRule, side: Side): FillSet[] {
  const set = side === 'src' ? rule.src : rule.dst;
  const out: FillSet[] = set.names.map((n) => ({ kind: 'dns', key: n, what: [n] }));
  if (set.unspecified.length)
    out.push({ kind: 'peers', key: `${rule.id}-${side}`, what: [...set.unspecified], rule: rule.id, side });
  return out;
}

export function literals(set: AddressSet, family: Family): string[] {
  return family === 'v4' ? set.v4 : set.v6;
}

/** True when a rule side holds something of this family: literal CIDRs, or a set the user fills. */
export function sideHas(set: AddressSet, family: Family): boolean {
  return literals(set, family).length > 0 || set.names.length > 0 || set.unspecified.length > 0;
}

/** Host names of one side, for comments; null hosts are unspecified peers. */
export function hostList(set: AddressSet): string {
  return set.hosts.map((h) => h ?? 'unspecified').join(', ');
}

/**
 * The flows of a rule that no single-family rule can carry: an IPv4 address on one end and an IPv6
 * address on the other (a name or an unspecified peer can be filled in either family). Platforms
 * that forbid mixing families in one rule (Azure, GCP, IOS) render per family and report these
 * rather than dropping them silently. One line per rule, or nothing.
 */
export function familyOrphans(rule: ExportRule): string | undefined {
  const ip = (a: string | null) => a !== null && (/^[\d.]+(\/\d+)?$/.test(a) || a.includes(':'));
  const pairs = new Set<string>();
  for (const f of rule.flows)
    if (
      ip(f.from.address) &&
      ip(f.to.address) &&
      f.from.address?.includes(':') !== f.to.address?.includes(':')
    )
      pairs.add(`${f.from.host} (${f.from.address}) -> ${f.to.host} (${f.to.address})`);
  if (!pairs.size) return undefined;
  return `rule ${rule.id}: ${[...pairs].join(', ')} join an IPv4 and an IPv6 address, so no rule of the same address family can carry them; not rendered`;
}

/** A rule's ports as the platform lists them: `443` or `2500-3300`. */
export function portStrings(ports: readonly PortRange[]): string[] {
  return ports.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`));
}

// --- Terraform JSON -------------------------------------------------------------------------------

/** A Terraform expression: rendered as `${code}` in an argument, never escaped. */
export class TfExpr {
  constructor(readonly code: string) {}
}

export function tfExpr(code: string): TfExpr {
  return new TfExpr(code);
}

/**
 * The one escaping function for Terraform JSON: argument values in Terraform's JSON syntax are
 * string templates, so user text carrying `${...}` or `%{...}` would be evaluated. Doubling the
 * sigil is Terraform's own escape (`$${` reads as a literal `${`). Applied to every literal string
 * in argument positions by `tfArgs`; variable/output descriptions and `//` comments are literal
 * and are not templates.
 */
export function tfTemplateEscape(text: string): string {
  return text.replace(/([$%])\{/g, (_m, sigil: string) => `${sigil}${sigil}{`);
}

/** Turns a tree of arguments (strings, numbers, TfExpr, arrays, objects) into JSON-ready data. */
export function tfArgs(value: unknown): unknown {
  if (value instanceof TfExpr) return `\${${value.code}}`;
  if (typeof value === 'string') return tfTemplateEscape(value);
  if (Array.isArray(value)) return value.map(tfArgs);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tfArgs(v)]));
  return value;
}

/** A CIDR list inside an HCL expression (CIDRs are validated upstream; JSON quoting is HCL quoting for them). */
export function hclList(items: readonly string[]): string {
  return `[${items.map((i) => JSON.stringify(i)).join(', ')}]`;
}

/** An HCL expression keeping only the CIDRs of one family from a variable (IPv4 has a netmask). */
export function hclFamilyFilter(variable: string, family: Family): string {
  return `[for c in var.${variable} : c if ${family === 'v4' ? '' : '!'}can(cidrnetmask(c))]`;
}

/** A Terraform identifier (resource, variable): letters, digits, `_` and `-`, starting with a letter. */
export function tfIdent(text: string): string {
  const id = text.replace(/[^A-Za-z0-9_-]/g, '_');
  return /^[A-Za-z_]/.test(id) ? id : `_${id}`;
}

/** The `variable` block for a fill set: a list of CIDRs with no default, so the user must decide. */
export function tfFillVariable(name: string, fill: FillSet, platformReason: string): object {
  const what =
    fill.kind === 'dns'
      ? `IPv4/IPv6 CIDRs that ${fill.what[0]} resolves to`
      : `IPv4/IPv6 CIDRs of the peers rule ${fill.rule} leaves unspecified (${fill.side === 'src' ? 'sources' : 'destinations'}): ${fill.what.join('; ')}`;
  return {
    type: 'list(string)',
    description: oneLine(`${what}. ${platformReason} An empty list renders no rule for it (never "any").`),
    validation: [
      {
        condition: `\${alltrue([for c in var.${name} : can(cidrhost(c, 0))])}`,
        error_message: 'Every element must be an IPv4 or IPv6 CIDR, such as 203.0.113.10/32.',
      },
    ],
  };
}

/**
 * Unique names for fill sets on one platform: DNS names are keyed by name, peers by rule and side.
 * `make` turns a key into the platform's identifier; clashes get a numeric suffix.
 */
export class FillNames {
  private readonly byKey = new Map<string, string>();
  private readonly used = new Set<string>();
  readonly all: { fill: FillSet; name: string }[] = [];
  constructor(private readonly make: (fill: FillSet) => string) {}

  name(fill: FillSet): string {
    const id = `${fill.kind}:${fill.key}`;
    const known = this.byKey.get(id);
    if (known) return known;
    const base = this.make(fill);
    let name = base;
    for (let i = 2; this.used.has(name); i++) name = `${base}${i}`;
    this.used.add(name);
    this.byKey.set(id, name);
    this.all.push({ fill, name });
    return name;
  }
}

/** Warnings for the fill sets a render used, one line each, naming what the user must fill. */
export function fillWarnings(names: FillNames, platform: string, noun: string): string[] {
  return names.all.map(({ fill, name }) =>
    fill.kind === 'dns'
      ? `${platform} cannot match DNS names: fill ${noun} ${name} with the addresses of ${fill.what[0]}`
      : `rule ${fill.rule}: the documents leave the ${fill.side === 'src' ? 'sources' : 'destinations'} unspecified; fill ${noun} ${name} with their addresses`,
  );
}

/**
 * One rule side's addresses of one family for a Terraform argument: a literal list when the side
 * has no fill sets, else an expression concatenating the literals with each fill variable filtered
 * to that family. `guard` is the condition that the list is non-empty (only when it depends on
 * variables), so the caller can render the resource with `count` and never with an empty list.
 */
export function tfFamilyList(
  rule: ExportRule,
  side: Side,
  family: Family,
  names: FillNames,
): { value: string[] | TfExpr; guard?: string } {
  const set = side === 'src' ? rule.src : rule.dst;
  const lits = literals(set, family);
  const fills = fillSets(rule, side).map((f) => hclFamilyFilter(names.name(f), family));
  if (!fills.length) return { value: lits };
  const parts = lits.length ? [hclList(lits), ...fills] : fills;
  const code = parts.length === 1 ? (parts[0] as string) : `concat(${parts.join(', ')})`;
  return { value: tfExpr(code), ...(lits.length ? {} : { guard: `length(${code}) > 0` }) };
}
