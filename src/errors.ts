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
  let where = loc.file;
  if (loc.line !== undefined) where += `:${loc.line}${loc.column !== undefined ? `:${loc.column}` : ''}`;
  return loc.path ? `${where} ${loc.path}: ${detail}` : `${where}: ${detail}`;
}

/** Quotes a user-supplied value for an error message: JSON string escaping keeps it on one line. */
export function shown(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}
