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
  return all((conds ?? []).map((c) => evalOne(c, ctx)));
}

function all(values: Truth[]): Truth {
  if (values.includes(false)) return false;
  const unknown = values.flatMap((v) => (typeof v === 'object' ? v.unknown : []));
  return unknown.length ? { unknown } : true;
}

function some(values: Truth[]): Truth {
  if (values.includes(true)) return true;
  const unknown = values.flatMap((v) => (typeof v === 'object' ? v.unknown : []));
  return unknown.length ? { unknown } : false;
}

function evalOne(c: Condition, ctx: ConditionContext): Truth {
  if ('feature' in c) return ctx.features.has(c.feature);
  if ('role-present' in c) return ctx.rolePresent(c['role-present']);
  if ('role-absent' in c) return !ctx.rolePresent(c['role-absent']);
  if ('all' in c) return all(c.all.map((x) => evalOne(x, ctx)));
  if ('any' in c) return some(c.any.map((x) => evalOne(x, ctx)));
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
  const v = parseVersion(value);
  if (min !== undefined || max !== undefined) {
    if (!v) return false;
    return versionWithin(
      v,
      min === undefined ? undefined : parseVersion(min),
      max === undefined ? undefined : parseVersion(max),
    );
  }
  return true;
}
