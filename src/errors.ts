/**
 * One error base for the whole tool. Every error carries a stable code; input errors carry where
 * (file:line:column and the key path) so the CLI can print one line and exit 2.
 */
export type ErrorCode =
  | 'EINPUT' // bad user input: inventory, catalog, flags
  | 'EUSAGE' // bad command line
  | 'EIO' // a file could not be read or written
  | 'EINTERNAL';

export interface Location {
  file: string;
  line?: number;
  column?: number;
  /** The key path inside the document, e.g. `hosts.esx-a.roles[0]`. */
  path?: string;
}

export class PortolanError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'EINTERNAL', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PortolanError';
    this.code = code;
  }
}

/** Bad input: the message names where, what was wrong and what was expected. Exit code 2. */
export class InputError extends PortolanError {
  readonly location: Location | undefined;
  readonly detail: string;
  constructor(detail: string, location?: Location, options?: { cause?: unknown }) {
    super(formatLocated(detail, location), 'EINPUT', options);
    this.name = 'InputError';
    this.location = location;
    this.detail = detail;
  }
}

/**
 * Several input errors in one file, found in one pass. The message is the first error and a count,
 * so other commands still print one line; `portolan validate` prints every one of `errors`.
 */
export class InputErrors extends InputError {
  readonly errors: readonly InputError[];
  constructor(errors: readonly InputError[]) {
    const first = errors[0] as InputError;
    const more = errors.length - 1;
    super(
      `${first.detail}${more ? ` (and ${more} more error${more === 1 ? '' : 's'}: portolan validate lists them all)` : ''}`,
      first.location,
    );
    this.name = 'InputErrors';
    this.errors = errors;
  }
}

export class UsageError extends PortolanError {
  constructor(message: string) {
    super(message, 'EUSAGE');
    this.name = 'UsageError';
  }
}

export function formatLocated(detail: string, loc?: Location): string {
  if (!loc) return detail;
  let where = fileShown(loc.file);
  if (loc.line !== undefined) where += `:${loc.line}${loc.column !== undefined ? `:${loc.column}` : ''}`;
  return loc.path ? `${where} ${loc.path}: ${detail}` : `${where}: ${detail}`;
}

/**
 * Control and format characters no text portolan reads may carry into its output: C0 controls (tab,
 * line feed and carriage return too; callers that allow them in multi-line text say so), DEL, C1
 * controls (U+0080-U+009F; U+009B is a one-character CSI, U+0085 a line break), the line and
 * paragraph separators U+2028 and U+2029, the bidirectional controls (U+061C, U+200E, U+200F,
 * U+202A-U+202E, U+2066-U+2069; Trojan Source, CVE-2021-42574) and U+FEFF. The same set as
 * util/terminal.ts's UNSAFE_CHARS plus tab, line breaks and U+2028/U+2029.
 */
export const CONTROL_CHARS =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;

/** `U+0085 (a C1 control character)`: a character of CONTROL_CHARS named for an error message. */
export function controlName(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  const kind =
    code === 0x09
      ? 'a tab'
      : code === 0x0a || code === 0x0d
        ? 'a line break'
        : code < 0x20
          ? 'a C0 control character'
          : code === 0x7f
            ? 'DEL'
            : code <= 0x9f
              ? 'a C1 control character'
              : code === 0x2028 || code === 0x2029
                ? 'a line or paragraph separator'
                : code === 0xfeff
                  ? 'a byte order mark'
                  : 'a bidirectional control character';
  return `${hex} (${kind})`;
}

/**
 * A string (or any value, as JSON) quoted for an error message, on one line and safe on a terminal: JSON string escaping,
 * and every character of CONTROL_CHARS that JSON leaves as it is (DEL, C1, U+2028/U+2029, the
 * bidirectional controls, U+FEFF) as its \uXXXX escape, so the reader sees which character it is.
 */
export function quote(text: unknown): string {
  return (JSON.stringify(text) ?? String(text)).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * A file's name for a message: as it is, or quoted (quote) when it holds a character of
 * CONTROL_CHARS, so that a name with a line feed or an escape sequence stays on its one line and
 * shows what it holds (`"a\nb.yaml":3:1: ...`).
 */
export function fileShown(file: string): string {
  return CONTROL_CHARS.test(file) ? quote(file) : file;
}

/** Quotes a user-supplied value for an error message: one line, control characters escaped (quote). */
export function shown(value: unknown): string {
  if (typeof value === 'string') return quote(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}
