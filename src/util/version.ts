import { readFileSync } from 'node:fs';
import { packagePath } from './paths.js';

/** The version in package.json: what generated-file headers and --version print. */
export function version(): string {
  return (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
}
