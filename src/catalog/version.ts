/**
 * Dotted numeric versions ("2019.5", "8.1.3", "11"), optionally with a build number
 * ("8.1.3.270") or a wildcard last part ("2.5.x", the release line 2.5). Parts are compared one by
 * one, missing parts are 0. Returns undefined for anything else.
 */
export function parseVersion(text: string): number[] | undefined {
  if (!/^\d+(\.\d+)*(\.[xX])?$/.test(text)) return undefined;
  return text
    .replace(/\.[xX]$/, '')
    .split('.')
    .map(Number);
}

export function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * A version is within `[min, max]` when it is at least `min` and its release, cut to as many parts
 * as `max` has, is at most `max`: a build of 8.1.3 ("8.1.3.270") is still 8.1.3, and "at most 2.5"
 * takes 2.5.1 (a 2.5 release) but not 2.6.
 */
export function versionWithin(
  v: readonly number[],
  min?: readonly number[],
  max?: readonly number[],
): boolean {
  if (min && compareVersions(v, min) < 0) return false;
  if (max && compareVersions(v.slice(0, Math.max(1, max.length)), max) > 0) return false;
  return true;
}

/**
 * A catalog setting's version ranges in words, as versionWithin reads them: `{ max: "4" }` is
 * "4.x or earlier" (a one-part bound takes its whole release line), `{ min: "11" }` "11 or later",
 * `{ min: "6", max: "8.1.3" }` "6 to 8.1.3"; several ranges are joined with ", ".
 */
export function versionRangesText(ranges: readonly { min?: string; max?: string }[]): string {
  const upTo = (max: string) => (/^\d+$/.test(max) ? `${max}.x` : max);
  return ranges
    .map((r) =>
      r.min !== undefined && r.max !== undefined
        ? `${r.min} to ${upTo(r.max)}`
        : r.max !== undefined
          ? `${upTo(r.max)} or earlier`
          : r.min !== undefined
            ? `${r.min} or later`
            : 'any',
    )
    .join(', ');
}
