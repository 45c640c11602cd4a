import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { PortolanError, quote, UsageError } from '../errors.js';
import { UnwritableTarget, writeFileAtomic } from '../util/atomic.js';
import { inputAt } from '../util/inputs.js';
import { makeDirectory } from '../util/mkdir.js';

/**
 * Where the output options of every command write, checked the same way before any work is done:
 * `-o FILE` must name a file in a directory that exists (as a shell's `> FILE` does; nothing is
 * created on the way), and a directory output (`--output-dir DIR`, `export -o DIR/`) is created
 * when missing but must not be an existing file. A bad path is a usage error (exit 2) that names
 * the option, the path and what was expected; a write that fails later is an I/O error (exit 1)
 * that names the path and the system's words for the error.
 */

function statOf(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * The file an `-o` that means "a file, or stdout" names: undefined (stdout) for `-o -`, as `-`
 * means stdout to most command-line tools (nmap's `-oN -`, curl's `-o -`); `./-` names a file
 * called `-`. Used by the commands whose -o replaces stdout (plan, export, import, init).
 */
export function fileOrStdout(path: string | undefined): string | undefined {
  return path === '-' ? undefined : path;
}

/**
 * Refuses `-o FILE` when FILE is a directory or its directory is missing or not a directory, and
 * `-` where the option takes a file only (check's `-o` is written beside what stdout shows).
 */
export function checkOutputFile(path: string, flag = '-o'): void {
  if (path === '') throw new UsageError(`${flag} needs a file name (expected ${flag} FILE)`);
  if (path === '-')
    throw new UsageError(
      `${flag} "-": this option takes a file, not stdout (expected ${flag} FILE; ./- names a file called -)`,
    );
  if (statOf(path)?.isDirectory())
    throw new UsageError(`${flag} ${quote(path)} is a directory (expected ${flag} FILE)`);
  const parent = dirname(path);
  const st = statOf(parent);
  if (!st)
    throw new UsageError(
      `${flag} ${quote(path)}: the directory ${parent} does not exist (expected a file in an existing directory; create it first)`,
    );
  if (!st.isDirectory())
    throw new UsageError(
      `${flag} ${quote(path)}: ${parent} is not a directory (expected a file in an existing directory)`,
    );
}

/**
 * Refuses a directory output that is empty, or an existing file or other non-directory; `why` says why a
 * directory is needed (`--to aws writes several files (aws.tf.json, aws.cfn.json)`).
 */
export function checkOutputDir(path: string, flag: string, why?: string): void {
  // An empty value (an unset shell variable, `-o "$OUT"`) would write into the working directory.
  if (path === '') throw new UsageError(`${flag} needs a directory name (expected ${flag} DIR)`);
  const st = statOf(path);
  if (st && !st.isDirectory())
    throw new UsageError(
      `${flag} ${quote(path)} is a file${why ? `, and ${why}` : ''} (expected a directory: an existing one, or a new name to create)`,
    );
}

/** Creates a directory output (and its parents) when missing; a failure is an I/O error naming it. */
export function makeOutputDir(path: string): void {
  try {
    makeDirectory(path);
  } catch (err) {
    throw writeFailure(path, err);
  }
}

/** `ENOENT (no such file or directory)`: the code and the system's words for a failed call. */
export function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const words = e?.errno !== undefined ? getSystemErrorMap().get(e.errno)?.[1] : undefined;
  return e?.code ? `${e.code}${words ? ` (${words})` : ''}` : String(err);
}

/**
 * The error of a write to `path` that failed: a path that cannot take a file (a directory, a block
 * device, a socket, a pipe nothing reads) is a usage error (exit 2) saying what was expected; any
 * other failure (a full disk, no permission) an I/O error (exit 1) with the system's words.
 */
export function writeFailure(path: string, err: unknown): PortolanError {
  if (err instanceof UnwritableTarget) return new UsageError(`cannot write ${path}: it ${err.reason}`);
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  if (code === 'EISDIR')
    return new UsageError(`cannot write ${path}: it is a directory (expected a file, or a new name)`);
  // A directory that exists but takes no new file (/proc, a read-only mount, another user's).
  const expected = ['ENOENT', 'EACCES', 'EPERM', 'EROFS'].includes(code)
    ? `; expected a file in a directory this user can create files in (${dirname(path)} is not one)`
    : '';
  return new PortolanError(`cannot write ${path}: ${errnoText(err)}${expected}`, 'EIO', { cause: err });
}

/**
 * Refuses (usage error, exit 2) an output `path` that is a file this command read as input (links
 * followed, hard links included): `plan site.yaml -o site.yaml` would replace the inventory with
 * its plan. Checked just before writing, when every input has been read.
 */
export function checkNotInput(path: string, flag = '-o'): void {
  const input = inputAt(path);
  if (input === undefined) return;
  throw new UsageError(
    `${flag} ${quote(path)} is ${input === path ? 'a file' : `${input}, a file`} this command read: writing there would replace it (expected another file)`,
  );
}

/**
 * Writes `-o FILE` whole or not at all (writeFileAtomic: `content` is text, or text in pieces
 * written as they come), after checkOutputFile and checkNotInput; a failure names the path.
 */
export function writeOutputFile(path: string, content: string | Iterable<string>, flag = '-o'): void {
  checkOutputFile(path, flag);
  checkNotInput(path, flag);
  try {
    writeFileAtomic(path, content);
  } catch (err) {
    throw writeFailure(path, err);
  }
}
