import { UsageError } from '../errors.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** The longest duration a flag takes: 100 years (a time that far back is still a valid Date). */
export const MAX_DURATION_MS = 36_500 * UNIT_MS.d;

/**
 * Parses a duration flag (500ms, 30s, 5m, 1h, 90d) into milliseconds: plain decimal digits and a
 * unit, at least 1 ms and at most 100 years (36500d; `999999999d` once made every housekeeping
 * pass fail on a date before year -271821). Throws a UsageError naming `flag`.
 */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text);
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : Number.NaN;
  if (!(ms >= 1 && ms <= MAX_DURATION_MS))
    throw new UsageError(
      `${flag} ${JSON.stringify(text)} is not a duration (expected a whole number and a unit: ms, s, m, h or d, like 5m; from 1ms to 36500d)`,
    );
  return ms;
}
