import {
  closeSync,
  fsyncSync,
  lstatSync,
  openSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { utf8Batches } from './stream.js';

/**
 * Writes a file so that a reader sees the old content or the whole new one, never a part: the text
 * goes to a temporary name beside the target, is flushed to disk, then renamed over it (rename(2)
 * is atomic within one filesystem). `data` may be text given in pieces (an iterable of strings,
 * written in batches of about 1 MiB as they come: output larger than one JavaScript string can
 * hold is written). On any error the temporary file is removed and the error thrown.
 */
export function writeFileAtomic(target: string, data: string | Uint8Array | Iterable<string>): void {
  const { path, direct } = writeTarget(target);
  if (direct) {
    if (typeof data === 'string' || data instanceof Uint8Array) writeFileSync(path, data);
    else {
      const fd = openSync(path, 'w');
      try {
        writeAll(fd, data);
      } finally {
        closeSync(fd);
      }
    }
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeAll(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
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

/**
 * Where a write to `path` must land so that it never replaces what is not a file of its own:
 * - a device, FIFO or socket (`-o /dev/stdout`, `-o /dev/null`, a named pipe) is written in place
 *   (`direct`): renaming a temporary file over it would swap a device node for a regular file;
 * - a symbolic link is followed to the file it names, so the link stays a link;
 * - anything else (a regular file, a new name) is the path itself, replaced by rename.
 * A directory is returned as is: the write fails with EISDIR, as it should.
 */
export function writeTarget(path: string): { path: string; direct: boolean } {
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
  if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO() || st.isSocket())
    return { path, direct: true };
  try {
    return { path: realpathSync(path), direct: false };
  } catch {
    return { path, direct: false };
  }
}
