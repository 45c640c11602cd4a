import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { isatty } from 'node:tty';
import { InputError } from '../errors.js';
import { noteInput } from './inputs.js';

/**
 * How long a FIFO (named pipe, `<(...)` process substitution) may stay silent before the read gives up:
 * a writer that never writes must not hang the command.
 */
export const FIFO_IDLE_MS = 10_000;
const POLL_MS = 20;

/** The most read of a PEM file named on the command line (a CA bundle of every public root is about 220 KiB). */
export const MAX_PEM_BYTES = 4 * 1024 * 1024;
/** The most read of a token file (a portolan token is 48 characters). */
export const MAX_TOKEN_BYTES = 64 * 1024;
const CHUNK = 64 * 1024;

/** What a failed open/stat/readdir means, in words, for an error message. */
export function fsProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return 'does not exist';
    case 'ELOOP':
      return 'is a symbolic link loop (too many levels of symbolic links)';
    case 'EACCES':
    case 'EPERM':
      return 'cannot be read: permission denied';
    case 'ENOTDIR':
      return 'does not exist (a part of the path is not a directory)';
    case 'EISDIR':
      return 'is a directory (expected a file)';
    case 'ENAMETOOLONG':
      return 'has a name that is too long';
    default:
      return `cannot be read (${code ?? String(err)})`;
  }
}

/** Whether a path can be stat()ed; the reason in words (fsProblem) when not. */
export function statProblem(path: string): string | undefined {
  try {
    statSync(path);
    return undefined;
  } catch (err) {
    return fsProblem(err);
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Reads at most `limit` bytes of a file of any type (regular file, FIFO, character device such as
 * /dev/zero, socket) and refuses anything longer after reading limit + 1 bytes: the size stat()
 * reports is 0 for a FIFO or a device, so it is never trusted alone. A FIFO is opened non-blocking
 * (opening one without a writer would block forever) and given up on after FIFO_IDLE_MS of silence.
 *
 * Errors (InputError, located at `file`): the path's problem in words (fsProblem), a file over the
 * limit (followed by `hint`, how to raise it, when given), a FIFO that stays silent.
 */
export function readBounded(
  file: string,
  limit: number,
  what: string,
  hint?: string,
  text?: TextOnly,
): Buffer {
  const raise = hint ? `; ${hint}` : '';
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw new InputError(`the ${what} ${fsProblem(err)}`, { file }, { cause: err });
  }
  try {
    return readOpen(fd, file, limit, what, raise, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * A read of text: a NUL byte, which no text format holds (YAML 1.2 section 5.1, RFC 8259, RFC 4180),
 * is refused as soon as the chunk holding it is read, located at its line and column, rather than
 * after reading the whole limit (/dev/zero, a disk image named by mistake). `expected` completes the
 * error (`YAML text`); `binary`, given the first bytes read, says the file is a binary format the
 * caller reads too (a zip), which may hold NULs.
 */
export interface TextOnly {
  expected: string;
  binary?: (head: Buffer) => boolean;
}

/** The InputError for a NUL at byte `at` of `bytes` (the text read so far): 1-based line and column. */
function nulError(bytes: Buffer, at: number, file: string, what: string, expected: string): InputError {
  const before = new TextDecoder('utf-8').decode(bytes.subarray(0, at));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return new InputError(`the ${what} contains a NUL byte (expected ${expected})`, { file, line, column });
}

/**
 * Reads stdin as readBounded reads a file, with errors located at `label` (`-`, as the user named
 * it). /dev/stdin is opened non-blocking, so a pipe whose writer stays silent is given up on as a
 * FIFO is; a stdin that cannot be opened so (a socket, ENXIO) is read on descriptor 0 as it is,
 * which waits for its writer as `cat` does. A terminal is refused: the text is piped in.
 */
export function readBoundedStdin(
  label: string,
  limit: number,
  what: string,
  hint?: string,
  text?: TextOnly,
): Buffer {
  const raise = hint ? `; ${hint}` : '';
  if (isatty(0))
    throw new InputError(
      `stdin is a terminal (expected the ${what} piped or redirected in, e.g. portolan plan - < site.yaml)`,
      { file: label },
    );
  let fd: number;
  try {
    fd = openSync('/dev/stdin', constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    return readOpen(0, label, limit, what, raise, text);
  }
  try {
    return readOpen(fd, label, limit, what, raise, text);
  } finally {
    closeSync(fd);
  }
}

/** The body of readBounded on an open descriptor; `file` names it in errors. */
function readOpen(
  fd: number,
  file: string,
  limit: number,
  what: string,
  raise: string,
  text?: TextOnly,
): Buffer {
  let st: ReturnType<typeof fstatSync>;
  try {
    st = fstatSync(fd);
  } catch (err) {
    // Descriptor 0 closed (`portolan plan - <&-`).
    throw new InputError(`the ${what} ${fsProblem(err)}`, { file }, { cause: err });
  }
  noteInput(file, st);
  if (st.isDirectory()) throw new InputError(`the ${what} is a directory (expected a file)`, { file });
  if (st.isFile() && st.size > limit)
    throw new InputError(`the ${what} is ${st.size} bytes; the limit is ${limitText(limit)}${raise}`, {
      file,
    });
  const chunks: Buffer[] = [];
  let total = 0;
  let idle = 0;
  while (total <= limit) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, limit + 1 - total));
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        if (idle >= FIFO_IDLE_MS)
          throw new InputError(
            `the ${what} is a pipe that sent nothing for ${FIFO_IDLE_MS / 1000} s (expected a file, or a pipe whose writer sends the text)`,
            { file },
          );
        sleep(POLL_MS);
        idle += POLL_MS;
        continue;
      }
      throw new InputError(`the ${what} ${fsProblem(err)}`, { file }, { cause: err });
    }
    if (n === 0) break;
    idle = 0;
    const chunk = buf.subarray(0, n);
    chunks.push(chunk);
    // Whether NULs are refused is decided once, on the first bytes read.
    if (text && total === 0 && text.binary?.(chunk)) text = undefined;
    const nul = text ? chunk.indexOf(0) : -1;
    if (text && nul >= 0) throw nulError(Buffer.concat(chunks), total + nul, file, what, text.expected);
    total += n;
  }
  if (total > limit)
    throw new InputError(
      `the ${what} is more than ${limit} bytes; the limit is ${limitText(limit)}${raise}`,
      { file },
    );
  return Buffer.concat(chunks, total);
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/**
 * A size as people write it: `65536`, `64MiB`, `64M` (binary), `64MB` (decimal), `1GiB`; case and a
 * space before the unit do not matter. Returns bytes, or undefined when the text is not a size.
 */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** `4 MiB`, `64 MiB`, `1.5 GiB`, `512 KiB`, `1000 bytes`: a byte count in the largest whole-ish unit. */
export function sizeText(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const)
    if (bytes >= size) {
      const n = bytes / size;
      return `${Number.isInteger(n) ? n : n.toFixed(1)} ${unit}`;
    }
  return `${bytes} bytes`;
}

/** A limit in bytes, with its size in units beside it when that says more: `1024 bytes (1 KiB)`, `64 bytes`. */
function limitText(limit: number): string {
  const units = sizeText(limit);
  return units === `${limit} bytes` ? units : `${limit} bytes (${units})`;
}
