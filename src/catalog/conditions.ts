import type { Condition } from './types.js';
import { parseVersion, versionWithin } from './version.js';

/** What a condition can ask about one candidate flow. */
export interface ConditionContext {
  features: ReadonlySet<string>;
  /** Settings with defaults already applied. */
  setting(name: string): string | undefined;
  /** A host fact with the catalog default applied; undefined when the host lacks it and there is no default. */
  fact(side: 'from' | 'to', name: string): string | readonly string[] | undefined;
  /** Whether the host itself gives the fact (no default, no setting behind it). */
  given(side: 'from' | 'to', name: string): boolean;
  rolePresent(role: string): boolean;
}

/** Three-valued: a condition on a fact or setting the inventory does not give is `unknown`, not false. */
export type Truth = true | false | { unknown: string[] };

export function evaluate(conds: readonly Condition[] | undefined, ctx: ConditionContext): Truth {
  // Evaluated once per candidate pair of hosts: no list is built unless a value is unknown.
  if (!conds || conds.length === 0) return true;
  if (conds.length === 1) return evalOne(conds[0] as Condition, ctx);
  return all(conds, ctx);
}

/** Every condition holds: false if one is false, else the unknowns of all, else true. */
function all(conds: readonly Condition[], ctx: ConditionContext): Truth {
  let unknown: string[] | undefined;
  let falsy = false;
  for (const c of conds) {
    const v = evalOne(c, ctx);
    if (v === false) falsy = true;
    else if (v !== true) unknown = unknown ? unknown.concat(v.unknown) : v.unknown;
  }
  if (falsy) return false;
  return unknown?.length ? { unknown } : true;
}

/** One condition holds: true if one is true, else the unknowns of all, else false. */
function some(conds: readonly Condition[], ctx: ConditionContext): Truth {
  let unknown: string[] | undefined;
  let truthy = false;
  for (const c of conds) {
    const v = evalOne(c, ctx);
    if (v === true) truthy = true;
    else if (v !== false) unknown = unknown ? unknown.concat(v.unknown) : v.unknown;
  }
  if (truthy) return true;
  return unknown?.length ? { unknown } : false;
}

function evalOne(c: Condition, ctx: ConditionContext): Truth {
  if ('feature' in c) return ctx.features.has(c.feature);
  if ('role-present' in c) return ctx.rolePresent(c['role-present']);
  if ('role-absent' in c) return !ctx.rolePresent(c['role-absent']);
  if ('all' in c) return all(c.all, ctx);
  if ('any' in c) return some(c.any, ctx);
  if ('not' in c) {
    const v = evalOne(c.not, ctx);
    return typeof v === 'object' ? v : !v;
  }
  if ('fact' in c) {
    const { of, name, is, has, given } = c.fact;
    if (given !== undefined) return ctx.given(of, name) === given;
    const value = ctx.fact(of, name);
    if (value === undefined) return { unknown: [`${of}.facts.${name}`] };
    if (has !== undefined) return Array.isArray(value) ? value.includes(has) : value === has;
    const wanted = Array.isArray(is) ? is : [is];
    return typeof value === 'string' && wanted.includes(value);
  }
  const { name, is, min, max } = c.setting;
  const value = ctx.setting(name);
  if (value === undefined) return { unknown: [`settings.${name}`] };
  if (is !== undefined && value !== is) return false;
  const v = versionOf(value);
  if (min !== undefined || max !== undefined) {
    if (!v) return false;
    return versionWithin(
      v,
      min === undefined ? undefined : versionOf(min),
      max === undefined ? undefined : versionOf(max),
    );
  }
  return true;
}

/** parseVersion, remembered: a site has a handful of versions, asked about once per pair of hosts. */
const versions = new Map<string, readonly number[] | undefined>();
function versionOf(text: string): readonly number[] | undefined {
  if (versions.has(text)) return versions.get(text);
  const v = parseVersion(text);
  if (versions.size < 1024) versions.set(text, v);
  return v;
}
