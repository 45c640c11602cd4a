import { width } from './color.js';

// Wide (East Asian) characters: text in them has no spaces, so a line may break after any one.
const WIDE = '\\u3000-\\u30ff\\u4e00-\\u9fff\\uff00-\\uffef';
// Marks that never start a line: closing punctuation stays with the word or character before it
// (JIS X 4051 line-start prohibition, in part).
const CLOSING = '、。，．）」』】〕！？：；ー・ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮ';
/**
 * The units a line may break between: a word with its trailing punctuation and spaces, a part of
 * a comma list up to its comma ("902," of "902,443"), or one wide character with the closing
 * marks after it.
 */
const UNIT = new RegExp(
  `[${WIDE}][${CLOSING}]*[\\s,]*|[^\\s,${WIDE}]*[^\\s${WIDE}]*?(?:,+\\s*|(?=[${WIDE}])|\\s+|$)`,
  'gu',
);

/** The units `wrap` breaks a text between, in order (separators kept), none empty. */
export function wrapUnits(text: string): string[] {
  return (text.replace(/[\r\n\t]+/g, ' ').match(UNIT) ?? []).filter((u) => u !== '');
}

/**
 * The widest unit of a text (display width, trailing spaces left out): the narrowest column it
 * wraps into without cutting a word, a name or a port list entry.
 */
export function longestUnit(text: string): number {
  let max = 0;
  for (const u of wrapUnits(text)) max = Math.max(max, width(u.trimEnd()));
  return max;
}

/** A unit's parts after each hyphen ("druva-sql-guest-plugin" -> "druva-", "sql-", "guest-", "plugin"). */
export function hyphenParts(unit: string): string[] {
  return unit.match(/[^-]*-+|[^-]+$/g) ?? [unit];
}

/**
 * The widest hyphen part of a text's units: the narrowest column it wraps into breaking names and
 * ranges only after a hyphen ("49152-" / "65535"), never inside a word.
 */
export function longestPart(text: string): number {
  let max = 0;
  for (const u of wrapUnits(text))
    for (const part of hyphenParts(u.trimEnd())) max = Math.max(max, width(part));
  return max;
}

/**
 * Splits text into lines at most `w` columns wide (display width, East Asian wide characters
 * count two), breaking between the units of `wrapUnits`: after spaces and commas, and after any
 * wide character; punctuation stays with its word. A unit wider than the whole line breaks after
 * its hyphens (hyphenParts); only a part wider than the line is cut, and then never so that a line
 * starts with the unit's own punctuation.
 */
export function wrap(text: string, w: number): string[] {
  const out: string[] = [];
  let line = '';
  const units = wrapUnits(text).flatMap((u) => (width(u.trimEnd()) > w ? hyphenParts(u) : [u]));
  for (const unit of units) {
    if (width(`${line}${unit}`.trimEnd()) <= w) {
      line += unit;
      continue;
    }
    if (line.trim()) out.push(line.trimEnd());
    line = unit.trimStart();
    while (width(line.trimEnd()) > w) {
      let cut = '';
      for (const ch of line) {
        if (width(cut + ch) > w) break;
        cut += ch;
      }
      // "Plugin," cut as "Plugin" + ",": take a letter along so the comma does not start a line.
      while (cut.length > 1 && /^[\p{P}\s]+$/u.test(line.slice(cut.length).trim())) cut = cut.slice(0, -1);
      if (!cut) cut = [...line][0] ?? '';
      out.push(cut);
      line = line.slice(cut.length);
    }
  }
  if (line.trim() || !out.length) out.push(line.trimEnd());
  return out;
}

/** Wraps a line that starts with `indent` so each continuation starts `hang` columns further in. */
export function wrapIndented(indent: string, text: string, columns: number, hang = 2): string[] {
  const w = Math.max(20, columns - width(indent));
  const [first = '', ...rest] = wrap(text, w);
  const inner = Math.max(20, w - hang);
  const tail = rest.length ? wrap(rest.join(' '), inner) : [];
  return [`${indent}${first}`, ...tail.map((l) => `${indent}${' '.repeat(hang)}${l}`)];
}

/**
 * Wraps text laid out for a terminal (a command's help, a catalog listing) to `columns` display
 * columns. Lines that fit are kept as they are. A line too long is broken between the units of
 * `wrapUnits`, its continuation lines starting at its description column: the first gap of two or
 * more spaces after its first word, as in an option table (`  -o, --output PATH  write ...`), or
 * after `Usage: portolan CMD`; without one, at its own indent plus `hang` (an indented line; none for
 * a description under its option's own line) or at the margin (a paragraph). With `reflow`, the lines
 * after it that were already continuing it (indented to that column, or a paragraph's next lines at
 * the same indent) are reflowed with it. A unit wider than the room left (a URL, a long path) is
 * never cut: it gets a line of its own and may run past `columns`.
 */
export function wrapLines(
  text: string,
  columns: number,
  opts: { hang?: number; reflow?: boolean } = {},
): string {
  const lines = text.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const head = headOf(line, columns);
    let j = i + 1;
    if (opts.reflow && /\S/.test(line))
      while (j < lines.length && /\S/.test(lines[j] as string) && leadOf(lines[j] as string) === head.column)
        j++;
    const group = lines.slice(i, j);
    // A description on the lines under its option (`  --max-inventory-size SIZE`, then the text at
    // the description column) continues at that column: it is not an indented line of its own.
    const underOption =
      i > 0 && /^ +-\S/.test(lines[i - 1] as string) && !/\S {2,}\S/.test((lines[i - 1] as string).trim());
    if (group.every((l) => width(l) <= columns)) out.push(...group);
    else
      out.push(
        ...wrapLine(group.map((l) => l.trim()).join(' '), head, columns, underOption ? 0 : (opts.hang ?? 0)),
      );
    i = j - 1;
  }
  return out.join('\n');
}

function leadOf(line: string): number {
  return /^ */.exec(line)?.[0].length ?? 0;
}

/** The part of a line kept before its text (indent, option, label) and the column its text starts at. */
function headOf(line: string, columns: number): { text: string; column: number } {
  const gap = /^(Usage: \S+ [a-z-]+ |(?: *\S.*?\S? {2,})(?=\S))/.exec(line)?.[1];
  if (gap !== undefined && width(gap) <= columns / 2) return { text: gap, column: width(gap) };
  const lead = /^ */.exec(line)?.[0] ?? '';
  return { text: lead, column: lead.length };
}

/**
 * Units with a bracketed group joined into one, so a usage line breaks between options and never
 * inside one (`[--bind ADDR]` stays whole). A group that never closes is left as its units.
 */
function bracketGroups(units: string[]): string[] {
  const out: string[] = [];
  let group: string[] = [];
  let depth = 0;
  for (const u of units) {
    const opens = u.split('[').length - 1;
    const closes = u.split(']').length - 1;
    if (depth === 0 && opens <= closes) {
      out.push(u);
      continue;
    }
    group.push(u);
    depth += opens - closes;
    if (depth <= 0) {
      out.push(group.join(''));
      group = [];
      depth = 0;
    }
  }
  out.push(...group);
  return out;
}

function wrapLine(
  text: string,
  head: { text: string; column: number },
  columns: number,
  hang: number,
): string[] {
  const body = text.slice(head.text.trim().length);
  const indent = ' '.repeat(head.text.trim() === '' && head.column > 0 ? head.column + hang : head.column);
  const out: string[] = [];
  let current = head.text;
  let empty = true;
  for (const unit of bracketGroups(wrapUnits(body.trimStart()))) {
    if (empty || width(`${current}${unit}`.trimEnd()) <= columns) {
      current += unit;
      empty = false;
      continue;
    }
    out.push(current.trimEnd());
    current = `${indent}${unit}`;
  }
  out.push(current.trimEnd());
  return out;
}

/**
 * The width to wrap terminal text to: COLUMNS when set to a whole number (as GNU ls reads it), else
 * the terminal's width when `stream` is one, else `piped` (a pipe or a file): 80 for prose such as
 * help (the classic terminal), Infinity for listings a user greps or diffs line by line.
 */
export function terminalColumns(stream: NodeJS.WriteStream = process.stdout, piped = 80): number {
  const env = process.env.COLUMNS;
  if (env !== undefined && /^\d+$/.test(env) && Number(env) >= 20) return Number(env);
  if (stream.isTTY && stream.columns) return stream.columns;
  return piped;
}

/** A command's help text on `out` (stdout), wrapped to that stream's terminal (terminalColumns). */
export function writeHelp(usage: string, out: NodeJS.WriteStream = process.stdout): void {
  out.write(`${wrapLines(usage, terminalColumns(out), { hang: 2, reflow: true })}\n`);
}
