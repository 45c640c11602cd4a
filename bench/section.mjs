// One section of bench/RESULTS.md, between its own begin and end markers: each bench script
// replaces its section in place and leaves every other section byte for byte as it was.

/**
 * `text` with the section from `begin` to `end` (both markers included) replaced by `section`,
 * which must itself start with `begin` and end with `end`. No `begin` in `text`: the section is
 * appended after one blank line. A `begin` with no `end` after it throws (the extent of the old
 * section is unknown, and guessing it could overwrite another section).
 * @param {string} text the whole RESULTS.md
 * @param {string} begin the section's first line, e.g. `<!-- serve-ingest: written by ... -->`
 * @param {string} end the section's last line, e.g. `<!-- end serve-ingest -->`
 * @param {string} section the new section text, markers included
 * @returns {string}
 */
export function replaceSection(text, begin, end, section) {
  if (!section.startsWith(begin) || !section.trimEnd().endsWith(end))
    throw new Error(`the new section must start with ${begin} and end with ${end}`);
  const body = section.trimEnd();
  const at = text.indexOf(begin);
  if (at < 0) {
    const before = text.trimEnd();
    return `${before ? `${before}\n\n` : ''}${body}\n`;
  }
  const stop = text.indexOf(end, at + begin.length);
  if (stop < 0) throw new Error(`${begin} has no ${end} after it: add the end marker where the section ends`);
  return text.slice(0, at) + body + text.slice(stop + end.length);
}
