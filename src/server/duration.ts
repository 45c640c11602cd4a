import { UsageError } from '../errors.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses a duration flag (500ms, 30s, 5m, 1h, 90d) into milliseconds; at least 1 ms. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : Number.NaN;
  if (!(ms >= 1))
    throw new UsageError(
      `${flag} ${JSON.stringify(text)} is not a duration (expected a whole number and a unit: ms, s, m, h or d, like 5m)`,
    );
  return ms;
}
