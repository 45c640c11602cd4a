/** Inclusive port ranges, `[low, high]`, as in the plan contract. */
export type PortRange = readonly [number, number];

export const MAX_PORT = 65535;

/** Sorts and merges overlapping or adjacent ranges: the result covers exactly the same ports. */
export function mergePortRanges(ranges: Iterable<PortRange>): PortRange[] {
  const sorted = [...ranges].map(([a, b]) => (a <= b ? [a, b] : [b, a]) as [number, number]);
  sorted.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const out: [number, number][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

export function portCount(ranges: readonly PortRange[]): number {
  return ranges.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
}

export function formatPorts(ranges: readonly PortRange[], sep = ','): string {
  return ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(sep);
}
