import { fileURLToPath } from 'node:url';

/** The package root: compiled code lives in dist/src/<dir>/, data (catalog/, schema/) at the root. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function packagePath(...parts: string[]): string {
  return [PACKAGE_ROOT.replace(/\/$/, ''), ...parts].join('/');
}
