import { quote, shown } from '../errors.js';

/** Edit distance (Levenshtein, with adjacent transpositions counted as one edit). */
export function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const up = d[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, ((d[i - 2] as number[])[j - 2] as number) + 1);
      row[j] = v;
    }
  return (d[a.length] as number[])[b.length] as number;
}

/**
 * The candidate closest to `word`, when it is close enough to be a slip (a quarter of its length in
 * edits, at least one), or a candidate that starts with it; undefined otherwise.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = distance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 4))) return best;
  const prefixed = [...candidates].filter((c) => w.length >= 2 && c.toLowerCase().startsWith(w));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** ` (did you mean "x"?)` when a candidate is close, else the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c === undefined ? '' : ` (did you mean ${quote(c)}?)`;
}

/**
 * The one message for a name that is not in a known list, with the likely name meant:
 * `unknown role "sorce" for product veeam-proxmox (did you mean "source"?) (expected one of: ...)`.
 * `what` is the kind of name (role, product, setting, fact, key), `given` the name as written
 * (quoted and shortened as `shown` does), `context` what follows it (` for product X`). The expected
 * list is `known`, or `expected` when given (a sentence of its own, without parentheses); an empty
 * list reads "none declared".
 */
export function unknownName(
  what: string,
  given: string,
  known: Iterable<string>,
  opts: { context?: string; expected?: string } = {},
): string {
  const names = [...known];
  const expected = opts.expected ?? `expected one of: ${names.join(', ') || 'none declared'}`;
  return `unknown ${what} ${shown(given)}${opts.context ?? ''}${didYouMean(given, names)} (${expected})`;
}

/**
 * The error for a host name that is not one of `names`: `FLAG "given" is not a host of WHERE (did
 * you mean "x"?) (expected one of: a, b)`. `where` is the inventory file or `lab NAME`, with any
 * qualifier (`lab x with a generated ruleset`).
 */
export function notAHost(flag: string, given: string, where: string, names: readonly string[]): string {
  return `${flag} ${quote(given)} is not a host of ${where}${didYouMean(given, names)} (expected one of: ${names.join(', ') || 'none'})`;
}
