import { UsageError } from '../errors.js';

export const DEFAULT_TTL_SECONDS = 15 * 60;
/** A responder is a temporary test aid: a day is long enough for a change window and no longer. */
export const MAX_TTL_SECONDS = 24 * 60 * 60;

const UNIT_SECONDS = { s: 1, m: 60, h: 3600 } as const;

/** Parses `--ttl` (90s, 15m, 1h) into seconds: from 1 s up to 24 h. */
export function parseTtl(text: string): number {
  const m = /^(\d{1,6})([smh])$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS] : Number.NaN;
  if (!(seconds >= 1 && seconds <= MAX_TTL_SECONDS))
    throw new UsageError(
      `--ttl ${JSON.stringify(text)} is not a duration from 1s to 24h (expected a whole number and a unit, like 90s, 15m or 1h)`,
    );
  return seconds;
}

/** 900 -> "15m", 5400 -> "1h30m", 90 -> "1m30s". */
export function formatTtl(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s || seconds === 0 ? `${s}s` : ''}`;
}
