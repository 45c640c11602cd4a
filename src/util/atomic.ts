import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readlinkSync,
  realpathSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { utf8Batches } from './stream.js';

/**
 * The one file writer. Every file portolan writes (outputs named with -o, export directories and
 * their lists, the admin token, lab state, the agent's spool) goes through it:
 *
 * - the bytes go to a new file under an unpredictable name beside the target
 *   (`.NAME.<96 random bits>.tmp`), created with O_CREAT|O_EXCL|O_NOFOLLOW and its permission bits
 *   given at creation: a symbolic link or FIFO planted at that name is never followed or opened
 *   (open(2) fails with EEXIST and another name is drawn);
 * - the file is flushed (fsync), renamed over the target (rename(2) is atomic within a filesystem),
 *   and the directory is flushed, so that after a crash, a kill, a power cut or a full disk the
 *   target holds the earlier content or the whole new one, never a part;
 * - on any error the temporary file is removed and the target is untouched.
 */

/** How a write treats its target. */
export interface WriteOptions {
  /**
   * Permission bits of the new file (before the umask; default 0o644). A secret is 0o600: the file
   * has those bits from its creation, before any byte is written. When the target is an existing
   * regular file that `follow` keeps, its bits are kept instead (a plan the user made private stays so),
   * and so are its owner and group as far as this process may give them (root: both; others: a
   * group of theirs), so that root rewriting a user's file leaves it the user's.
   */
  mode?: number;
  /**
   * What a target that is not a regular file means.
   * - true (the default: paths the user named, `-o FILE`): a symbolic link is followed and the
   *   file it names is replaced (the link stays a link); a character device or FIFO (`-o /dev/stdout`,
   *   a named pipe) is written in place, as a shell's `>` would; a block device or socket is refused
   *   (UnwritableTarget).
   * - false (portolan's own files: tokens, state, spool, an export's list of files): the name itself
   *   is replaced by a regular file whatever it was; nothing is written through it.
   */
  follow?: boolean;
  /**
   * The target must not exist: the complete file appears under its name with link(2), which fails
   * with EEXIST when the name is taken (two processes claiming one name: one wins). Implies
   * `follow: false`.
   */
  exclusive?: boolean;
}

/** A target that cannot take a file (a block device, a socket, a pipe no one reads); `reason` in words. */
export class UnwritableTarget extends Error {
  readonly code: string;
  constructor(
    readonly path: string,
    readonly reason: string,
    code: string,
  ) {
    super(`${path} ${reason}`);
    this.name = 'UnwritableTarget';
    this.code = code;
  }
}

/**
 * Writes `data` (bytes, text, or text in pieces: an iterable of strings, written in batches of about
 * 1 MiB as they come, so output larger than one JavaScript string can hold is written) to `target`
 * whole or not at all, as the module comment says. Errors: the system's (ENOSPC, EACCES, EISDIR,
 * EEXIST for an `exclusive` name that is taken) with the temporary file removed, or UnwritableTarget.
 */
export function writeFileAtomic(
  target: string,
  data: string | Uint8Array | Iterable<string>,
  options: WriteOptions = {},
): void {
  stageFile(target, data, options).commit();
}

/** A file written under its temporary name, not yet in place: `commit` renames it, `discard` removes it. */
export interface StagedFile {
  /** Where the file lands (a followed link's target). */
  readonly path: string;
  commit(): void;
  discard(): void;
}

/**
 * Writes `data` under a temporary name beside `target` (see writeFileAtomic) and returns it staged, so
 * that several files can be written first and put in place together (an export into a directory):
 * if any of them cannot be written, all are discarded and no target changes. A character device or
 * FIFO that `follow` writes in place is written at once (nothing can be renamed over it) and its
 * commit does nothing.
 */
export function stageFile(
  target: string,
  data: string | Uint8Array | Iterable<string>,
  options: WriteOptions = {},
): StagedFile {
  const exclusive = options.exclusive === true;
  const follow = options.follow !== false && !exclusive;
  let path = target;
  let mode = options.mode ?? 0o644;
  let keep = false;
  let owner: { uid: number; gid: number } | undefined;
  if (follow) {
    const t = writeTarget(target);
    if (t.direct && writeInPlace(t.path, data)) return { path: t.path, commit() {}, discard() {} };
    path = t.path;
    if (t.mode !== undefined && options.mode === undefined) {
      mode = t.mode;
      keep = true;
      owner = t.owner;
    }
  }
  const dir = dirname(path);
  const { fd, temp } = createTemp(dir, basename(path), mode);
  try {
    // The bits exactly, whatever the umask: an existing file's are kept as they were.
    // Owner and group as well, where this process may give them (keepOwner): root rewriting a
    // user's file must not leave it root's, which the user could then no longer edit.
    if (owner) keepOwner(fd, owner);
    if (keep) fchmodSync(fd, mode);
    writeAll(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    removeQuietly(temp);
    throw err;
  }
  closeSync(fd);
  let done = false;
  return {
    path,
    commit() {
      if (done) return;
      done = true;
      try {
        if (exclusive) linkSync(temp, path);
        else renameSync(temp, path);
      } catch (err) {
        removeQuietly(temp);
        throw err;
      }
      if (exclusive) removeQuietly(temp);
      syncDirectory(dir);
    },
    discard() {
      if (done) return;
      done = true;
      removeQuietly(temp);
    },
  };
}

/**
 * Gives the new file `fd` the owner and group of the file it replaces, as far as this process may
 * (chown(2)): root gives both; another user may give only the group, and only one it belongs to
 * (EPERM otherwise, which leaves the file this user's, as any new file of theirs is). Called before
 * fchmod: chown clears the set-user-ID and set-group-ID bits, which the kept mode never holds anyway.
 */
function keepOwner(fd: number, owner: { uid: number; gid: number }): void {
  const uid = process.geteuid?.();
  const gid = process.getegid?.();
  if (uid === undefined || (uid === owner.uid && gid === owner.gid)) return;
  try {
    if (uid === 0) fchownSync(fd, owner.uid, owner.gid);
    else if (gid !== owner.gid) fchownSync(fd, uid, owner.gid);
  } catch {
    // Not this user's to give: the file is theirs, as a new one would be.
  }
}

/** How many names are drawn before giving up (each taken name is a file someone else put there). */
const TEMP_ATTEMPTS = 16;

/**
 * Creates a new file in `dir` under an unpredictable name (`.BASE.<24 hex>.tmp`, BASE cut to 64
 * characters so the name stays within NAME_MAX) with O_CREAT|O_EXCL|O_NOFOLLOW and `mode`: nothing
 * that already has the name (a file, a link, a FIFO) is opened. Returns the descriptor and the name.
 * Errors: the system's (EACCES, ENOENT, ENOSPC...), or EEXIST after TEMP_ATTEMPTS taken names.
 */
export function createTemp(dir: string, base: string, mode: number): { fd: number; temp: string } {
  const stem = Array.from(base).slice(0, 64).join('');
  let last: unknown;
  for (let i = 0; i < TEMP_ATTEMPTS; i++) {
    const temp = join(dir, `.${stem}.${randomBytes(12).toString('hex')}.tmp`);
    try {
      return { fd: openExclusive(temp, mode), temp };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      last = err;
    }
  }
  throw last;
}

/**
 * open(2) of a new file: O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_NOCTTY with `mode`. Fails with EEXIST
 * when anything is at `path`, a symbolic link (even one naming nothing) or a FIFO included.
 */
export function openExclusive(path: string, mode: number): number {
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NOCTTY } = constants;
  return openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY, mode);
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/**
 * fsync(2) of a directory, so a rename in it survives a power cut. A filesystem that cannot flush a
 * directory (EINVAL), or a directory this user cannot open for reading, is left as it is: the rename
 * is done either way; an I/O error is thrown.
 */
function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EIO') throw err;
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, data: string | Uint8Array | Iterable<string>): void {
  const put = (bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
  };
  if (typeof data === 'string' || data instanceof Uint8Array) {
    put(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    return;
  }
  for (const batch of utf8Batches(data)) put(batch);
}

/** How long a pipe's reader may take nothing before the write gives up (as readBounded's FIFO_IDLE_MS). */
export const PIPE_IDLE_MS = 10_000;
const POLL_MS = 20;

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Writes a character device or FIFO in place. It is opened non-blocking and never created: a FIFO
 * that no reader opens within PIPE_IDLE_MS (open(2) gives ENXIO until one does), or whose reader
 * takes nothing for PIPE_IDLE_MS, is given up on instead of blocking forever. Returns false, writing nothing, when the
 * name turned out to be a regular file by the time it was opened (the caller then replaces it).
 */
function writeInPlace(path: string, data: string | Uint8Array | Iterable<string>): boolean {
  let fd: number | undefined;
  for (let waited = 0; fd === undefined; waited += POLL_MS) {
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (err) {
      // ENXIO: a FIFO that no process has open for reading (yet: `portolan plan -o p & cat p`).
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
      if (!isFifo(path)) throw err;
      if (waited >= PIPE_IDLE_MS)
        throw new UnwritableTarget(
          path,
          `is a named pipe that no process opened for reading in ${PIPE_IDLE_MS / 1000} s (expected a file, or a pipe something reads)`,
          'ENXIO',
        );
      sleep(POLL_MS);
    }
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFIFO() && !st.isCharacterDevice()) return false;
    let idle = 0;
    const put = (bytes: Uint8Array) => {
      for (let off = 0; off < bytes.length; ) {
        try {
          off += writeSync(fd, bytes, off);
          idle = 0;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw err;
          if (idle >= PIPE_IDLE_MS)
            throw new UnwritableTarget(
              path,
              `is a pipe whose reader took nothing for ${PIPE_IDLE_MS / 1000} s (expected a reader that reads)`,
              'ETIMEDOUT',
            );
          sleep(POLL_MS);
          idle += POLL_MS;
        }
      }
    };
    if (typeof data === 'string' || data instanceof Uint8Array)
      put(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    else for (const batch of utf8Batches(data)) put(batch);
    return true;
  } finally {
    closeSync(fd);
  }
}

function isFifo(path: string): boolean {
  try {
    return statSync(path).isFIFO();
  } catch {
    return false;
  }
}

/**
 * Where a write to a path the user named lands (WriteOptions.follow):
 * - a character device or FIFO (`-o /dev/stdout`, `-o /dev/null`, a named pipe) is written in place
 *   (`direct`): renaming a file over it would swap a device node for a regular file;
 * - a block device or a socket is refused (UnwritableTarget): a config written over a disk destroys it;
 * - a symbolic link is followed to the file it names, so the link stays a link;
 * - anything else (a regular file, a new name) is the path itself, replaced by rename.
 * `mode` is the permission bits of an existing regular file and `owner` its owner and group, to be
 * kept (stageFile). A directory is returned as
 * is: the rename fails with EISDIR, as it should.
 */
export function writeTarget(path: string): {
  path: string;
  direct: boolean;
  mode?: number;
  owner?: { uid: number; gid: number };
} {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    // A new name, or a link to a file not made yet: write the file the link names.
    try {
      if (lstatSync(path).isSymbolicLink())
        return { path: resolve(dirname(path), readlinkSync(path)), direct: false };
    } catch {}
    return { path, direct: false };
  }
  if (st.isBlockDevice())
    throw new UnwritableTarget(
      path,
      'is a block device (expected a file, a character device such as /dev/stdout, or a pipe)',
      'EBLKDEV',
    );
  if (st.isSocket())
    throw new UnwritableTarget(path, 'is a socket (expected a file, a device or a pipe)', 'ENXIO');
  if (st.isCharacterDevice() || st.isFIFO()) return { path, direct: true };
  const kept = st.isFile() ? { mode: st.mode & 0o777, owner: { uid: st.uid, gid: st.gid } } : {};
  try {
    return { path: realpathSync(path), direct: false, ...kept };
  } catch {
    return { path, direct: false, ...kept };
  }
}
