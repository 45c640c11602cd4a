/**
 * Where JSON text (RFC 8259) first breaks its grammar, for an error message that names the place:
 * V8's JSON.parse gives an offset for some errors ("at position 28") and only a snippet of the text
 * for others ("Unexpected token '}', ...\"x\":}]\" is not valid JSON"), which may carry the text's
 * own line breaks and control characters to a terminal.
 *
 * Returns undefined for valid JSON text; else `offset` (a UTF-16 index into `text`), `line` and
 * `column` (1-based; columns count UTF-16 units) and `problem` (what was found and what was
 * expected, ASCII-safe: a found character is JSON-quoted). One pass with an explicit stack: text
 * nested a million levels deep is judged without recursion.
 */
export function jsonSyntaxError(
  text: string,
): { offset: number; line: number; column: number; problem: string } | undefined {
  const ARRAY = 0;
  const OBJECT = 1;
  const stack: number[] = [];
  const ws = /[ \t\n\r]*/y;
  const number = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const literal = /true|false|null/y;
  let i = 0;
  const skip = () => {
    ws.lastIndex = i;
    ws.exec(text);
    i = ws.lastIndex;
  };
  const fail = (at: number, expected: string) => {
    const before = text.slice(0, at);
    const found =
      at >= text.length
        ? 'the end of the text'
        : JSON.stringify(String.fromCodePoint(text.codePointAt(at) ?? 0)).replace(
            /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g,
            (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
          );
    return {
      offset: at,
      line: before.split('\n').length,
      column: at - before.lastIndexOf('\n'),
      problem: `found ${found}, expected ${expected}`,
    };
  };
  /** A string at i (text[i] is '"'); returns the offset of its first bad character, or -1. */
  const string = (): number => {
    for (i++; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return -1;
      }
      if (c < 0x20) return i;
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return i;
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else return i;
      }
    }
    return i;
  };
  const key = () => {
    skip();
    if (text[i] !== '"') return fail(i, 'a double-quoted property name');
    const bad = string();
    if (bad >= 0)
      return fail(bad, bad >= text.length ? 'the closing quote of the string' : 'a string character');
    skip();
    if (text[i] !== ':') return fail(i, "':' after the property name");
    i++;
    return undefined;
  };
  for (;;) {
    // A value.
    skip();
    const c = text[i];
    if (c === '{' || c === '[') {
      i++;
      skip();
      if (text[i] !== (c === '{' ? '}' : ']')) {
        stack.push(c === '{' ? OBJECT : ARRAY);
        if (c === '{') {
          const e = key();
          if (e) return e;
        }
        continue;
      }
      i++;
    } else if (c === '"') {
      const bad = string();
      if (bad >= 0)
        return fail(bad, bad >= text.length ? 'the closing quote of the string' : 'a string character');
    } else {
      number.lastIndex = i;
      literal.lastIndex = i;
      if (number.exec(text)) i = number.lastIndex;
      else if (literal.exec(text)) i = literal.lastIndex;
      else return fail(i, 'a value (object, array, string, number, true, false or null)');
    }
    // After a value: close what it ends, or go on to the next element.
    for (;;) {
      skip();
      const top = stack.at(-1);
      if (top === undefined)
        return i < text.length ? fail(i, 'the end of the text after the value') : undefined;
      const close = top === OBJECT ? '}' : ']';
      if (text[i] === close) {
        stack.pop();
        i++;
        continue;
      }
      if (text[i] !== ',') return fail(i, `',' or '${close}'`);
      i++;
      if (top === OBJECT) {
        const e = key();
        if (e) return e;
      }
      break;
    }
  }
}
