import { width } from './color.js';

/**
 * Splits text into lines at most `w` columns wide (display width, East Asian wide characters
 * count two), breaking after spaces or commas; a word longer than the line is cut.
 */
export function wrap(text: string, w: number): string[] {
  const out: string[] = [];
  let line = '';
  // Words keep their trailing separator; CJK text has no spaces, so each wide character is a word.
  const words =
    text
      .replace(/[\r\n\t]+/g, ' ')
      .match(
        /[^\s,\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]*(?:[\s,]+|[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef][\s,]*)|[^\s,]+$/g,
      ) ?? [];
  for (const word of words) {
    if (width(`${line}${word}`.trimEnd()) <= w) {
      line += word;
      continue;
    }
    if (line.trim()) out.push(line.trimEnd());
    line = word.trimStart();
    while (width(line.trimEnd()) > w) {
      let cut = '';
      for (const ch of line) {
        if (width(cut + ch) > w) break;
        cut += ch;
      }
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
