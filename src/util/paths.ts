import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root (where package.json, catalog/ and schema/ are): the nearest directory above
 * this module with a package.json. Compiled code lives in dist/src/<dir>/ and the bundled CLI in
 * dist/cli/, so the depth differs.
 */
export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return join(from, '..', '..', '..');
  }
}

export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}
