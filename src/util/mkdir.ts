import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Creates the directory `path` and every missing parent (as `mkdir -p`), each with `mode` (before
 * the umask); an existing directory is left as it is. Errors are the system's (ENOENT, EACCES,
 * ENOTDIR, EROFS...) from mkdir (`syscall` is 'mkdir'), thrown at the first directory that cannot be made.
 *
 * Node's own `mkdirSync(path, { recursive: true })` is not used for paths a user names: when the
 * kernel answers ENOENT for a directory whose parent exists (any name under /proc, which takes no
 * new entries), Node 20 makes the parent again and retries, forever (`mkdir -p /proc/x` fails at
 * once). Here each directory is made once, parents first, so every answer is final.
 */
export function makeDirectory(path: string, mode?: number): void {
  const missing: string[] = [];
  for (let p = resolve(path); ; ) {
    let exists = false;
    try {
      statSync(p);
      exists = true;
    } catch (err) {
      // ENOTDIR, EACCES, ELOOP...: mkdir's own error says it as every caller expects (syscall mkdir).
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        mkdirSync(p, mode === undefined ? undefined : { mode });
        return;
      }
    }
    if (exists) break;
    missing.push(p);
    const parent = dirname(p);
    if (parent === p) break;
    p = parent;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir, mode === undefined ? undefined : { mode });
    } catch (err) {
      // Made meanwhile by another process: fine when it is a directory, as mkdir -p has it.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(dir).isDirectory()) throw err;
    }
  }
  // The path itself exists but may be a file: mkdir then fails with the system's EEXIST.
  if (!missing.length && !statSync(path).isDirectory()) mkdirSync(path);
}
