/**
 * How deep a JSON request body may nest. The API's deepest body is a check result's `detail`
 * (an object of port results with their evidence: about 6 levels); 64 leaves room for what an
 * agent adds later, while a body of thousands of levels, which the store and its readers would
 * walk recursively, is refused before it is parsed.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * The byte offset (UTF-16 index into `text`) of the first `{` or `[` that opens level `max + 1`,
 * or undefined when the text never nests deeper than `max`. Brackets inside strings do not count
 * (escapes are followed). One pass, no recursion; the text need not be valid JSON (the parser
 * judges that afterwards).
 */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return i;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}
