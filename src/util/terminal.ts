/**
 * The one sanitiser for text that came from a file or the network (catalog and inventory text, a
 * TLS certificate subject, a banner) before it reaches a terminal or a generated config comment.
 *
 * Replaced by `?`: C0 controls other than tab, line feed and carriage return (ESC starts the
 * sequences that retitle a terminal or recolour its output), DEL, C1 controls (U+0080-U+009F, U+009B
 * is a one-character CSI), and the Unicode bidirectional controls (U+061C, U+200E, U+200F,
 * U+202A-U+202E, U+2066-U+2069; Trojan Source, CVE-2021-42574) and U+FEFF, which reorder or hide
 * text as displayed. Tab, line feed and carriage return are left to the caller (safeLine turns them
 * into spaces); U+2028 and U+2029 become line feeds (sanitize), so that a caller that handles line
 * breaks handles them too: a terminal does not break the line at them, an editor or browser does.
 */
export const UNSAFE_CHARS =
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

export function sanitize(text: string): string {
  return text.replace(UNSAFE_CHARS, '?').replace(/[\u2028\u2029]/g, '\n');
}

/** sanitize, then every line break or tab (CR, LF, and so U+2028, U+2029) as one space: one safe line. */
export function safeLine(text: string): string {
  return sanitize(text).replace(/[\t\n\r\u2028\u2029]+/g, ' ');
}

/**
 * sanitize applied to every string inside plain data (a report about to be rendered for a terminal);
 * with `lines` set, safeLine instead: every string becomes one line (a table or list cell).
 */
export function sanitizeDeep<T>(value: T, lines = false): T {
  if (typeof value === 'string') return (lines ? safeLine(value) : sanitize(value)) as T;
  if (Array.isArray(value)) return value.map((v) => sanitizeDeep(v, lines)) as T;
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, sanitizeDeep(v, lines)])) as T;
  return value;
}
