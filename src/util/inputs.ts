import { statSync } from 'node:fs';

/**
 * The regular files this process has read as input (inventories, catalogs, import sources and maps),
 * by device and inode, so that an output about to replace one of them is refused: `plan site.yaml
 * -o site.yaml` would otherwise put the plan where the inventory was. A hard link or a symbolic
 * link to an input is the input too.
 */
const inputs = new Map<string, string>();

const key = (st: { dev: number; ino: number }) => `${st.dev}:${st.ino}`;

/** Records that `path` (with the fstat/stat result `st`) was read; only regular files count. */
export function noteInput(path: string, st: { dev: number; ino: number; isFile(): boolean }): void {
  if (st.isFile() && !inputs.has(key(st))) inputs.set(key(st), path);
}

/** The path as it was read when `path` (links followed) is a file this process read, else undefined. */
export function inputAt(path: string): string | undefined {
  if (!inputs.size) return undefined;
  try {
    return inputs.get(key(statSync(path)));
  } catch {
    return undefined;
  }
}
